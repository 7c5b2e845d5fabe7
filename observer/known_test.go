package observer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// rowCountingTx counts the rows its queries that read db_roles return.
type rowCountingTx struct {
	pgx.Tx
	roleRows *int
}

func (t rowCountingTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := t.Tx.Query(ctx, sql, args...)
	if err != nil || !strings.Contains(sql, "db_roles") {
		return rows, err
	}
	return &countedRows{Rows: rows, n: t.roleRows}, nil
}

type countedRows struct {
	pgx.Rows
	n *int
}

func (r *countedRows) Next() bool {
	ok := r.Rows.Next()
	if ok {
		*r.n++
	}
	return ok
}

// passKnown applies one snapshot in its own transaction, diffing against
// known, and returns the pass, what the next pass may diff against, and
// how many db_roles rows it read.
func passKnown(t *testing.T, tx func() (pgx.Tx, error), at time.Time, roles []observed.DBRole, sessions []observed.DBSession,
	known *knownRoles) (*observed.Pass, *knownRoles, int) {
	t.Helper()
	ctx := context.Background()
	raw, err := tx()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Rollback(ctx)
	n := 0
	p, next, err := applySnapshotKnown(ctx, rowCountingTx{Tx: raw, roleRows: &n},
		Snapshot{Database: "main", ObservedAt: at, Roles: roles, Sessions: sessions, Managed: managed}, known)
	if err != nil {
		t.Fatalf("apply snapshot: %v", err)
	}
	if err := raw.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return p, next, n
}

func manyRoles(n int) []observed.DBRole {
	until := at(time.Hour)
	roles := []observed.DBRole{{OID: 10, Name: "postgres", CanLogin: true, Superuser: true}}
	for i := range n {
		roles = append(roles, observed.DBRole{OID: uint32(20000 + i), Name: fmt.Sprintf("v-app-%05d", i), CanLogin: true, ValidUntil: &until})
	}
	return roles
}

// TestSteadyPassReadsNoRolesBack: a pass that follows a committed pass of
// the same process reads no role back from the state store when nothing
// changed, whatever the number of roles (it used to read them all, every
// pass: most of a pass's time at 100,000 roles). Its sessions' roles are
// present, so no history is needed either.
func TestSteadyPassReadsNoRolesBack(t *testing.T) {
	t.Parallel()
	for _, n := range []int{20, 400} {
		s := newStore(t)
		roles := manyRoles(n)
		sessions := []observed.DBSession{
			{PID: 100, BackendStart: at(-time.Minute), UserOID: roles[1].OID, UserName: roles[1].Name},
			{PID: 101, BackendStart: at(-time.Minute), UserOID: roles[n-1].OID, UserName: roles[n-1].Name},
		}
		begin := func() (pgx.Tx, error) { return s.Pool().Begin(context.Background()) }
		_, known, _ := passKnown(t, begin, at(0), roles, sessions, nil)
		p, known, read := passKnown(t, begin, at(5*time.Second), roles, sessions, known)
		if read != 0 || len(p.RoleEvents)+len(p.SessionEvents) != 0 {
			t.Errorf("%d roles, steady pass: read %d db_roles rows and saw %d changes; want none", n, read, len(p.RoleEvents)+len(p.SessionEvents))
		}
		if len(p.Roles) != n || len(p.Sessions) != 2 {
			t.Errorf("%d roles, steady pass reports %d roles and %d sessions; want %d and 2", n, len(p.Roles), len(p.Sessions), n)
		}
		// A change reads back only what it needs: here the dropped
		// role's row, which its event names (the known roles keep no
		// names).
		_, _, read = passKnown(t, begin, at(10*time.Second), roles[:n], sessions, known)
		if read != 1 {
			t.Errorf("%d roles, pass with one role dropped read %d db_roles rows; want 1", n, read)
		}
	}
}

// TestKnownRolesDiffLikeTheStateStore runs the same passes (roles
// appearing, changing, disappearing and coming back under the same oid, a
// session turning ghost and ending) on two state stores: one diffed
// against what the previous pass recorded, one against what is read back
// (as after a restart). Passes, events and stored rows must be the same;
// known roles left by a pass other than the previous one are ignored.
func TestKnownRolesDiffLikeTheStateStore(t *testing.T) {
	t.Parallel()
	until, later := at(time.Hour), at(2*time.Hour)
	a := observed.DBRole{OID: 16001, Name: "v-a", CanLogin: true, ValidUntil: &until}
	b := observed.DBRole{OID: 16002, Name: "v-b", CanLogin: true, ValidUntil: &until}
	c := observed.DBRole{OID: 16003, Name: "v-c", CanLogin: true}
	app := observed.DBRole{OID: 16004, Name: "app", CanLogin: true}
	b2 := b
	b2.ValidUntil = &later
	c2 := c
	c2.Name = "v-c-renamed"
	sa := observed.DBSession{PID: 200, BackendStart: at(-time.Minute), UserOID: a.OID, UserName: a.Name, ApplicationName: "job"}
	sb := observed.DBSession{PID: 201, BackendStart: at(-time.Minute), UserOID: b.OID, UserName: b.Name}
	ghostA := sa
	ghostA.UserName = ""
	lateGhost := observed.DBSession{PID: 202, BackendStart: at(-30 * time.Second), UserOID: a.OID}
	steps := []struct {
		roles    []observed.DBRole
		sessions []observed.DBSession
	}{
		{[]observed.DBRole{a, b, app}, []observed.DBSession{sa, sb}},
		{[]observed.DBRole{b2, c, app}, []observed.DBSession{ghostA, sb}}, // a dropped under its session, b renewed, c new
		{[]observed.DBRole{b2, c}, []observed.DBSession{sb}},              // the ghost ended, app dropped
		{[]observed.DBRole{b2, c}, []observed.DBSession{sb, lateGhost}},   // a ghost of a, gone a pass ago: history
		{[]observed.DBRole{a, b2, c}, []observed.DBSession{sb}},           // a back under its oid
		{[]observed.DBRole{a, b2, c2}, []observed.DBSession{sb}},          // c renamed
		{[]observed.DBRole{a, b2, c2}, []observed.DBSession{sb}},          // no change
		{[]observed.DBRole{b2}, nil},
	}
	withKnown, readBack := newStore(t), newStore(t)
	var known, stale *knownRoles
	for i, st := range steps {
		now := at(time.Duration(i) * 5 * time.Second)
		begin := func() (pgx.Tx, error) { return withKnown.Pool().Begin(context.Background()) }
		use := known
		if i == 4 {
			use = stale // left by pass 1, not by pass 4: must be ignored
		}
		got, next, _ := passKnown(t, begin, now, st.roles, st.sessions, use)
		if len(next.roles) != len(st.roles) {
			t.Errorf("pass %d leaves %d known roles; want the %d present", i, len(next.roles), len(st.roles))
		}
		if i == 1 {
			stale = &knownRoles{passAt: next.passAt, roles: []knownRole{knownOf(roleRow{DBRole: observed.DBRole{OID: app.OID, Name: "tampered"}})}}
		}
		known = next
		want := pass(t, readBack, now, st.roles, st.sessions)
		if g, w := passJSON(t, got), passJSON(t, want); g != w {
			t.Fatalf("pass %d differs:\nknown roles: %s\nread back:   %s", i, g, w)
		}
	}
	for _, table := range []string{"db_roles", "db_sessions"} {
		if g, w := strings.Join(dump(t, withKnown, table), "\n"), strings.Join(dump(t, readBack, table), "\n"); g != w {
			t.Errorf("%s differs:\nknown roles: %s\nread back:   %s", table, g, w)
		}
	}
	// The events of one pass are stored in the order they were found,
	// which follows map order: compared by id.
	if g, w := eventDocs(t, withKnown), eventDocs(t, readBack); g != w {
		t.Errorf("db_events differ:\nknown roles: %s\nread back:   %s", g, w)
	}
}

func eventDocs(t *testing.T, s *store.Store) string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `SELECT id || ' ' || kind || ' ' || event::text FROM db_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(docs, "\n")
}

// passJSON is a pass as JSON, its events sorted by id (their order within
// a pass follows map order).
func passJSON(t *testing.T, p *observed.Pass) string {
	t.Helper()
	c := *p
	c.RoleEvents = slices.Clone(p.RoleEvents)
	c.SessionEvents = slices.Clone(p.SessionEvents)
	slices.SortFunc(c.RoleEvents, func(a, b schemas.RoleEvent) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(c.SessionEvents, func(a, b schemas.SessionEvent) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
