package store

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

func TestMigrationFiles(t *testing.T) {
	t.Parallel()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 || ms[0].name != "ledger" {
		t.Fatalf("first migration = %+v, want 001_ledger", ms[0])
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].version <= ms[i-1].version {
			t.Errorf("migrations out of order: %d after %d", ms[i].version, ms[i-1].version)
		}
	}
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t) // migrated once
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	vs, err := s.AppliedMigrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	if len(vs) != len(ms) || vs[0] != 1 {
		t.Fatalf("applied = %v, want one row per migration (%d)", vs, len(ms))
	}
	// The tables are in the configured schema, not in public.
	var n int
	err = s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1
		AND tablename IN ('leases', 'lease_events', 'prefix_revocations', 'hashed_revocations', 'creds_requests', 'schema_migrations')`,
		s.Schema()).Scan(&n)
	if err != nil || n != 6 {
		t.Fatalf("tables in schema %s: %d, %v", s.Schema(), n, err)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A schema that does not exist yet: Migrate must create it, once.
	schema := pgtest.Schema(t, "store_mig")
	if _, err := pgtest.Pool(t).Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	var stores []*Store
	for range 4 {
		s, err := Open(ctx, Config{URL: pgtest.URL(), Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		stores = append(stores, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrate %d: %v", i, err)
		}
	}
	vs, err := stores[0].AppliedMigrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	want := make([]int, len(ms))
	for i, m := range ms {
		want[i] = m.version
	}
	if !slices.Equal(vs, want) {
		t.Fatalf("applied = %v, want %v", vs, want)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	long := make([]byte, 64)
	for i := range long {
		long[i] = 'a'
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{URL: pgtest.URL()}, true},
		{"schema", Config{URL: pgtest.URL(), Schema: "Lease Guard", MaxConns: 4}, true},
		{"no url", Config{}, false},
		{"bad url", Config{URL: "postgres://host:notaport/db"}, false},
		{"long schema", Config{URL: pgtest.URL(), Schema: string(long)}, false},
		{"negative conns", Config{URL: pgtest.URL(), MaxConns: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestOpenSearchPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A schema name that needs quoting.
	schema := pgtest.Schema(t, "Store Mixed")
	s := openStore(t, schema)
	var got string
	if err := s.Pool().QueryRow(ctx, "SELECT current_schema()").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != schema {
		t.Fatalf("current_schema() = %q, want %q", got, schema)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// Evidence rows are compressed with lz4 where the server has it (the
// test server, PostgreSQL 15 from Debian, does): pglz took a third of an
// append's time in the database.
func TestEvidenceCompressedWithLZ4(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	var method string
	if err := s.Pool().QueryRow(context.Background(), `SELECT attcompression::text FROM pg_attribute
		WHERE attrelid = 'evidence_outbox'::regclass AND attname = 'event'`).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method != "l" {
		t.Errorf("evidence_outbox.event compressed with %q, want l (lz4)", method)
	}
}
