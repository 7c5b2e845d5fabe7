package revoker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dropTx is one drop transaction on its way through its steps:
//
//  1. lockAndRead: take the roles' advisory locks and read pg_roles;
//  2. judge: apply the guards, before anything changes;
//  3. nologin: ALTER ROLE … NOLOGIN, then re-read the roles under it;
//  4. terminate: end the roles' sessions;
//  5. 6. dropRoles: the target's drop lock, then REASSIGN OWNED, REVOKE,
//     DROP OWNED, DROP ROLE;
//  7. commit: hand the transaction id to the before-commit hook, commit;
//
// then the Dropper's check after it (afterCheck) and the outcome.
type dropTx struct {
	d  *Dropper
	tx pgx.Tx
	// hook is called just before COMMIT (nil: none; see BeforeCommitFunc).
	hook BeforeCommitFunc
	// lock adds up the time spent waiting for the drop lock and holding
	// it; lockedAt is when it was taken (zero: not held).
	lock     *dropLockTimes
	lockedAt time.Time
	// items are all the transaction's commands; targets those that passed
	// the guards and are dropped, absent those whose role is gone.
	items, targets, absent []*item
	reassignTo             string
	// ended: the transaction was committed or rolled back.
	ended bool
}

// run is the drop transaction for items (all past precheck, distinct
// names). It sets each item's result except when it returns an error, in
// which case the caller decides (fail, or run each item alone).
func (d *Dropper) run(ctx context.Context, pool *pgxpool.Pool, items []*item, hook BeforeCommitFunc, lock *dropLockTimes) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: d.beginSQL})
	if err != nil {
		return &runError{step: "begin", err: err}
	}
	t := &dropTx{d: d, tx: tx, hook: hook, lock: lock, items: items}
	defer t.rollback(ctx)
	if err := t.lockAndRead(ctx); err != nil {
		return err
	}
	if len(t.targets) == 0 {
		t.rollback(ctx)
		d.afterCheck(ctx, pool, t.absent)
		return nil
	}
	for _, step := range []func(context.Context) error{t.nologin, t.terminate, t.dropRoles, t.commit} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	// 7) The checks the outcome rests on.
	d.afterCheck(ctx, pool, append(t.targets, t.absent...))
	for _, it := range t.targets {
		judgeDropped(&it.res)
	}
	return nil
}

// rollback ends the transaction unless it already ended, within
// cleanupTimeout even when ctx has ended.
func (t *dropTx) rollback(ctx context.Context) {
	if t.ended {
		return
	}
	t.ended = true
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = t.tx.Rollback(rctx)
	t.unlocked()
}

func names(items []*item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.name
	}
	return out
}

// lockAndRead is steps 1 and 2. Lock, then read, in one round trip: the
// read is a later statement, so its snapshot sees whatever a previous
// holder of the lock committed. Then the guards sort the items.
func (t *dropTx) lockAndRead(ctx context.Context) error {
	all := names(t.items)
	b := &pgx.Batch{}
	b.Queue(lockSQL, all)
	b.Queue(readSQL, all)
	br := t.tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return &runError{step: "advisory lock", err: err}
	}
	sess, facts, err := scanRead(br.Query())
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &runError{step: "read pg_roles", err: err}
	}
	t.reassignTo = t.d.reassignTo
	if t.reassignTo == "" {
		t.reassignTo = sess.CurrentUser
	}
	t.targets, t.absent = t.d.judge(t.items, sess, facts, t.reassignTo)
	return nil
}

// nologin is step 3. ALTER ROLE takes one role; the statements go in one
// round trip.
func (t *dropTx) nologin(ctx context.Context) error {
	if err := t.d.fault(ctx, StepBeforeNologin, t.targets); err != nil {
		return err
	}
	alters := make([]string, len(t.targets))
	for i, it := range t.targets {
		it.alterSQL = "ALTER ROLE " + ident(it.name) + " NOLOGIN"
		it.res.Statements = append(it.res.Statements, it.alterSQL)
		alters[i] = it.alterSQL
	}
	if _, err := t.tx.Exec(ctx, strings.Join(alters, "; ")); err != nil {
		return &runError{step: "alter role nologin", err: err}
	}
	if err := t.d.fault(ctx, StepAfterNologin, t.targets); err != nil {
		return err
	}
	return t.verify(ctx)
}

// verify re-reads the targets. Our update now holds the pg_authid rows:
// nobody can change or drop these roles until we end. A role replaced or
// altered since step 1 is not dropped on the strength of stale facts.
func (t *dropTx) verify(ctx context.Context) error {
	_, again, err := scanRead(t.tx.Query(ctx, readSQL, names(t.targets)))
	if err != nil {
		return &runError{step: "re-read pg_roles", err: err}
	}
	for _, it := range t.targets {
		if g, ok := again[it.name]; !ok || g != it.role {
			return &runError{step: "verify", err: fmt.Errorf("role %q changed during the revocation", it.name)}
		}
	}
	return nil
}

// terminate is step 4: end the targets' sessions (pg_terminate_backend
// does not wait; the check after the commit does).
func (t *dropTx) terminate(ctx context.Context) error {
	term := terminateOneSQL
	if len(t.targets) > 1 {
		term = terminateManySQL
	}
	for _, it := range t.targets {
		it.terminateSQL = term
		it.res.Statements = append(it.res.Statements, term)
	}
	if len(t.targets) == 1 {
		var n int
		if err := t.tx.QueryRow(ctx, term, t.targets[0].name).Scan(&n); err != nil {
			return &runError{step: "terminate sessions", err: err}
		}
		t.targets[0].terminated = n
	} else {
		counts, err := queryCounts[string](ctx, t.tx, term, names(t.targets))
		if err != nil {
			return &runError{step: "terminate sessions", err: err}
		}
		for _, it := range t.targets {
			it.terminated = counts[it.name]
		}
	}
	for _, it := range t.targets {
		it.terminateRan = true
		it.res.SessionsTerminated += it.terminated
	}
	return nil
}

// firstActing is the index of the first statement of dropSteps that acts
// on the roles; those before it are not recorded.
const firstActing = 1

// takeDropLock waits for the target's drop lock, in a round trip of its
// own so that the wait is known apart from the drop work: batches in
// flight together take turns on it. The drop lock only orders
// leaseguard's own drops; waiting for it is bounded by statement_timeout,
// not by lock_timeout, which is meant for locks held by the database's
// users.
func (t *dropTx) takeDropLock(ctx context.Context) error {
	start := time.Now()
	_, err := t.tx.Exec(ctx, "SET LOCAL lock_timeout = 0; "+dropLockSQL+
		fmt.Sprintf("; SET LOCAL lock_timeout = %d", millis(t.d.lockTimeout)))
	now := time.Now()
	t.lock.waited += now.Sub(start)
	if err != nil {
		return &runError{step: "drop lock", err: err}
	}
	t.lockedAt = now
	return nil
}

// unlocked counts the time the drop lock was held, once the transaction
// that took it has ended.
func (t *dropTx) unlocked() {
	if !t.lockedAt.IsZero() {
		t.lock.held += time.Since(t.lockedAt)
		t.lockedAt = time.Time{}
	}
}

// dropSteps are the statements of steps 5 and 6, after a savepoint.
func (t *dropTx) dropSteps(ctx context.Context) ([]txStep, error) {
	ids := identList(t.targets)
	steps := []txStep{
		{step: "savepoint", sql: savepointSQL},
		roleStep("reassign owned", "REASSIGN OWNED BY ", ids, " TO "+ident(t.reassignTo)),
	}
	if len(t.targets) > 1 {
		revokes, err := revokeSteps(ctx, t.tx, t.targets, ids)
		if err != nil {
			return nil, &runError{step: "read grants", err: err}
		}
		steps = append(steps, revokes...)
	}
	steps = append(steps, roleStep("drop owned", "DROP OWNED BY ", ids, ""))
	grantors, err := grantorSteps(ctx, t.tx, t.targets)
	if err != nil {
		return nil, &runError{step: "read grantors", err: err}
	}
	steps = append(steps, grantors...)
	return append(steps, roleStep("drop role", "DROP ROLE IF EXISTS ", ids, "")), nil
}

// dropRoles is steps 5 and 6: under the drop lock, reassign, drop owned,
// drop, in one round trip. A failure after the savepoint keeps the
// NOLOGIN.
func (t *dropTx) dropRoles(ctx context.Context) error {
	steps, err := t.dropSteps(ctx)
	if err != nil {
		return err
	}
	if err := t.takeDropLock(ctx); err != nil {
		return err
	}
	sqls := make([]string, len(steps))
	for i, st := range steps {
		sqls[i] = st.sql
	}
	for _, it := range t.targets {
		it.res.ReassignedTo = t.reassignTo
	}
	results, err := t.tx.Conn().PgConn().Exec(ctx, strings.Join(sqls, "; ")).ReadAll()
	completed := 0
	for _, r := range results {
		if r.Err != nil {
			if err == nil {
				err = r.Err
			}
			break
		}
		completed++
	}
	acted := len(steps)
	if err != nil {
		acted = min(completed+1, len(steps)) // the failing one included
	}
	t.recordActed(steps[firstActing:max(acted, firstActing)])
	if err == nil {
		return nil
	}
	re := &runError{step: steps[acted-1].step, err: err}
	if acted-1 < firstActing {
		return re // no savepoint to return to
	}
	t.keepNologin(ctx, re)
	return re
}

// recordActed adds the statements that took effect to each target's
// result, as they apply to it: a statement naming the whole batch is
// recorded with the role's own name in place of the list, which is what it
// did to that role. (With the batch's hundred names in every statement of
// every result, the evidence of a batch grew with the square of its size.)
func (t *dropTx) recordActed(acted []txStep) {
	for _, st := range acted {
		for _, it := range t.targets {
			if st.only != nil && !st.only[it.name] {
				continue // a statement for other roles of the batch
			}
			it.res.Statements = append(it.res.Statements, st.forRole(it.name))
		}
	}
}

// keepNologin rolls back to the savepoint after a failed step 5 or 6 and
// commits the NOLOGIN and the terminations, even when ctx has ended.
func (t *dropTx) keepNologin(ctx context.Context, re *runError) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := t.tx.Exec(cctx, rollbackSavepointSQL); err != nil {
		return
	}
	if err := t.tx.Commit(cctx); err != nil {
		return
	}
	t.unlocked()
	t.ended = true
	re.keptNologin = true
	for _, it := range t.targets {
		it.keptNologin = true
		it.mayTerminate = true
	}
}

// commit is step 7. The caller records this transaction's id (the hook)
// before it commits, so a crash between COMMIT and recording the outcome
// can be resolved with txid_status after a restart.
func (t *dropTx) commit(ctx context.Context) error {
	if err := t.beforeCommit(ctx); err != nil {
		return err
	}
	if err := t.d.fault(ctx, StepBeforeCommit, t.targets); err != nil {
		return err
	}
	t.ended = true // a failed COMMIT rolled back: nothing is left to end
	err := t.tx.Commit(ctx)
	t.unlocked()
	if err != nil {
		return &runError{step: "commit", err: err}
	}
	if err := t.d.fault(ctx, StepAfterCommit, t.targets); err != nil {
		return err
	}
	for _, it := range t.targets {
		it.dropped = true
		it.mayTerminate = true
	}
	return nil
}

// beforeCommit hands the transaction id and the targets' command ids to
// the hook, if any.
func (t *dropTx) beforeCommit(ctx context.Context) error {
	if t.hook == nil {
		return nil
	}
	var xid int64
	if err := t.tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		return &runError{step: "txid", err: err}
	}
	ids := make([]string, 0, len(t.targets))
	for _, it := range t.targets {
		ids = append(ids, it.res.CommandID)
	}
	if err := t.hook(ctx, xid, ids); err != nil {
		return &runError{step: "before commit", err: &hookError{err: err}}
	}
	return nil
}
