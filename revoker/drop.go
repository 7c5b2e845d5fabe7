package revoker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/schemas"
)

const (
	defaultStatementTimeout = 10 * time.Second
	defaultLockTimeout      = 5 * time.Second
	// defaultSettle bounds the wait, after the commit, for terminated
	// sessions to leave pg_stat_activity.
	defaultSettle = 2 * time.Second
	// cleanupTimeout bounds rollbacks and checks made after ctx ended.
	cleanupTimeout = 5 * time.Second
)

// SQLSTATE undefined_object: "role … does not exist".
const sqlStateUndefinedObject = "42704"

// Reads made under the lock. They are not recorded in Statements, which
// lists what acts on the role.
const (
	// lockSQL takes the per-role advisory locks in one fixed order (by key),
	// so that two batches sharing roles cannot deadlock on them. The key is
	// hashtextextended('leaseguard.role:' || name, 0) for every caller.
	// Advisory locks are scoped to the current database.
	lockSQL = `SELECT pg_advisory_xact_lock(k) FROM (` +
		`SELECT DISTINCT hashtextextended('leaseguard.role:' || n, 0) AS k ` +
		`FROM unnest($1::text[]) AS n ORDER BY k) AS keys`
	// readSQL reads the revoker's own roles, the identity of the database
	// it is in, and pg_roles for each name. A role has members when a role
	// other than the revoker's own is granted it (a non-superuser revoker
	// is made a member of each user it may drop, see docs). Names are passed as text and
	// compared with name's cross-type operator, which uses the index and
	// truncates nothing (names longer than 63 bytes are refused before,
	// too). rolvaliduntil is compared with now(), the transaction's start,
	// on the database's own clock. Whether a role has members is a scalar
	// subquery in the order of pg_auth_members' index, not EXISTS: the
	// planner ran the EXISTS as one hash of every membership in the
	// database, and a subquery without the order as a scan of them per
	// role (a correlated roleid looks common when a few group roles hold
	// most memberships), either way the largest part of the read once a
	// group role is granted to thousands of users.
	readSQL = `SELECT current_user::text, session_user::text, ` +
		`(SELECT system_identifier FROM pg_control_system())::text, ` +
		`(SELECT oid FROM pg_database WHERE datname = current_database()), n.name, r.oid IS NOT NULL, ` +
		`COALESCE(r.oid, 0), COALESCE(r.rolsuper, false), COALESCE(r.rolreplication, false), ` +
		`COALESCE(r.rolbypassrls, false), COALESCE(r.rolcreaterole, false), ` +
		`COALESCE((SELECT true FROM pg_auth_members AS m WHERE m.roleid = r.oid ` +
		`AND m.member NOT IN (SELECT oid FROM pg_roles WHERE rolname IN (current_user, session_user)) ` +
		`ORDER BY m.roleid, m.member LIMIT 1), false), ` +
		`COALESCE(r.rolvaliduntil < now(), false) ` +
		`FROM unnest($1::text[]) AS n(name) LEFT JOIN pg_roles AS r ON r.rolname = n.name`
	// afterSQL is the check the outcome rests on: is a role of that name
	// in pg_roles, and how many sessions are there of the role by its
	// former oid or of a role now carrying the name. A session of a dropped
	// role lives on with usename NULL in pg_stat_activity (seen on
	// PostgreSQL 15), so usesysid is what finds it. The former oid counts
	// unless a role of another name has it (the role was renamed): those
	// sessions are that role's.
	afterSQL = `WITH s AS (SELECT usesysid, count(*) AS n FROM pg_stat_get_activity(NULL) ` +
		`WHERE usesysid IS NOT NULL GROUP BY usesysid), ` +
		`t AS (SELECT t.name, t.oid, r.oid AS now_oid, ` +
		`EXISTS (SELECT 1 FROM pg_roles AS o WHERE o.oid = t.oid AND o.rolname <> t.name) AS renamed ` +
		`FROM unnest($1::text[], $2::oid[]) AS t(name, oid) ` +
		`LEFT JOIN pg_roles AS r ON r.rolname = t.name) ` +
		`SELECT t.name, t.now_oid IS NULL, ` +
		`COALESCE((SELECT sum(s.n) FROM s WHERE (s.usesysid = t.oid AND NOT t.renamed) OR s.usesysid = t.now_oid), 0)::int ` +
		`FROM t`
)

// Statements that act on roles, recorded verbatim in Statements, and the
// transaction control around them.
const (
	terminateOneSQL = `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) ` +
		`FROM pg_stat_activity WHERE usename = $1`
	terminateManySQL = `SELECT usename::text, count(*) FILTER (WHERE pg_terminate_backend(pid)) ` +
		`FROM pg_stat_activity WHERE usename = ANY($1) GROUP BY usename`
	// terminateByOIDSQL ends sessions left after the commit, including
	// those of the dropped role (usename NULL): by its former oid only, never
	// by name, which a new role could carry by then.
	terminateByOIDSQL = `SELECT usesysid, count(*) FILTER (WHERE pg_terminate_backend(pid)) ` +
		`FROM pg_stat_activity WHERE usesysid = ANY($1) GROUP BY usesysid`
	// terminateGhostsByOIDSQL ends the sessions left of a role found
	// absent, by the oid its command was signed for, and only while no role
	// has that oid: a role that took the oid since is never touched.
	terminateGhostsByOIDSQL = `SELECT usesysid, count(*) FILTER (WHERE pg_terminate_backend(pid)) ` +
		`FROM pg_stat_activity WHERE usesysid = ANY($1) ` +
		`AND NOT EXISTS (SELECT 1 FROM pg_roles AS r WHERE r.oid = usesysid) GROUP BY usesysid`
	// dropLockSQL serialises steps 5 and 6 of all revocations in a
	// database: two concurrent DROP OWNED of roles granted on the same
	// table both rewrite its ACL, and one fails with "tuple concurrently
	// updated" (SQLSTATE XX000; seen on PostgreSQL 15). Taken after the role
	// locks, and always last, so it adds no deadlock.
	dropLockSQL          = `SELECT pg_advisory_xact_lock(hashtextextended('leaseguard.drop', 0))`
	savepointSQL         = `SAVEPOINT leaseguard_drop`
	rollbackSavepointSQL = `ROLLBACK TO SAVEPOINT leaseguard_drop`
)

// DropperConfig configures a Dropper. The zero value is usable.
type DropperConfig struct {
	Guard GuardConfig
	// ReassignTo receives the objects the dropped role owns in the target
	// database (REASSIGN OWNED). Default: the current_user of the
	// revoker's connection to the target. It must not match the managed
	// pattern: objects given to a managed role would be dropped with it.
	ReassignTo string
	// StatementTimeout and LockTimeout are set (SET LOCAL) for the drop
	// transaction. Defaults 10s and 5s.
	StatementTimeout time.Duration
	LockTimeout      time.Duration
	// Clock stamps StartedAt and FinishedAt. Default time.Now.
	Clock func() time.Time
	// Faults, if set, is called at each step of a drop (see FaultFunc).
	// Tests only: it stops or holds a drop at a step.
	Faults FaultFunc
}

// Validate reports a configuration the Dropper cannot work with.
func (c DropperConfig) Validate() error {
	if c.StatementTimeout < 0 || c.LockTimeout < 0 {
		return errors.New("dropper: negative timeout")
	}
	g := c.Guard.withDefaults()
	if c.ReassignTo != "" {
		if err := g.CheckName(c.ReassignTo); err == nil {
			return fmt.Errorf("dropper: reassign role %q is itself droppable (matches the managed pattern)", c.ReassignTo)
		}
		if strings.ContainsRune(c.ReassignTo, 0) {
			return errors.New("dropper: reassign role contains NUL")
		}
	}
	return nil
}

// Dropper drops managed roles in a target database. It is safe for
// concurrent use; concurrent drops of one role are serialised in the
// database, across processes.
type Dropper struct {
	guard            GuardConfig
	reassignTo       string
	statementTimeout time.Duration
	lockTimeout      time.Duration
	now              func() time.Time
	settle           time.Duration
	beginSQL         string
	faults           FaultFunc
}

// NewDropper validates cfg and returns a Dropper.
func NewDropper(cfg DropperConfig) (*Dropper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dropper{
		guard:            cfg.Guard.withDefaults(),
		reassignTo:       cfg.ReassignTo,
		statementTimeout: cfg.StatementTimeout,
		lockTimeout:      cfg.LockTimeout,
		now:              cfg.Clock,
		settle:           defaultSettle,
		faults:           cfg.Faults,
	}
	if d.statementTimeout == 0 {
		d.statementTimeout = defaultStatementTimeout
	}
	if d.lockTimeout == 0 {
		d.lockTimeout = defaultLockTimeout
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.beginSQL = fmt.Sprintf("BEGIN; SET LOCAL statement_timeout = %d; SET LOCAL lock_timeout = %d",
		millis(d.statementTimeout), millis(d.lockTimeout))
	return d, nil
}

// millis rounds up: 0 would mean "no timeout" to PostgreSQL.
func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func identList(items []*item) string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = ident(it.name)
	}
	return strings.Join(ids, ", ")
}

type itemState int

const (
	statePending itemState = iota
	stateRefused
	stateAbsent
	stateTarget
)

// item is one command on its way through a drop transaction.
type item struct {
	name  string
	res   schemas.RevocationResult
	state itemState
	// want is what the command says the target and the role were.
	want expectation
	role roleFacts
	// dropped: the transaction that dropped it committed.
	dropped bool
	// mayTerminate: sessions found by oid after the transaction may be
	// terminated (the drop, or the NOLOGIN, was committed).
	mayTerminate bool
	// terminateRan and keptNologin record effects that outlive a failed
	// batch; the per-role fallback reports them.
	terminateRan bool
	keptNologin  bool
	alterSQL     string
	terminateSQL string
	terminated   int
}

func (d *Dropper) newItem(cmd schemas.RevocationCommand, database string) *item {
	return &item{
		name: cmd.DBUser,
		want: expect(cmd),
		res: schemas.RevocationResult{
			CommandID: cmd.ID,
			Database:  database,
			DBUser:    cmd.DBUser,
			StartedAt: d.now(),
		},
	}
}

func (it *item) refuse(err error) {
	it.state = stateRefused
	it.res.Outcome = schemas.OutcomeRefused
	if r, ok := asRefusal(err); ok {
		it.res.Guard, it.res.Reason = r.Guard, r.Reason
	} else {
		it.res.Reason = err.Error()
	}
}

// precheck applies the guards that need no database. It reports whether
// the item was refused.
func (d *Dropper) precheck(it *item, cmd schemas.RevocationCommand, database string) bool {
	if err := d.guard.CheckName(cmd.DBUser); err != nil {
		it.refuse(err)
		return true
	}
	if cmd.Database != database {
		it.refuse(refuse(GuardDatabase, "command is for target %q, not %q", cmd.Database, database))
		return true
	}
	return false
}

// Drop revokes one command's role in the target named database, through
// pool, connected to that target as a role allowed to drop it. database is
// the target name commands carry in Database; a command for another target
// is refused (guard "database"). Drop never returns an error: every path
// ends in an Outcome with its reason.
//
// In one transaction (statement_timeout and lock_timeout set locally),
// under the role's advisory lock: read pg_roles, apply the guards, then
// ALTER ROLE … NOLOGIN, terminate the role's sessions, REASSIGN OWNED,
// DROP OWNED and DROP ROLE. After the commit it checks pg_roles and
// pg_stat_activity (by name and by the role's former oid), terminates
// sessions left over and waits briefly for them to end. The outcome is
// dropped only if the role is absent and no session is left.
//
// Nothing is executed before every guard has passed. If REASSIGN OWNED,
// DROP OWNED or DROP ROLE fails, the transaction rolls back to just after
// the NOLOGIN and commits that: the role is left unable to log in, and the
// outcome is failed.
//
// Statements lists the statements that act on the role, in order, with
// the failing one last; reads, locks, SET LOCAL and savepoints are left
// out.
//
// Drop is DropBatch of one command, without a before-commit hook.
func (d *Dropper) Drop(ctx context.Context, pool *pgxpool.Pool, database string, cmd schemas.RevocationCommand) schemas.RevocationResult {
	return d.DropBatch(ctx, pool, database, []schemas.RevocationCommand{cmd}, nil)[0]
}

// failItem records a failed drop transaction in its result, with the
// checks made afterwards.
func (d *Dropper) failItem(ctx context.Context, pool *pgxpool.Pool, it *item, err error) {
	it.res.Outcome = schemas.OutcomeFailed
	it.res.Reason = err.Error()
	var pgErr *pgconn.PgError
	var he *hookError
	if errors.As(err, &pgErr) && !errors.As(err, &he) {
		it.res.SQLState = pgErr.Code
	}
	var re *runError
	if errors.As(err, &re) && re.keptNologin {
		it.res.Reason += "; the role was left NOLOGIN and its sessions terminated"
	}
	var fe *faultError
	if it.state != stateTarget || errors.As(err, &fe) {
		return // a drop stopped by a fault does nothing more, as after a crash
	}
	if it.res.SQLState == sqlStateUndefinedObject {
		// Dropped by someone else after it passed the guards: its
		// sessions (usename NULL by now) are still ours to end.
		it.mayTerminate = true
	}
	d.afterCheck(ctx, pool, []*item{it})
	if it.res.SQLState == sqlStateUndefinedObject && !it.dropped && it.res.RoleAbsentAfter && it.res.SessionsLeftAfter == 0 {
		it.res.Outcome = schemas.OutcomeAlreadyAbsent
		it.res.Reason = "role dropped by another session during the revocation"
	}
}

// DropBatch revokes many commands in one transaction: the same steps and
// guards as Drop, with one statement per step for all roles (ALTER ROLE is
// one statement per role). Commands refused by a guard, or whose role is
// absent, are left out of the statements and get their own result.
//
// Between REASSIGN OWNED and DROP OWNED it adds one REVOKE ALL … FROM all
// the roles per kind of object (table, sequence, schema) they hold
// privileges on: DROP OWNED rewrites a shared ACL once per role, REVOKE
// once per object, which makes batches several times faster when many
// users are granted on the same tables.
//
// A role named by several commands is dropped once, for the first of them.
// Each later one gets the result it would get if run after the first:
// already_absent if the first was dropped or already absent, otherwise a
// copy of the first's refusal or failure.
//
// If a statement of the batch fails, the batch is rolled back (its NOLOGIN
// kept, as in Drop, when the failure came after it) and every command of
// it is run again alone with Drop, so one bad role does not fail the
// others. Such a result also lists the batch statements that took effect
// for its role (ALTER ROLE if kept, the terminate query), and counts the
// sessions they terminated. If the batch got no connection, or ctx ended,
// every command fails with that error instead.
//
// Drops in one database are serialised (an advisory lock around steps 5
// and 6): call DropBatch rather than many concurrent Drops.
//
// Results are in the order of cmds. Each result lists the statements as
// they apply to its own role: a statement that named the batch's roles is
// recorded with the role's name alone in place of the list.
//
// hook, if not nil, is called inside each drop transaction just before it
// commits (see BeforeCommitFunc).
func (d *Dropper) DropBatch(ctx context.Context, pool *pgxpool.Pool, database string, cmds []schemas.RevocationCommand,
	hook BeforeCommitFunc) []schemas.RevocationResult {
	results, _ := d.dropBatch(ctx, pool, database, cmds, hook)
	return results
}

// dropLockTimes are how long the transactions of a batch waited for the
// target's drop lock (other batches holding it), and then held it.
type dropLockTimes struct{ waited, held time.Duration }

// dropBatch is DropBatch, and also returns its dropLockTimes.
func (d *Dropper) dropBatch(ctx context.Context, pool *pgxpool.Pool, database string, cmds []schemas.RevocationCommand,
	hook BeforeCommitFunc) ([]schemas.RevocationResult, dropLockTimes) {
	items := make([]*item, len(cmds))
	first := make(map[string]int, len(cmds))
	dupOf := make(map[int]int)
	var run []*item
	for i, cmd := range cmds {
		it := d.newItem(cmd, database)
		items[i] = it
		if d.precheck(it, cmd, database) {
			continue
		}
		if j, ok := first[it.name]; ok {
			dupOf[i] = j
			continue
		}
		first[it.name] = i
		run = append(run, it)
	}

	var lock dropLockTimes
	if len(run) > 0 {
		d.runOrFallBack(ctx, pool, run, hook, &lock)
	}

	results := make([]schemas.RevocationResult, len(items))
	for i, it := range items {
		if j, ok := dupOf[i]; ok {
			it.res = duplicateResult(it.res, items[j].res, cmds[j].ID)
		}
		it.res.FinishedAt = d.now()
		results[i] = it.res
	}
	return results, lock
}

// runOrFallBack runs the drop transaction of items and, if it fails, fails
// them or runs each alone.
func (d *Dropper) runOrFallBack(ctx context.Context, pool *pgxpool.Pool, items []*item, hook BeforeCommitFunc, lock *dropLockTimes) {
	err := d.run(ctx, pool, items, hook, lock)
	var re *runError
	var fe *faultError
	switch {
	case err == nil:
	case len(items) == 1 || ctx.Err() != nil || (errors.As(err, &re) && re.step == "begin") || errors.As(err, &fe):
		// Alone already; or no connection, or no time left: running each
		// alone would only repeat the failure once per role. A fault
		// stops the batch where it is.
		for _, it := range items {
			d.failItem(ctx, pool, it, err)
		}
	default:
		d.fallback(ctx, pool, items, hook, lock)
	}
}

func duplicateResult(own, first schemas.RevocationResult, firstID string) schemas.RevocationResult {
	switch first.Outcome {
	case schemas.OutcomeDropped, schemas.OutcomeAlreadyAbsent:
		own.Outcome = schemas.OutcomeAlreadyAbsent
		own.Reason = fmt.Sprintf("same role as command %q earlier in the batch", firstID)
		own.RoleAbsentAfter = first.RoleAbsentAfter
		own.SessionsLeftAfter = first.SessionsLeftAfter
		return own
	default:
		r := first
		r.CommandID = own.CommandID
		r.StartedAt = own.StartedAt
		return r
	}
}

// fallback runs each command of a failed batch alone.
func (d *Dropper) fallback(ctx context.Context, pool *pgxpool.Pool, items []*item, hook BeforeCommitFunc, lock *dropLockTimes) {
	for _, it := range items {
		var stmts []string
		if it.keptNologin {
			stmts = append(stmts, it.alterSQL)
		}
		if it.terminateRan {
			stmts = append(stmts, it.terminateSQL)
		}
		terminated := 0
		if it.terminateRan {
			terminated = it.terminated
		}
		fresh := &item{name: it.name, want: it.want, res: schemas.RevocationResult{
			CommandID:          it.res.CommandID,
			Database:           it.res.Database,
			DBUser:             it.res.DBUser,
			StartedAt:          it.res.StartedAt,
			Statements:         stmts,
			SessionsTerminated: terminated,
		}}
		d.runOrFallBack(ctx, pool, []*item{fresh}, hook, lock)
		*it = *fresh
	}
}

// runError is a statement of the drop transaction that failed.
type runError struct {
	step string
	err  error
	// keptNologin: the NOLOGIN and the terminations were committed.
	keptNologin bool
}

func (e *runError) Error() string { return e.step + ": " + e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// hookError is the before-commit hook's failure: the state store's, not
// the target's. Its SQLSTATE says nothing of the target, so it is not the
// result's: the attempt is retried (the drop was rolled back), whatever
// the state store answered.
type hookError struct{ err error }

func (e *hookError) Error() string { return e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }

// judgeDropped sets the outcome of a drop that committed from the check
// after it: dropped only if the check was made, the role is absent and no
// session of it is left.
func judgeDropped(res *schemas.RevocationResult) {
	switch {
	case res.Reason != "":
		res.Outcome = schemas.OutcomeFailed // the after-check failed
	case !res.RoleAbsentAfter:
		res.Outcome = schemas.OutcomeFailed
		res.Reason = "role still in pg_roles after the drop committed"
	case res.SessionsLeftAfter > 0:
		res.Outcome = schemas.OutcomeFailed
		res.Reason = fmt.Sprintf("%d session(s) of the role left after the drop", res.SessionsLeftAfter)
	default:
		res.Outcome = schemas.OutcomeDropped
	}
}

// judge applies the guards that need the database to items and sorts
// them: to drop, already absent, or refused (their result set).
func (d *Dropper) judge(items []*item, sess sessionFacts, facts map[string]roleFacts, reassignTo string) (targets, absent []*item) {
	for _, it := range items {
		if err := checkTarget(sess, it.want); err != nil {
			it.refuse(err)
			continue
		}
		f, ok := facts[it.name]
		if !ok {
			it.state = stateAbsent
			it.res.Outcome = schemas.OutcomeAlreadyAbsent
			// Sessions can outlive the role (an attempt that died between
			// its COMMIT and its check after it, Vault's own revocation):
			// the check after looks for those of the role the command was
			// signed for, by its oid, and ends them.
			it.role = roleFacts{Name: it.name, OID: it.want.oid}
			it.mayTerminate = true
			absent = append(absent, it)
			continue
		}
		it.role = f
		if err := checkRole(f, sess, reassignTo, it.want, d.guard); err != nil {
			it.refuse(err)
			continue
		}
		it.state = stateTarget
		targets = append(targets, it)
	}
	return targets, absent
}

// queryer is what readRoles and queryCounts need of a pool or transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// txStep is a statement of steps 5 and 6 and what to call it in errors.
// A statement acting on the batch's roles is prefix + the list of roles +
// suffix; forRole gives its text for one role.
type txStep struct {
	step, sql      string
	prefix, suffix string
	perRole        bool
	// only, when set, names the roles the statement acts on (a subset of
	// the batch); the others' results leave it out.
	only map[string]bool
}

// roleStep is a statement naming the batch's roles (ids, quoted and
// comma-separated) between prefix and suffix.
func roleStep(step, prefix, ids, suffix string) txStep {
	return txStep{step: step, sql: prefix + ids + suffix, prefix: prefix, suffix: suffix, perRole: true}
}

// forRole is the statement as it applies to the role name alone.
func (s txStep) forRole(name string) string {
	if !s.perRole {
		return s.sql
	}
	return s.prefix + ident(name) + s.suffix
}

// scanRead reads the rows of readSQL: the revoker's session and the
// roles that exist.
func scanRead(rows pgx.Rows, err error) (sessionFacts, map[string]roleFacts, error) {
	var sess sessionFacts
	if err != nil {
		return sess, nil, err
	}
	facts := make(map[string]roleFacts)
	var f roleFacts
	var exists bool
	_, err = pgx.ForEachRow(rows, []any{&sess.CurrentUser, &sess.SessionUser, &sess.Target.SystemIdentifier,
		&sess.Target.DatabaseOID, &f.Name, &exists, &f.OID, &f.Superuser, &f.Replication, &f.BypassRLS,
		&f.CreateRole, &f.HasMembers, &f.ValidUntilPassed}, func() error {
		if exists {
			facts[f.Name] = f
		}
		return nil
	})
	return sess, facts, err
}

// queryCounts runs a query returning (key, count) rows.
func queryCounts[K comparable](ctx context.Context, q queryer, sql string, arg any) (map[K]int, error) {
	rows, err := q.Query(ctx, sql, arg)
	if err != nil {
		return nil, err
	}
	counts := make(map[K]int)
	var k K
	var n int
	_, err = pgx.ForEachRow(rows, []any{&k, &n}, func() error {
		counts[k] += n
		return nil
	})
	return counts, err
}
