package observer

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leaseguard/leaseguard/observer/observed"
)

// arrayWatchTx records the longest array argument of any statement sent
// through it: the rows one statement carries.
type arrayWatchTx struct {
	pgx.Tx
	longest *int
}

func (t arrayWatchTx) watch(args []any) {
	for _, a := range args {
		if v := reflect.ValueOf(a); v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 {
			*t.longest = max(*t.longest, v.Len())
		}
	}
}

func (t arrayWatchTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	t.watch(args)
	return t.Tx.Exec(ctx, sql, args...)
}

func (t arrayWatchTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	t.watch(args)
	return t.Tx.Query(ctx, sql, args...)
}

func (t arrayWatchTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	t.watch(args)
	return t.Tx.QueryRow(ctx, sql, args...)
}

func (t arrayWatchTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	for _, q := range b.QueuedQueries {
		t.watch(q.Arguments)
	}
	return t.Tx.SendBatch(ctx, b)
}

// TestFirstPassWritesInBoundedStatements: a first pass over many roles
// records them, their baseline events and the sessions in statements of a
// bounded number of rows each, whatever the number of roles. It used to
// send every row and event of the pass in one batch: at 100,000 roles the
// rows, their JSON and their encoding for the wire were all held at once,
// most of the observer's peak memory (about 500 MB).
func TestFirstPassWritesInBoundedStatements(t *testing.T) {
	t.Parallel()
	const roles, sessions, bound = 5000, 1200, 2000
	s := newStore(t)
	all := manyRoles(roles)
	var sess []observed.DBSession
	for i := range sessions {
		r := all[1+i]
		sess = append(sess, observed.DBSession{PID: int32(1000 + i), BackendStart: at(-time.Minute), UserOID: r.OID, UserName: r.Name})
	}
	ctx := context.Background()
	longest := 0
	var p *observed.Pass
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		var err error
		p, err = applySnapshot(ctx, arrayWatchTx{Tx: tx, longest: &longest},
			Snapshot{Database: "main", ObservedAt: at(0), Roles: all, Sessions: sess, Managed: managed})
		return err
	})
	if err != nil {
		t.Fatalf("apply snapshot: %v", err)
	}
	if longest > bound {
		t.Errorf("a statement of the first pass carried %d rows; want at most %d", longest, bound)
	}
	// Everything is recorded all the same, events in the order found.
	var nRoles, nSessions, nEvents, disorder int
	err = s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM db_roles), (SELECT count(*) FROM db_sessions),
		(SELECT count(*) FROM db_events),
		(SELECT count(*) FROM (SELECT kind, lag(kind) OVER (ORDER BY seq) AS prev FROM db_events) x WHERE kind = 'role' AND prev = 'session')`).
		Scan(&nRoles, &nSessions, &nEvents, &disorder)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(roles+1, sessions, roles+sessions, 0)
	if got := fmt.Sprint(nRoles, nSessions, nEvents, disorder); got != want {
		t.Errorf("recorded roles, sessions, events, role events after session events = %s; want %s", got, want)
	}
	if len(p.Roles) != roles || len(p.Sessions) != sessions || len(p.RoleEvents) != roles || len(p.SessionEvents) != sessions {
		t.Errorf("pass reports %d roles, %d sessions, %d role and %d session events; want %d, %d, %d, %d",
			len(p.Roles), len(p.Sessions), len(p.RoleEvents), len(p.SessionEvents), roles, sessions, roles, sessions)
	}
}
