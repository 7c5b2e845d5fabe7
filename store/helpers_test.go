package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

// t0 has nanoseconds on purpose: the ledger keeps microseconds.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func tp(t time.Time) *time.Time { return &t }

// newStore opens a migrated ledger in a fresh schema.
func newStore(t *testing.T) *Store {
	t.Helper()
	schema := pgtest.Schema(t, "store")
	return openStore(t, schema)
}

func openStoreB(b *testing.B) *Store {
	b.Helper()
	return openStore(b, pgtest.Schema(b, "store_bench"))
}

func openStore(t testing.TB, schema string) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: pgtest.URL(), Schema: schema, MaxConns: 8})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

func mustApply(t *testing.T, s *Store, b Batch) ApplyStats {
	t.Helper()
	st, err := s.Apply(context.Background(), b)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return st
}

func applyEvents(t *testing.T, s *Store, evs ...schemas.LeaseEvent) ApplyStats {
	t.Helper()
	return mustApply(t, s, Batch{Leases: evs})
}

func mustLease(t *testing.T, s *Store, id string) Lease {
	t.Helper()
	l, err := s.Lease(context.Background(), id)
	if err != nil {
		t.Fatalf("lease %s: %v", id, err)
	}
	return l
}

var offset atomic.Int64

// event builds a valid lease event; mods adjust it.
func event(kind schemas.LeaseEventKind, leaseID string, when time.Time, mods ...func(*schemas.LeaseEvent)) schemas.LeaseEvent {
	e := schemas.LeaseEvent{
		Type:           schemas.LeaseEventType,
		Kind:           kind,
		LeaseID:        leaseID,
		EventTime:      when,
		VaultRequestID: fmt.Sprintf("req-%s-%s-%d", kind, leaseID, when.UnixNano()),
		Source:         schemas.SourceRef{Transport: "file", Stream: "audit.log", Offset: offset.Add(1)},
	}
	if kind == schemas.LeaseRevoked {
		e.RevokeBy = schemas.RevokeByPath
	}
	for _, m := range mods {
		m(&e)
	}
	return e
}

func issued(leaseID string, when time.Time, mods ...func(*schemas.LeaseEvent)) schemas.LeaseEvent {
	base := func(e *schemas.LeaseEvent) {
		e.Mount, e.Role, e.Namespace, e.Database = "database", "app", "root", "main"
		e.DBUser = "v-token-app-" + e.LeaseID[max(0, len(e.LeaseID)-4):]
		e.EntityID, e.TokenAccessor, e.DisplayName, e.RemoteAddress = "ent-1", "hmac-sha256:acc", "token", "10.0.0.1"
	}
	return event(schemas.LeaseIssued, leaseID, when, append([]func(*schemas.LeaseEvent){base}, mods...)...)
}

func prefixRevoke(prefix string, when time.Time, mods ...func(*schemas.LeaseEvent)) schemas.LeaseEvent {
	e := event(schemas.LeaseRevoked, "", when, mods...)
	e.LeasePrefix = prefix
	e.RevokeBy = schemas.RevokeByPrefix
	e.VaultRequestID = fmt.Sprintf("req-prefix-%s-%d", prefix, when.UnixNano())
	return e
}

func withExpire(exp time.Time, ttl int64) func(*schemas.LeaseEvent) {
	return func(e *schemas.LeaseEvent) { e.ExpireTime, e.TTLSeconds = &exp, &ttl }
}

func withUser(user string, hmac bool) func(*schemas.LeaseEvent) {
	return func(e *schemas.LeaseEvent) { e.DBUser, e.DBUserHMAC = user, hmac }
}

// dump returns every row of table as JSON text, in primary key order.
func dump(t *testing.T, s *Store, table string) []string {
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

var ledgerTables = []string{"leases", "lease_events", "prefix_revocations", "hashed_revocations", "creds_requests"}

func dumpAll(t *testing.T, s *Store) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range ledgerTables {
		out[tb] = dump(t, s, tb)
	}
	return out
}

// folded returns a lease row as JSON without its id and bookkeeping times:
// what must not depend on the order of events.
func folded(t *testing.T, s *Store, leaseID string) string {
	t.Helper()
	var out string
	err := s.Pool().QueryRow(context.Background(),
		"SELECT (to_jsonb(x) - 'lease_id' - 'created_at' - 'updated_at')::text FROM leases x WHERE lease_id = $1",
		leaseID).Scan(&out)
	if err != nil {
		t.Fatalf("lease %s: %v", leaseID, err)
	}
	return out
}

func permutations(n int) [][]int {
	var out [][]int
	var rec func(cur []int, used []bool)
	rec = func(cur []int, used []bool) {
		if len(cur) == n {
			out = append(out, append([]int(nil), cur...))
			return
		}
		for i := 0; i < n; i++ {
			if !used[i] {
				used[i] = true
				rec(append(cur, i), used)
				used[i] = false
			}
		}
	}
	rec(nil, make([]bool, n))
	return out
}
