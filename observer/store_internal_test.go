package observer

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/store"
)

// t0 has nanoseconds on purpose: the state store keeps microseconds.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// newStore opens a migrated state store in a fresh schema.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	return openStore(t, pgtest.Schema(t, "observer"))
}

func openStore(t testing.TB, schema string) *store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: schema, MaxConns: 8})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

// dump returns the rows of one table as JSON, in order.
func dump(t *testing.T, s *store.Store, table string) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(),
		"SELECT to_jsonb(x)::text FROM "+pgx.Identifier{table}.Sanitize()+" x ORDER BY 1")
	if err != nil {
		t.Fatalf("dump %s: %v", table, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("dump %s: %v", table, err)
	}
	return out
}
