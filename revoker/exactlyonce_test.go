package revoker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// errCrash is what a fault returns to stop a drop at a step, as a crash of
// the process would.
var errCrash = errors.New("simulated crash")

// faultPlan is a revoker.FaultFunc programmed per step: crash the first
// calls at a step, or hold the first call at a step until released.
type faultPlan struct {
	mu      sync.Mutex
	crashes map[revoker.Step]int
	holds   map[revoker.Step]*heldStep
	hits    map[revoker.Step]int
}

// heldStep is a step a drop waits at: reached is closed when the drop gets
// there, let lets it go on.
type heldStep struct {
	reached, release chan struct{}
	once             sync.Once
}

func (h *heldStep) let() { h.once.Do(func() { close(h.release) }) }

func newFaultPlan() *faultPlan {
	return &faultPlan{crashes: map[revoker.Step]int{}, holds: map[revoker.Step]*heldStep{}, hits: map[revoker.Step]int{}}
}

// crash makes the next n calls at step fail.
func (p *faultPlan) crash(step revoker.Step, n int) *faultPlan {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashes[step] += n
	return p
}

// hold makes the next call at step wait until the returned step is let go,
// at the latest when the test ends (call it after the rig is made, so that
// it is let go before the rig is taken down).
func (p *faultPlan) hold(t *testing.T, step revoker.Step) *heldStep {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &heldStep{reached: make(chan struct{}), release: make(chan struct{})}
	p.holds[step] = h
	t.Cleanup(h.let)
	return h
}

func (p *faultPlan) count(step revoker.Step) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[step]
}

func (p *faultPlan) fn(ctx context.Context, step revoker.Step, _ []string) error {
	p.mu.Lock()
	p.hits[step]++
	if p.crashes[step] > 0 {
		p.crashes[step]--
		p.mu.Unlock()
		return errCrash
	}
	h := p.holds[step]
	delete(p.holds, step)
	p.mu.Unlock()
	if h == nil {
		return nil
	}
	close(h.reached)
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait waits for a drop to reach the held step.
func (h *heldStep) wait(t *testing.T) {
	t.Helper()
	select {
	case <-h.reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the drop never reached the held step")
	}
}

// executor is an Executor of the rig's store and target whose drops go
// through faults (nil: none).
func (r *svcRig) executor(t *testing.T, faults revoker.FaultFunc) *revoker.Executor {
	t.Helper()
	d, err := revoker.NewDropper(revoker.DropperConfig{Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	x, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: d, Verifier: r.verifier, Targets: target.Pools{"main": r.admin},
		State: r.st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"}})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func execOne(x *revoker.Executor, cmd schemas.RevocationCommand) revoker.Executed {
	return x.Execute(context.Background(), []schemas.RevocationCommand{cmd}, nil)[0]
}

// chainVerifies checks the rig's evidence chain.
func (r *svcRig) chainVerifies(t *testing.T) {
	t.Helper()
	rep, err := evidence.VerifyOutbox(context.Background(), r.st.Pool(), evidence.VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Errorf("evidence chain does not verify: %+v %v", rep, err)
	}
}

// wantOutcomes checks the outcomes of user's revocation evidence.
func (r *svcRig) wantOutcomes(t *testing.T, user string, want ...string) {
	t.Helper()
	got := r.outcomes(t, user)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("evidence outcomes of %s = %v, want %v", user, got, want)
	}
}

func (r *svcRig) targetXID(t *testing.T, commandID string) int64 {
	t.Helper()
	xids, err := store.TargetXIDs(context.Background(), r.st.Pool(), []string{commandID})
	if err != nil {
		t.Fatal(err)
	}
	return xids[commandID]
}

func txidStatus(t *testing.T, pool *pgxpool.Pool, xid int64) string {
	t.Helper()
	var s *string
	if err := pool.QueryRow(context.Background(), "SELECT txid_status($1)", xid).Scan(&s); err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return "unknown"
	}
	return *s
}

func canLogin(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", name).Scan(&ok); err != nil {
		t.Fatalf("read role %s: %v", name, err)
	}
	return ok
}

// sessionAs opens a session logged in as role.
func sessionAs(t *testing.T, role string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// sessionsOf counts the sessions of the role with oid, by oid (a session of
// a dropped role has no user name).
func sessionsOf(t *testing.T, pool *pgxpool.Pool, oid uint32) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE usesysid = $1", oid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCrashAtEveryStepThenRedelivery stops the first attempt of a command
// at each step of the drop, as a crash of the revoker would, and lets
// JetStream deliver it again: the role is gone, no session of it is left,
// there is exactly one "dropped" in the evidence, and the chain verifies.
func TestCrashAtEveryStepThenRedelivery(t *testing.T) {
	t.Parallel()
	for _, step := range revoker.DropSteps() {
		t.Run(string(step), func(t *testing.T) {
			t.Parallel()
			plan := newFaultPlan().crash(step, 1)
			r := newSvcRigWith(t, revoker.DropperConfig{Faults: plan.fn})
			user := "v-crash-" + string(step) + "-" + pgtest.Suffix()
			r.role(t, user)
			sessionAs(t, user)
			cmd := r.command(t, "crash-"+user, user)
			r.publish(t, cmd)
			r.drained(t)
			if n := plan.count(step); n < 1 {
				t.Fatalf("the drop never reached %s", step)
			}
			if exists(t, r.admin, user) {
				t.Fatal("user not dropped after the redelivery")
			}
			if n := sessionsOf(t, r.admin, cmd.RoleOID); n != 0 {
				t.Errorf("%d session(s) of the dropped user left", n)
			}
			r.wantOutcomes(t, user, "dropped")
			rev, err := store.GetRevocation(context.Background(), r.st.Pool(), cmd.ID)
			if err != nil || rev.Attempts != 2 || rev.Result == nil || rev.Result.SessionsLeftAfter != 0 {
				t.Errorf("revocation = %+v, %v; want 2 attempts, no session left", rev, err)
			}
			r.chainVerifies(t)
		})
	}
}

// TestCrashAfterCommitEndsLateSession: a session logs in after the drop
// terminated the role's sessions and before it committed (the NOLOGIN is
// not visible to it yet); the revoker dies just after COMMIT, before it
// ends that session. The redelivered command may only say "dropped" once
// no session of the role is left.
func TestCrashAfterCommitEndsLateSession(t *testing.T) {
	t.Parallel()
	plan := newFaultPlan().crash(revoker.StepAfterCommit, 1)
	r := newSvcRig(t)
	held := plan.hold(t, revoker.StepBeforeCommit)
	x := r.executor(t, plan.fn)
	user := "v-late-" + pgtest.Suffix()
	r.role(t, user)
	cmd := r.command(t, "late-"+user, user)
	first := make(chan revoker.Executed, 1)
	go func() { first <- execOne(x, cmd) }()
	held.wait(t)
	late := sessionAs(t, user)
	held.let()
	if e := <-first; !e.Retry || e.Recorded {
		t.Fatalf("first attempt = %+v, want handed back unrecorded", e)
	}
	if exists(t, r.admin, user) || sessionsOf(t, r.admin, cmd.RoleOID) != 1 {
		t.Fatalf("setup: want the role dropped and its late session alive")
	}
	e := execOne(x, cmd)
	if !e.Recorded || e.Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("redelivery = %+v", e)
	}
	if err := late.Ping(context.Background()); err == nil {
		t.Error("the late session of the dropped user is still alive")
	}
	if e.Result.SessionsLeftAfter != 0 || sessionsOf(t, r.admin, cmd.RoleOID) != 0 {
		t.Errorf("sessions left: result %d, pg_stat_activity %d", e.Result.SessionsLeftAfter, sessionsOf(t, r.admin, cmd.RoleOID))
	}
	r.wantOutcomes(t, user, "dropped")
	r.chainVerifies(t)
}

// TestAbortedTargetTransaction: the first attempt recorded its target
// transaction id and the transaction rolled back (the revoker died before
// COMMIT). That transaction dropped nothing and must never be counted as a
// drop.
func TestAbortedTargetTransaction(t *testing.T) {
	t.Parallel()
	// meanwhile happens between the aborted attempt and the redelivery.
	for _, tc := range []struct {
		name      string
		meanwhile func(t *testing.T, r *svcRig, x *revoker.Executor, user string)
		want      []string
	}{
		{"role still there", nil, []string{"dropped"}},
		{"another command dropped it", func(t *testing.T, r *svcRig, x *revoker.Executor, user string) {
			if e := execOne(x, r.command(t, "other-"+user, user)); e.Result.Outcome != schemas.OutcomeDropped {
				t.Fatalf("the other command: %+v", e)
			}
		}, []string{"dropped", "already_absent"}},
		{"vault dropped it", func(t *testing.T, r *svcRig, _ *revoker.Executor, user string) {
			if _, err := r.admin.Exec(context.Background(), "DROP ROLE "+pgx.Identifier{user}.Sanitize()); err != nil {
				t.Fatal(err)
			}
		}, []string{"already_absent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newSvcRig(t)
			x := r.executor(t, newFaultPlan().crash(revoker.StepBeforeCommit, 1).fn)
			user := "v-aborted-" + pgtest.Suffix()
			r.role(t, user)
			cmd := r.command(t, "aborted-"+user, user)
			if e := execOne(x, cmd); !e.Retry || e.Recorded {
				t.Fatalf("first attempt = %+v, want handed back unrecorded", e)
			}
			xid := r.targetXID(t, cmd.ID)
			if xid == 0 || txidStatus(t, r.admin, xid) != "aborted" {
				t.Fatalf("target transaction %d: %s, want recorded and aborted", xid, txidStatus(t, r.admin, xid))
			}
			if !exists(t, r.admin, user) || !canLogin(t, r.admin, user) {
				t.Fatal("the aborted transaction changed the role")
			}
			if tc.meanwhile != nil {
				tc.meanwhile(t, r, x, user)
			}
			e := execOne(x, cmd)
			if !e.Recorded || string(e.Result.Outcome) != tc.want[len(tc.want)-1] {
				t.Fatalf("redelivery = %s (%s), want %s", e.Result.Outcome, e.Result.Reason, tc.want[len(tc.want)-1])
			}
			if exists(t, r.admin, user) {
				t.Error("user still there")
			}
			r.wantOutcomes(t, user, tc.want...)
			r.chainVerifies(t)
		})
	}
}

// TestTargetXIDNotRecordedMeansNoDrop: when the state store refuses to
// record the target transaction id, the drop must not commit. A drop
// committed without its id on record would be found "already absent" by a
// redelivery after a crash, and the user would have no "dropped" at all.
func TestTargetXIDNotRecordedMeansNoDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newSvcRig(t)
	plan := newFaultPlan().crash(revoker.StepAfterCommit, 1)
	x := r.executor(t, plan.fn)
	user := "v-noxid-" + pgtest.Suffix()
	r.role(t, user)
	cmd := r.command(t, "noxid-"+user, user)
	// The state store fails the write of target_xid, and only that one.
	if _, err := r.st.Pool().Exec(ctx, `CREATE FUNCTION refuse_xid() RETURNS trigger LANGUAGE plpgsql AS
		$$BEGIN RAISE EXCEPTION 'state store unavailable'; END$$;
		CREATE TRIGGER refuse_xid BEFORE UPDATE OF target_xid ON revocations FOR EACH ROW EXECUTE FUNCTION refuse_xid()`); err != nil {
		t.Fatal(err)
	}
	if e := execOne(x, cmd); !e.Retry || e.Recorded {
		t.Fatalf("first attempt = %+v, want handed back unrecorded", e)
	}
	if !exists(t, r.admin, user) || !canLogin(t, r.admin, user) {
		t.Fatal("the role was changed although its target transaction id could not be recorded")
	}
	if _, err := r.st.Pool().Exec(ctx, `DROP TRIGGER refuse_xid ON revocations`); err != nil {
		t.Fatal(err)
	}
	if e := execOne(x, cmd); !e.Retry {
		t.Fatalf("second attempt = %+v, want the crash after commit", e)
	}
	if e := execOne(x, cmd); !e.Recorded || e.Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("redelivery = %+v", e)
	}
	r.wantOutcomes(t, user, "dropped")
	r.chainVerifies(t)
}

// waitRoleLockWaiter waits until a session waits for the advisory lock of
// role name (the revoker's per-role lock).
func waitRoleLockWaiter(t *testing.T, pool *pgxpool.Pool, name string) {
	t.Helper()
	waitFor(t, 30*time.Second, "a second attempt waiting on the role's lock", func() bool {
		var n int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks AS l,
			(SELECT hashtextextended('leaseguard.role:' || $1, 0) AS k) AS key
			WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 1
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND l.classid::bigint = (key.k >> 32) & 4294967295 AND l.objid::bigint = key.k & 4294967295`, name).Scan(&n)
		return err == nil && n > 0
	})
}

// wantOneDropped checks two attempts of one command: exactly one says
// "dropped" as its own outcome; the other is a duplicate of it, or found
// the role already absent.
func wantOneDropped(t *testing.T, a, b revoker.Executed) {
	t.Helper()
	own := func(e revoker.Executed) bool {
		return e.Recorded && !e.Duplicate && e.Result.Outcome == schemas.OutcomeDropped
	}
	other := func(e revoker.Executed) bool {
		return e.Recorded && (e.Duplicate || e.Result.Outcome == schemas.OutcomeAlreadyAbsent)
	}
	if !(own(a) && other(b)) && !(own(b) && other(a)) {
		t.Fatalf("attempts: %s dup=%v rec=%v (%s) / %s dup=%v rec=%v (%s); want one dropped, the other a duplicate or already_absent",
			a.Result.Outcome, a.Duplicate, a.Recorded, a.Result.Reason, b.Result.Outcome, b.Duplicate, b.Recorded, b.Result.Reason)
	}
}

// TestRacingAttemptsOfOneCommand runs two attempts of one command (a
// redelivery while the first is still at work, or two revokers) through two
// Executors: exactly one "dropped", never two.
func TestRacingAttemptsOfOneCommand(t *testing.T) {
	t.Parallel()
	t.Run("second waits on the lock of the first before commit", func(t *testing.T) {
		t.Parallel()
		r := newSvcRig(t)
		plan := newFaultPlan()
		held := plan.hold(t, revoker.StepBeforeCommit)
		a, b := r.executor(t, plan.fn), r.executor(t, nil)
		user := "v-race-lock-" + pgtest.Suffix()
		r.role(t, user)
		cmd := r.command(t, "race-"+user, user)
		first, second := make(chan revoker.Executed, 1), make(chan revoker.Executed, 1)
		go func() { first <- execOne(a, cmd) }()
		held.wait(t)
		go func() { second <- execOne(b, cmd) }()
		waitRoleLockWaiter(t, r.admin, user)
		held.let()
		e1, e2 := <-first, <-second
		r.wantOutcomes(t, user, "dropped")
		wantOneDropped(t, e1, e2)
		r.chainVerifies(t)
	})
	t.Run("second records while the first has committed and not recorded", func(t *testing.T) {
		t.Parallel()
		r := newSvcRig(t)
		plan := newFaultPlan()
		held := plan.hold(t, revoker.StepBeforeRecord)
		a, b := r.executor(t, plan.fn), r.executor(t, nil)
		user := "v-race-rec-" + pgtest.Suffix()
		r.role(t, user)
		cmd := r.command(t, "race-"+user, user)
		first := make(chan revoker.Executed, 1)
		go func() { first <- execOne(a, cmd) }()
		held.wait(t)
		e2 := execOne(b, cmd)
		held.let()
		e1 := <-first
		r.wantOutcomes(t, user, "dropped")
		wantOneDropped(t, e1, e2)
		r.chainVerifies(t)
	})
	t.Run("free race", func(t *testing.T) {
		t.Parallel()
		r := newSvcRig(t)
		a, b := r.executor(t, nil), r.executor(t, nil)
		for round := range 4 {
			user := fmt.Sprintf("v-race-free-%s-%d", pgtest.Suffix(), round)
			r.role(t, user)
			cmd := r.command(t, "race-"+user, user)
			var wg sync.WaitGroup
			var e1, e2 revoker.Executed
			wg.Go(func() { e1 = execOne(a, cmd) })
			wg.Go(func() { e2 = execOne(b, cmd) })
			wg.Wait()
			r.wantOutcomes(t, user, "dropped")
			wantOneDropped(t, e1, e2)
		}
		r.chainVerifies(t)
	})
}

// TestRoleChangedUnderRevocation changes the role after the revoker read
// it and passed its guards, and before the NOLOGIN: the revocation must
// not drop it on the strength of what it read. The next attempt judges the
// role as it is now and refuses.
func TestRoleChangedUnderRevocation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change string
		guard  string
	}{
		{"made superuser", "ALTER ROLE %[1]s SUPERUSER", revoker.GuardSuperuser},
		{"dropped and re-created", "DROP ROLE %[1]s; CREATE ROLE %[1]s LOGIN", revoker.GuardRoleOID},
		{"given CREATEROLE", "ALTER ROLE %[1]s CREATEROLE", revoker.GuardCreateRole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newSvcRig(t)
			plan := newFaultPlan()
			held := plan.hold(t, revoker.StepBeforeNologin)
			x := r.executor(t, plan.fn)
			user := "v-changed-" + pgtest.Suffix()
			r.role(t, user)
			cmd := r.command(t, "changed-"+user, user)
			first := make(chan revoker.Executed, 1)
			go func() { first <- execOne(x, cmd) }()
			held.wait(t)
			if _, err := r.admin.Exec(context.Background(), fmt.Sprintf(tc.change, pgx.Identifier{user}.Sanitize())); err != nil {
				held.let()
				t.Fatal(err)
			}
			held.let()
			e := <-first
			if e.Result.Outcome == schemas.OutcomeDropped || e.Result.Outcome == schemas.OutcomeAlreadyAbsent {
				t.Fatalf("first attempt = %s (%s), want failed or refused", e.Result.Outcome, e.Result.Reason)
			}
			if !exists(t, r.admin, user) || !canLogin(t, r.admin, user) {
				t.Fatal("the changed role was dropped or changed")
			}
			e = execOne(x, cmd)
			if e.Result.Outcome != schemas.OutcomeRefused || e.Result.Guard != tc.guard {
				t.Fatalf("next attempt = %s guard %q (%s), want refused by %s", e.Result.Outcome, e.Result.Guard, e.Result.Reason, tc.guard)
			}
			if !exists(t, r.admin, user) {
				t.Fatal("the changed role was dropped")
			}
			r.wantOutcomes(t, user, "refused")
		})
	}
}

// TestAbsentRoleLeavesRenamedRoleAlone: sessions of a role found absent are
// looked for by the oid its command was signed for, and must be ghosts. A
// role renamed since the command was issued keeps that oid under another
// name: its sessions are neither ended nor counted against the command.
func TestAbsentRoleLeavesRenamedRoleAlone(t *testing.T) {
	t.Parallel()
	r := newSvcRig(t)
	x := r.executor(t, nil)
	user, renamed := "v-renamed-"+pgtest.Suffix(), "v-renamed-to-"+pgtest.Suffix()
	r.role(t, user)
	pgtest.DropRoleAtCleanup(t, r.admin, renamed)
	cmd := r.command(t, "renamed-"+user, user)
	conn := sessionAs(t, user)
	if _, err := r.admin.Exec(context.Background(), "ALTER ROLE "+pgx.Identifier{user}.Sanitize()+" RENAME TO "+pgx.Identifier{renamed}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	e := execOne(x, cmd)
	if e.Result.Outcome != schemas.OutcomeAlreadyAbsent || e.Result.SessionsTerminated != 0 || e.Result.SessionsLeftAfter != 0 {
		t.Errorf("result = %s, terminated %d, left %d (%s); want already_absent, none terminated or counted",
			e.Result.Outcome, e.Result.SessionsTerminated, e.Result.SessionsLeftAfter, e.Result.Reason)
	}
	if err := conn.Ping(context.Background()); err != nil {
		t.Errorf("the renamed role's session was ended: %v", err)
	}
	if !exists(t, r.admin, renamed) {
		t.Error("the renamed role was dropped")
	}
}
