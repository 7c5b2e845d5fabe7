package revoker_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// dropLockKey is the target's drop lock (revoker's dropLockSQL).
const dropLockKey = `hashtextextended('leaseguard.drop', 0)`

// held is how long the test keeps the drop in each phase it times.
const held = 200 * time.Millisecond

// TestDropLockWaitObservedApart: the time a batch waits for the target's
// drop lock, held by another revocation, is observed in
// leaseguard_revocation_drop_lock_wait_seconds, and the time it then holds
// the lock in leaseguard_revocation_drop_lock_held_seconds, and nothing
// else is: the wait counts from the lock's request, not from the start of
// the drop transaction, and ends when the lock is taken; the hold ends at
// the commit, before the checks after it. Both are parts of
// leaseguard_revocation_batch_seconds. Batches in one database hold the
// lock one at a time, so the hold times of batches in flight together add
// up without counting any second twice.
func TestDropLockWaitObservedApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	app := "lg-lockwait-" + pgtest.Suffix()
	pool := appPool(t, app)
	plan := newFaultPlan()
	rig := newExecRig(t, pool, revoker.DropperConfig{Faults: plan.fn})
	exec, reg, signer := rig.exec, rig.reg, rig.signer
	cmd := signedDrop(t, pool, signer, "v-lockwait-")

	holder, err := pgx.Connect(ctx, pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Close(context.Background()) })
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock(`+dropLockKey+`)`); err != nil {
		t.Fatal(err)
	}
	beforeLock, beforeCommit := plan.hold(t, revoker.StepBeforeNologin), plan.hold(t, revoker.StepBeforeCommit)
	afterCommit := plan.hold(t, revoker.StepAfterCommit)
	done := make(chan revoker.Executed, 1)
	go func() { done <- exec.Execute(ctx, []schemas.RevocationCommand{cmd}, nil)[0] }()

	// Drop work ahead of the lock: the transaction is open, the lock not
	// asked for.
	beforeLock.wait(t)
	holdFor(t, "the drop ahead of the drop lock", func() bool { return !onDropLock(t, holder, app, false) })
	asked := time.Now()
	beforeLock.let()
	waitFor(t, 30*time.Second, "the drop waiting for the drop lock", func() bool { return onDropLock(t, holder, app, false) })
	seen := time.Now()
	holdFor(t, "the drop waiting for the drop lock", func() bool { return onDropLock(t, holder, app, false) })
	released := time.Now()
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock(`+dropLockKey+`)`); err != nil {
		t.Fatal(err)
	}
	// Drop work under the lock, then after the commit.
	beforeCommit.wait(t)
	taken := time.Now()
	holdFor(t, "the drop holding the drop lock", func() bool { return onDropLock(t, holder, app, true) })
	committing := time.Now()
	beforeCommit.let()
	afterCommit.wait(t)
	committed := time.Now()
	holdFor(t, "the drop past its commit", func() bool { return true })
	afterCommit.let()
	if e := <-done; !e.Recorded || e.Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("drop: %+v", e)
	}

	waits, wait := histogram(t, reg, "leaseguard_revocation_drop_lock_wait_seconds")
	holds, hold := histogram(t, reg, "leaseguard_revocation_drop_lock_held_seconds")
	batches, batch := histogram(t, reg, "leaseguard_revocation_batch_seconds")
	if waits != 1 || holds != 1 || batches != 1 {
		t.Fatalf("%d lock waits, %d lock holds and %d batches observed; want 1 of each", waits, holds, batches)
	}
	if atLeast, atMost := released.Sub(seen).Seconds(), taken.Sub(asked).Seconds(); wait < atLeast || wait > atMost {
		t.Errorf("waited %.3f s for the drop lock; it was waited on for at least %.3f s and at most %.3f s", wait, atLeast, atMost)
	}
	if atLeast, atMost := committing.Sub(taken).Seconds(), committed.Sub(released).Seconds(); hold < atLeast || hold > atMost {
		t.Errorf("held the drop lock %.3f s; it was held for at least %.3f s and at most %.3f s", hold, atLeast, atMost)
	}
	if rest := batch - wait - hold; rest < 2*held.Seconds() {
		t.Errorf("batch %.3f s less the wait %.3f s and the hold %.3f s leaves %.3f s, less than the 2×%v of drop work held ahead of the lock and after the commit",
			batch, wait, hold, rest, held)
	}
}

// signedDrop creates a role named prefix and a suffix in pool (target
// "main"; dropped at cleanup if still there) and returns the command,
// signed by signer, that drops it.
func signedDrop(t *testing.T, pool *pgxpool.Pool, signer *revoker.Signer, prefix string) schemas.RevocationCommand {
	t.Helper()
	user := prefix + pgtest.Suffix()
	if _, err := pool.Exec(context.Background(), `CREATE ROLE "`+user+`" LOGIN`); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, pool, user)
	cmd := cmdtest.Drop(t, pool, "main", user)
	if err := signer.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// holdFor keeps the test where it is for held, checking all along that
// cond holds.
func holdFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < held; {
		if !cond() {
			t.Fatalf("no longer %s", what)
		}
	}
}

// onDropLock reports whether a session of application app holds the
// target's drop lock (granted) or waits for it.
func onDropLock(t *testing.T, conn *pgx.Conn, app string, granted bool) bool {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks AS l
		JOIN pg_stat_activity AS a ON a.pid = l.pid, (SELECT `+dropLockKey+` AS k) AS key
		WHERE a.application_name = $1 AND l.locktype = 'advisory' AND l.granted = $2 AND l.objsubid = 1
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND l.classid::bigint = (key.k >> 32) & 4294967295 AND l.objid::bigint = key.k & 4294967295`, app, granted).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// appPool is a pool on the test server whose sessions carry app as their
// application_name.
func appPool(t *testing.T, app string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// execRig is an Executor dropping in a pool (target "main") on a migrated
// state store of its own, with its metrics in reg, and the signer of the
// commands it accepts.
type execRig struct {
	exec   *revoker.Executor
	reg    *prometheus.Registry
	signer *revoker.Signer
	st     *store.Store
}

func newExecRig(t *testing.T, pool *pgxpool.Pool, cfg revoker.DropperConfig) execRig {
	t.Helper()
	st := migratedStore(t, "lg_exec")
	dropper, err := revoker.NewDropper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	signer, verifier := testKeys(t)
	reg := prometheus.NewRegistry()
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{
		Dropper: dropper, Verifier: verifier, Targets: target.Pools{"main": pool}, State: st.Pool(),
		Evidence: evidence.Builder{Source: "urn:leaseguard:test"}, Metrics: revoker.NewMetrics(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	return execRig{exec: exec, reg: reg, signer: signer, st: st}
}
