package observer

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

var managedRE = regexp.MustCompile(`^v-`)

func managed(name string) bool { return managedRE.MatchString(name) }

// pass applies one snapshot in its own transaction.
func pass(t *testing.T, s *store.Store, at time.Time, roles []observed.DBRole, sessions []observed.DBSession) *observed.Pass {
	t.Helper()
	var p *observed.Pass
	err := pgx.BeginFunc(context.Background(), s.Pool(), func(tx pgx.Tx) error {
		var err error
		p, err = applySnapshot(context.Background(), tx, Snapshot{Database: "main", ObservedAt: at, Roles: roles, Sessions: sessions, Managed: managed})
		return err
	})
	if err != nil {
		t.Fatalf("apply snapshot: %v", err)
	}
	return p
}

func roleKinds(p *observed.Pass) map[string]schemas.RoleEventKind {
	out := map[string]schemas.RoleEventKind{}
	for _, e := range p.RoleEvents {
		out[e.Role.Name] = e.Kind
	}
	return out
}

func sessionKinds(p *observed.Pass) map[int32]schemas.SessionEventKind {
	out := map[int32]schemas.SessionEventKind{}
	for _, e := range p.SessionEvents {
		out[e.PID] = e.Kind
	}
	return out
}

func TestApplySnapshotDiffs(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	until := at(time.Hour)
	postgres := observed.DBRole{OID: 10, Name: "postgres", CanLogin: true, Superuser: true}
	old := observed.DBRole{OID: 16001, Name: "v-token-old", CanLogin: true, ValidUntil: &until}
	app := observed.DBRole{OID: 16002, Name: "app", CanLogin: true}
	sOld := observed.DBSession{PID: 100, BackendStart: at(-time.Minute), UserOID: old.OID, UserName: old.Name, ClientAddr: "10.0.0.9", ClientPort: 5000,
		ApplicationName: "psql", Datname: "test", BackendType: "client backend"}
	sApp := observed.DBSession{PID: 101, BackendStart: at(-time.Minute), UserOID: app.OID, UserName: app.Name, BackendType: "client backend"}

	// Pass 1, the baseline: everything managed is reported as baseline,
	// unmanaged roles and sessions are not.
	p1 := pass(t, s, at(0), []observed.DBRole{postgres, old, app}, []observed.DBSession{sOld, sApp})
	if !p1.Baseline() || len(p1.Roles) != 1 || p1.Roles[0].CreatedAfter != nil || len(p1.Sessions) != 1 {
		t.Fatalf("baseline pass = %+v", p1)
	}
	if k := roleKinds(p1); len(k) != 1 || k["v-token-old"] != schemas.RoleAppeared || !p1.RoleEvents[0].Baseline {
		t.Errorf("baseline role events = %+v", p1.RoleEvents)
	}
	if k := sessionKinds(p1); len(k) != 1 || k[100] != schemas.SessionStarted || !p1.SessionEvents[0].Baseline {
		t.Errorf("baseline session events = %+v", p1.SessionEvents)
	}
	cov, err := store.Coverage(ctx, s.Pool())
	if err != nil || !cov.Equal(dbTime(at(0))) {
		t.Errorf("coverage = %v, %v; want the first pass", cov, err)
	}

	// Pass 2: a new managed role with a session, the old role renewed.
	later := at(2 * time.Hour)
	renewed := old
	renewed.ValidUntil = &later
	fresh := observed.DBRole{OID: 16003, Name: "v-token-new", CanLogin: true}
	sNew := observed.DBSession{PID: 102, BackendStart: at(3 * time.Second), UserOID: fresh.OID, UserName: fresh.Name, BackendType: "client backend"}
	p2 := pass(t, s, at(5*time.Second), []observed.DBRole{postgres, renewed, app, fresh}, []observed.DBSession{sOld, sApp, sNew})
	if k := roleKinds(p2); len(k) != 2 || k["v-token-new"] != schemas.RoleAppeared || k["v-token-old"] != schemas.RoleChanged {
		t.Errorf("pass 2 role events = %+v", p2.RoleEvents)
	}
	for _, e := range p2.RoleEvents {
		if e.Baseline || e.PreviousPassAt == nil || !e.PreviousPassAt.Equal(dbTime(at(0))) {
			t.Errorf("pass 2 event %s: baseline %v previous %v", e.Kind, e.Baseline, e.PreviousPassAt)
		}
		if e.Kind == schemas.RoleChanged && (e.Previous == nil || !e.Previous.ValidUntil.Equal(dbTime(until)) || !e.Role.ValidUntil.Equal(dbTime(later))) {
			t.Errorf("change event = %+v", e)
		}
	}
	var newRole *observed.Role
	for i := range p2.Roles {
		if p2.Roles[i].Name == "v-token-new" {
			newRole = &p2.Roles[i]
		}
	}
	if newRole == nil || newRole.CreatedAfter == nil || !newRole.CreatedAfter.Equal(dbTime(at(0))) || !newRole.FirstSeenAt.Equal(dbTime(at(5*time.Second))) {
		t.Errorf("new role = %+v", newRole)
	}
	if k := sessionKinds(p2); len(k) != 1 || k[102] != schemas.SessionStarted {
		t.Errorf("pass 2 session events = %+v", p2.SessionEvents)
	}

	// Pass 3: Vault drops the old role under its session (a ghost), and the
	// new role's session ends.
	p3 := pass(t, s, at(10*time.Second), []observed.DBRole{postgres, app, fresh}, []observed.DBSession{{PID: 100, BackendStart: sOld.BackendStart, UserOID: old.OID,
		ClientAddr: "10.0.0.9", BackendType: "client backend"}, sApp})
	if k := roleKinds(p3); len(k) != 1 || k["v-token-old"] != schemas.RoleDisappeared {
		t.Errorf("pass 3 role events = %+v", p3.RoleEvents)
	}
	if k := sessionKinds(p3); len(k) != 2 || k[100] != schemas.SessionGhost || k[102] != schemas.SessionEnded {
		t.Errorf("pass 3 session events = %+v", p3.SessionEvents)
	}
	for _, e := range p3.SessionEvents {
		if e.Kind == schemas.SessionGhost && (!e.Ghost || e.User != "" || e.FormerUser != "v-token-old") {
			t.Errorf("ghost event = %+v", e)
		}
		if err := schemas.ValidateValue("session-event", e); err != nil {
			t.Errorf("session event does not validate: %v", err)
		}
	}
	if len(p3.Sessions) != 1 || !p3.Sessions[0].Ghost || p3.Sessions[0].FormerUser != "v-token-old" || !p3.Sessions[0].FormerManaged ||
		p3.Sessions[0].GhostSince == nil || !p3.Sessions[0].FirstSeenAt.Equal(dbTime(at(0))) {
		t.Errorf("pass 3 sessions = %+v", p3.Sessions)
	}

	// Pass 4: nothing changed: no events; the ghost is still a ghost since
	// pass 3. A ghost first seen as such, of an oid history does not know,
	// is tracked with no former user.
	unknownGhost := observed.DBSession{PID: 103, BackendStart: at(8 * time.Second), UserOID: 99999, BackendType: "client backend"}
	p4 := pass(t, s, at(15*time.Second), []observed.DBRole{postgres, app, fresh}, []observed.DBSession{{PID: 100, BackendStart: sOld.BackendStart, UserOID: old.OID,
		BackendType: "client backend"}, sApp, unknownGhost})
	if len(p4.RoleEvents) != 0 || len(p4.SessionEvents) != 1 || p4.SessionEvents[0].PID != 103 {
		t.Errorf("pass 4 events = %+v %+v", p4.RoleEvents, p4.SessionEvents)
	}
	for _, ss := range p4.Sessions {
		switch ss.PID {
		case 100:
			if !ss.GhostSince.Equal(dbTime(at(10*time.Second))) || ss.FormerUser != "v-token-old" {
				t.Errorf("ghost 100 = %+v", ss)
			}
		case 103:
			if !ss.Ghost || ss.FormerUser != "" || ss.FormerManaged {
				t.Errorf("ghost 103 = %+v", ss)
			}
		default:
			t.Errorf("unexpected session %+v", ss)
		}
	}

	// The outbox holds every event once, in order, each valid.
	evs, err := unpublishedEvents(ctx, s.Pool(), "main", 100)
	if err != nil {
		t.Fatal(err)
	}
	want := len(p1.RoleEvents) + len(p1.SessionEvents) + len(p2.RoleEvents) + len(p2.SessionEvents) +
		len(p3.RoleEvents) + len(p3.SessionEvents) + len(p4.SessionEvents)
	if len(evs) != want {
		t.Fatalf("outbox holds %d events, want %d", len(evs), want)
	}
	for i, e := range evs {
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Error("outbox out of order")
		}
		name := map[string]string{"role": "role-event", "session": "session-event"}[e.Kind]
		if err := schemas.ValidateJSON(name, e.Event); err != nil {
			t.Errorf("event %s: %v", e.ID, err)
		}
	}
	if err := markEventsPublished(ctx, s.Pool(), []string{evs[0].ID}, at(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if evs2, _ := unpublishedEvents(ctx, s.Pool(), "main", 100); len(evs2) != want-1 {
		t.Errorf("after marking one: %d unpublished", len(evs2))
	}
	// Pruning drops ended sessions and published events, keeps role history.
	if err := pruneHistory(ctx, s.Pool(), "main", at(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	var sessions, events, roles int
	if err := s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM db_sessions), (SELECT count(*) FROM db_events),
		(SELECT count(*) FROM db_roles)`).Scan(&sessions, &events, &roles); err != nil {
		t.Fatal(err)
	}
	if sessions != 2 || events != want-1 || roles != 4 {
		t.Errorf("after prune: %d sessions, %d events, %d roles", sessions, events, roles)
	}
}

func TestApplySnapshotRenameAndReusedOID(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r := observed.DBRole{OID: 17000, Name: "v-a", CanLogin: true}
	pass(t, s, at(0), []observed.DBRole{r}, nil)
	// Renamed out of the managed pattern: published as a change.
	renamed := observed.DBRole{OID: 17000, Name: "human", CanLogin: true}
	p := pass(t, s, at(time.Second), []observed.DBRole{renamed}, nil)
	if len(p.RoleEvents) != 1 || p.RoleEvents[0].Kind != schemas.RoleChanged || p.RoleEvents[0].Managed || p.RoleEvents[0].Previous.Name != "v-a" || len(p.Roles) != 0 {
		t.Fatalf("rename = %+v, roles %+v", p.RoleEvents, p.Roles)
	}
	// Dropped, then the oid comes back as another role: a new appearance,
	// created after the pass that did not see it.
	pass(t, s, at(2*time.Second), nil, nil)
	p = pass(t, s, at(3*time.Second), []observed.DBRole{{OID: 17000, Name: "v-b", CanLogin: true}}, nil)
	if len(p.RoleEvents) != 1 || p.RoleEvents[0].Kind != schemas.RoleAppeared || len(p.Roles) != 1 ||
		!p.Roles[0].CreatedAfter.Equal(dbTime(at(2*time.Second))) || !p.Roles[0].FirstSeenAt.Equal(dbTime(at(3*time.Second))) {
		t.Fatalf("reused oid = %+v, roles %+v", p.RoleEvents, p.Roles)
	}
	// Gone, and no session names it: its history is pruned.
	pass(t, s, at(4*time.Second), nil, nil)
	if err := pruneHistory(context.Background(), s.Pool(), "main", at(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	if rows := dump(t, s, "db_roles"); len(rows) != 0 {
		t.Errorf("db_roles after prune = %v", rows)
	}
}

func TestDutyIsExclusiveAndFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newStore(t)
	b := openStore(t, a.Schema()) // another process on the same ledger

	da, err := tryDuty(ctx, a, "main", "a", at(0))
	if err != nil || da == nil {
		t.Fatalf("a: %v, %v", da, err)
	}
	if db, err := tryDuty(ctx, b, "main", "b", at(0)); err != nil || db != nil {
		t.Fatalf("b took a held duty: %v, %v", db, err)
	}
	// Another target is free.
	other, err := tryDuty(ctx, b, "other", "b", at(0))
	if err != nil || other == nil {
		t.Fatalf("b on other: %v, %v", other, err)
	}
	defer other.Release(ctx)
	check := func(d *Duty) error {
		return pgx.BeginFunc(ctx, a.Pool(), func(tx pgx.Tx) error { return d.Check(ctx, tx) })
	}
	if err := check(da); err != nil {
		t.Fatalf("holder's check: %v", err)
	}

	// a's lock connection dies (the server ends its session): b takes over,
	// and a's next pass is fenced off.
	var pid int
	if err := a.Pool().QueryRow(ctx, "SELECT holder_pid FROM observer_targets WHERE database = 'main'").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pool().Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	var db *Duty
	deadline := time.Now().Add(5 * time.Second)
	for db == nil && time.Now().Before(deadline) {
		if db, err = tryDuty(ctx, b, "main", "b", at(time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if db == nil {
		t.Fatal("b never got the duty after a's session ended")
	}
	defer db.Release(ctx)
	if db.Epoch() != da.Epoch()+1 {
		t.Errorf("epoch %d after %d", db.Epoch(), da.Epoch())
	}
	if err := check(da); !errors.Is(err, ErrDutyLost) {
		t.Errorf("old holder's check = %v, want ErrDutyLost", err)
	}
	if err := check(db); err != nil {
		t.Errorf("new holder's check: %v", err)
	}
	da.Release(ctx)
	da.Release(ctx) // twice is fine

	// A holder whose connection is fine but whose epoch was bumped (a
	// takeover it did not notice) is fenced too.
	if _, err := a.Pool().Exec(ctx, `UPDATE observer_targets SET epoch = epoch + 1 WHERE database = 'main'`); err != nil {
		t.Fatal(err)
	}
	if err := check(db); !errors.Is(err, ErrDutyLost) {
		t.Errorf("check after takeover = %v, want ErrDutyLost", err)
	}
	db.Release(ctx)
	// Released: the duty can be taken again.
	dc, err := tryDuty(ctx, a, "main", "a", at(2*time.Second))
	if err != nil || dc == nil {
		t.Fatalf("retake after release: %v, %v", dc, err)
	}
	dc.Release(ctx)
}
