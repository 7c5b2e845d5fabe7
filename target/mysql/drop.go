package mysql

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
)

// Deadlines of a drop: waiting for another drop of the same user (the
// named lock), the whole revocation, and the checks made after ctx ended.
const (
	lockWaitSeconds = 5
	dropTimeout     = time.Minute
	cleanupTimeout  = 5 * time.Second
)

// revocation is one Drop on its way through its steps:
//
//  1. precheck: the guards that need no server (name, action, corroboration);
//  2. lockName: a server-wide named lock per user, so two revokers (or a
//     redelivery) never interleave on one account;
//  3. read: identity, own account, the hosts of the name and their global
//     grants; the guards that need the server;
//  4. definers: objects whose DEFINER is the user, for the evidence;
//  5. lockAccount: ALTER USER … ACCOUNT LOCK per host (no new session);
//  6. kill: KILL CONNECTION every session of the name;
//  7. revoke: REVOKE ALL PRIVILEGES, GRANT OPTION per host;
//  8. dropUser: DROP USER IF EXISTS every host, in one statement;
//  9. afterCheck: kill what is left, wait for the processlist to empty,
//     and judge from mysql.user and the processlist.
type revocation struct {
	e    *Engine
	conn *sql.Conn
	cmd  schemas.RevocationCommand
	g    engine.Guard
	res  schemas.RevocationResult
	// hosts of the name in mysql.user, read under the named lock.
	hosts []string
	// notes are said in the outcome's reason whatever it is (definers, a
	// REVOKE that failed before the DROP did its work).
	notes []string
}

// Drop revokes cmd's user on the server: lock every host of the name, kill
// its sessions, revoke, drop every host, and verify against mysql.user and
// the processlist. It never returns an error: every path ends in an
// outcome with its reason. A name with no account left is already_absent
// (its leftover sessions are killed first), so a redelivered command
// finds its work done.
func (e *Engine) Drop(ctx context.Context, database string, cmd schemas.RevocationCommand, g engine.Guard) schemas.RevocationResult {
	ctx, cancel := context.WithTimeout(ctx, dropTimeout)
	defer cancel()
	r := &revocation{e: e, cmd: cmd, g: g, res: schemas.RevocationResult{
		CommandID: cmd.ID, Database: database, DBUser: cmd.DBUser, StartedAt: time.Now()}}
	r.run(ctx, database)
	if len(r.notes) > 0 {
		r.res.Reason = strings.TrimPrefix(r.res.Reason+"; "+strings.Join(r.notes, "; "), "; ")
	}
	r.res.FinishedAt = time.Now()
	return r.res
}

func (r *revocation) run(ctx context.Context, database string) {
	if rf := r.precheck(database); rf != nil {
		r.refuse(rf)
		return
	}
	conn, err := r.e.db.Conn(ctx)
	if err != nil {
		r.fail("connect", err)
		return
	}
	defer conn.Close()
	r.conn = conn
	if err := r.lockName(ctx); err != nil {
		r.fail("named lock", err)
		return
	}
	defer r.unlockName(ctx)
	if rf, err := r.read(ctx); err != nil || rf != nil {
		if rf != nil {
			r.refuse(rf)
		} else {
			r.fail("read", err)
		}
		return
	}
	if len(r.hosts) == 0 {
		r.absent(ctx)
		return
	}
	r.definers(ctx)
	for i, step := range []func(context.Context) error{r.lockAccount, r.kill, r.revoke, r.dropUser} {
		if err := step(ctx); err != nil {
			r.res.Outcome, r.res.Reason = schemas.OutcomeFailed, err.Error()
			r.setSQLState(err)
			if i > 0 {
				// No transaction spans the steps: the lock stays, and no
				// new session of the user can start.
				r.res.Reason += "; the account was left locked (ACCOUNT LOCK)"
			}
			r.check(ctx)
			return
		}
	}
	r.check(ctx)
	r.judge()
}

// precheck is step 1.
func (r *revocation) precheck(database string) *refusal {
	if r.cmd.Action != "" && r.cmd.Action != schemas.ActionDropRole {
		return refuse(GuardAction, "action %q is not carried out on MySQL targets (only drop_role)", r.cmd.Action)
	}
	if r.cmd.Database != database {
		return refuse(GuardDatabase, "command is for target %q, not %q", r.cmd.Database, database)
	}
	if rf := checkName(r.g, r.cmd.DBUser); rf != nil {
		return rf
	}
	return checkCorroboration(r.cmd)
}

func (r *revocation) refuse(rf *refusal) {
	r.res.Outcome, r.res.Guard, r.res.Reason = schemas.OutcomeRefused, rf.guard, rf.reason
}

func (r *revocation) fail(step string, err error) {
	r.res.Outcome, r.res.Reason = schemas.OutcomeFailed, step+": "+err.Error()
	r.setSQLState(err)
}

func (r *revocation) setSQLState(err error) {
	var me *driver.MySQLError
	if errors.As(err, &me) && me.SQLState != [5]byte{} {
		r.res.SQLState = string(me.SQLState[:])
	}
}

// lockName is step 2. The lock name is a digest: GET_LOCK takes at most 64
// characters, and a user name may be longer.
func (r *revocation) lockName(ctx context.Context) error {
	var got sql.NullInt64
	if err := r.conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, lockKey(r.cmd.DBUser), lockWaitSeconds).Scan(&got); err != nil {
		return err
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("another revocation of %q holds its lock", r.cmd.DBUser)
	}
	return nil
}

func lockKey(user string) string {
	sum := sha256.Sum256([]byte(user))
	return "leaseguard.user:" + hex.EncodeToString(sum[:16])
}

func (r *revocation) unlockName(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, _ = r.conn.ExecContext(cctx, `DO RELEASE_LOCK(?)`, lockKey(r.cmd.DBUser))
}

// read is step 3: the target's identity, the revoker's own account, the
// hosts of the name and their global grants. Nothing has changed yet.
func (r *revocation) read(ctx context.Context) (*refusal, error) {
	id, err := readIdentity(ctx, r.conn)
	if err != nil {
		return nil, err
	}
	if id != r.cmd.Target {
		return refuse(GuardTarget, "the command was issued for server %s, and this target is %s",
			r.cmd.Target.SystemIdentifier, id.SystemIdentifier), nil
	}
	var current, session string
	if err := r.conn.QueryRowContext(ctx, `SELECT CURRENT_USER(), USER()`).Scan(&current, &session); err != nil {
		return nil, err
	}
	if name := r.cmd.DBUser; name == splitAccount(current) || name == splitAccount(session) {
		return refuse(GuardOwnRole, "%q is the revoker's own account", name), nil
	}
	if r.hosts, err = r.readHosts(ctx); err != nil {
		return nil, err
	}
	return r.checkGrants(ctx)
}

func (r *revocation) readHosts(ctx context.Context) ([]string, error) {
	rows, err := r.conn.QueryContext(ctx, `SELECT Host FROM mysql.user WHERE User = ? ORDER BY Host`, r.cmd.DBUser)
	if err != nil {
		return nil, err
	}
	var hosts []string
	err = eachRow(rows, func(rows *sql.Rows) error {
		var h string
		err := rows.Scan(&h)
		hosts = append(hosts, h)
		return err
	})
	return hosts, err
}

// checkGrants refuses a user that holds, on any host, global SUPER or ALL
// PRIVILEGES, directly or through a role it was granted, unless the guard
// allows it.
func (r *revocation) checkGrants(ctx context.Context) (*refusal, error) {
	if r.g.AllowSuper {
		return nil, nil
	}
	for _, h := range r.hosts {
		admin, via, err := r.adminGrant(ctx, grantee{name: r.cmd.DBUser, host: h, account: true}, map[grantee]bool{})
		if err != nil {
			return nil, err
		}
		if admin {
			return refuse(GuardSuperuser, "%s has global SUPER or ALL PRIVILEGES%s", account(r.cmd.DBUser, h), via), nil
		}
	}
	return nil, nil
}

// grantee is an account, or a role (MariaDB's have no host; MySQL 8's do).
type grantee struct {
	name, host string
	account    bool
}

// maxRoleDepth bounds how far roles granted to roles are followed.
const maxRoleDepth = 8

// adminGrant reports whether g holds administrator rights, and via says
// how when it is through a role. A role whose grants cannot be read counts
// as holding them: the guard fails closed.
func (r *revocation) adminGrant(ctx context.Context, g grantee, seen map[grantee]bool) (admin bool, via string, err error) {
	if seen[g] || len(seen) > maxRoleDepth {
		return false, "", nil
	}
	seen[g] = true
	lines, err := r.showGrants(ctx, g)
	if err != nil {
		if g.account {
			return false, "", fmt.Errorf("show grants for %s: %w", account(g.name, g.host), err)
		}
		return true, fmt.Sprintf(" (the grants of its role %q cannot be read: %v)", g.name, err), nil
	}
	for _, line := range lines {
		if superGrant(line) {
			if g.account {
				return true, "", nil
			}
			return true, fmt.Sprintf(" through its role %q", g.name), nil
		}
	}
	for _, line := range lines {
		for _, role := range grantedRoles(line) {
			if admin, via, err := r.adminGrant(ctx, role, seen); err != nil || admin {
				return admin, via, err
			}
		}
	}
	return false, "", nil
}

func (r *revocation) showGrants(ctx context.Context, g grantee) ([]string, error) {
	var rows *sql.Rows
	var err error
	if g.account || g.host != "" {
		rows, err = r.conn.QueryContext(ctx, `SHOW GRANTS FOR ?@?`, g.name, g.host)
	} else {
		rows, err = r.conn.QueryContext(ctx, `SHOW GRANTS FOR ?`, g.name)
	}
	if err != nil {
		return nil, err
	}
	var lines []string
	err = eachRow(rows, func(rows *sql.Rows) error {
		var line string
		err := rows.Scan(&line)
		lines = append(lines, line)
		return err
	})
	return lines, err
}

// roleName matches one quoted role of a role grant: `r` or `r`@`h`.
var roleName = regexp.MustCompile("`((?:[^`]|``)+)`(?:@`((?:[^`]|``)*)`)?")

// grantedRoles returns the roles a SHOW GRANTS line grants ("GRANT `r1`,
// `r2` TO ..."); none for a privilege grant ("GRANT ... ON ... TO ...").
func grantedRoles(line string) []grantee {
	up := strings.ToUpper(line)
	to := strings.Index(up, " TO ")
	if !strings.HasPrefix(up, "GRANT ") || to < 0 || strings.Contains(up[:to], " ON ") {
		return nil
	}
	var out []grantee
	for _, m := range roleName.FindAllStringSubmatch(line[len("GRANT "):to], -1) {
		out = append(out, grantee{name: strings.ReplaceAll(m[1], "``", "`"), host: strings.ReplaceAll(m[2], "``", "`")})
	}
	return out
}

// definersSQL finds the objects whose DEFINER is the name, on any host:
// the part of "user@host" before its last '@' (a user name may hold '@').
const definersSQL = `SELECT kind, sch, obj FROM (` +
	`SELECT 'view' AS kind, TABLE_SCHEMA AS sch, TABLE_NAME AS obj, DEFINER AS d FROM information_schema.VIEWS ` +
	`UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_SCHEMA, ROUTINE_NAME, DEFINER FROM information_schema.ROUTINES ` +
	`UNION ALL SELECT 'trigger', TRIGGER_SCHEMA, TRIGGER_NAME, DEFINER FROM information_schema.TRIGGERS ` +
	`UNION ALL SELECT 'event', EVENT_SCHEMA, EVENT_NAME, DEFINER FROM information_schema.EVENTS) AS o ` +
	`WHERE LEFT(d, CHAR_LENGTH(d) - CHAR_LENGTH(SUBSTRING_INDEX(d, '@', -1)) - 1) = ? ORDER BY kind, sch, obj`

// definers is step 4. Objects are not owned by accounts in MySQL, but a
// view, routine, trigger or event runs as its definer and fails once the
// definer is gone: the evidence names them, and the drop goes on.
func (r *revocation) definers(ctx context.Context) {
	rows, err := r.conn.QueryContext(ctx, definersSQL, r.cmd.DBUser)
	if err != nil {
		r.notes = append(r.notes, "definers not read: "+err.Error())
		return
	}
	var objs []string
	err = eachRow(rows, func(rows *sql.Rows) error {
		var kind, sch, obj string
		err := rows.Scan(&kind, &sch, &obj)
		objs = append(objs, kind+" "+sch+"."+obj)
		return err
	})
	if err != nil {
		r.notes = append(r.notes, "definers not read: "+err.Error())
		return
	}
	r.res.Definers = objs
	if len(objs) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("definer of %s (they fail when run until given another definer)",
			strings.Join(objs, ", ")))
	}
}

// lockAccount is step 5: no new session of any host of the name.
func (r *revocation) lockAccount(ctx context.Context) error {
	for _, h := range r.hosts {
		if err := r.exec(ctx, "ALTER USER "+account(r.cmd.DBUser, h)+" ACCOUNT LOCK",
			`ALTER USER ?@? ACCOUNT LOCK`, r.cmd.DBUser, h); err != nil {
			return fmt.Errorf("lock account: %w", err)
		}
	}
	return nil
}

// kill is step 6.
func (r *revocation) kill(ctx context.Context) error {
	n, stmts, err := killSessions(ctx, r.conn, r.cmd.DBUser)
	r.res.SessionsTerminated += n
	r.res.Statements = append(r.res.Statements, stmts...)
	if err != nil {
		return fmt.Errorf("kill sessions: %w", err)
	}
	return nil
}

// revoke is step 7. A failed REVOKE does not stop the drop (DROP USER
// takes every privilege with the account); the reason says so.
func (r *revocation) revoke(ctx context.Context) error {
	for _, h := range r.hosts {
		if err := r.exec(ctx, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM "+account(r.cmd.DBUser, h),
			`REVOKE ALL PRIVILEGES, GRANT OPTION FROM ?@?`, r.cmd.DBUser, h); err != nil {
			r.notes = append(r.notes, fmt.Sprintf("revoke from %s failed (%v); DROP USER took the privileges", account(r.cmd.DBUser, h), err))
		}
	}
	return nil
}

// dropUser is step 8: every host of the name, in one statement.
func (r *revocation) dropUser(ctx context.Context) error {
	marks := make([]string, len(r.hosts))
	shown := make([]string, len(r.hosts))
	args := make([]any, 0, 2*len(r.hosts))
	for i, h := range r.hosts {
		marks[i], shown[i] = "?@?", account(r.cmd.DBUser, h)
		args = append(args, r.cmd.DBUser, h)
	}
	if err := r.exec(ctx, "DROP USER IF EXISTS "+strings.Join(shown, ", "),
		"DROP USER IF EXISTS "+strings.Join(marks, ", "), args...); err != nil {
		return fmt.Errorf("drop user: %w", err)
	}
	return nil
}

// exec runs query with args (interpolated by the driver) and records shown,
// the statement as it acted, in the result.
func (r *revocation) exec(ctx context.Context, shown, query string, args ...any) error {
	r.res.Statements = append(r.res.Statements, shown)
	_, err := r.conn.ExecContext(ctx, query, args...)
	return err
}

// absent: no account of the name. Sessions may outlive it (Vault's own
// revocation drops the account and leaves them running): they are killed,
// and the outcome is already_absent only if none is left.
func (r *revocation) absent(ctx context.Context) {
	r.check(ctx)
	switch {
	case r.res.Reason != "":
		r.res.Outcome = schemas.OutcomeFailed
	case r.res.SessionsLeftAfter > 0:
		r.res.Outcome = schemas.OutcomeFailed
		r.res.Reason = fmt.Sprintf("no account of %q, and %d session(s) of it left", r.cmd.DBUser, r.res.SessionsLeftAfter)
	default:
		r.res.Outcome = schemas.OutcomeAlreadyAbsent
	}
}

// check is step 9: kill what is left of the name's sessions and wait, up
// to the settle time, for the processlist to let them go; then record
// what mysql.user and the processlist say.
func (r *revocation) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.e.settle+cleanupTimeout)
	defer cancel()
	deadline := time.Now().Add(r.e.settle)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := r.kill(cctx); err != nil && r.res.Reason == "" {
			r.res.Reason = "after the drop: " + err.Error()
		}
		gone, err := verify(cctx, r.conn, r.cmd.DBUser)
		if err != nil {
			r.res.Reason = strings.TrimPrefix(r.res.Reason+"; check after: "+err.Error(), "; ")
			return
		}
		r.res.RoleAbsentAfter, r.res.SessionsLeftAfter = gone.Absent, gone.Sessions
		if gone.Sessions == 0 || time.Now().After(deadline) {
			return
		}
		select {
		case <-cctx.Done():
			return
		case <-tick.C:
		}
	}
}

// judge: dropped only if the check was made, no host of the name is left
// and no session of it.
func (r *revocation) judge() {
	switch {
	case r.res.Reason != "":
		r.res.Outcome = schemas.OutcomeFailed
	case !r.res.RoleAbsentAfter:
		r.res.Outcome, r.res.Reason = schemas.OutcomeFailed, "account still in mysql.user after the drop"
	case r.res.SessionsLeftAfter > 0:
		r.res.Outcome = schemas.OutcomeFailed
		r.res.Reason = fmt.Sprintf("%d session(s) of the user left after the drop", r.res.SessionsLeftAfter)
	default:
		r.res.Outcome = schemas.OutcomeDropped
	}
}

// erUnknownThread: the session ended before KILL reached it.
const erUnknownThread = 1094

// killSessions kills every session of user but the caller's own. It
// returns how many it killed and the statements it ran.
func killSessions(ctx context.Context, conn *sql.Conn, user string) (int, []string, error) {
	rows, err := conn.QueryContext(ctx, `SELECT ID FROM information_schema.PROCESSLIST `+
		`WHERE USER = ? AND ID <> CONNECTION_ID() AND COMMAND <> 'Killed'`, user)
	if err != nil {
		return 0, nil, err
	}
	var ids []int64
	if err := eachRow(rows, func(rows *sql.Rows) error {
		var id int64
		err := rows.Scan(&id)
		ids = append(ids, id)
		return err
	}); err != nil {
		return 0, nil, err
	}
	n := 0
	var stmts []string
	for _, id := range ids {
		stmts = append(stmts, fmt.Sprintf("KILL CONNECTION %d", id))
		_, err := conn.ExecContext(ctx, `KILL CONNECTION ?`, id)
		var me *driver.MySQLError
		switch {
		case err == nil:
			n++
		case errors.As(err, &me) && me.Number == erUnknownThread:
		default:
			return n, stmts, err
		}
	}
	return n, stmts, nil
}

// account renders 'user'@'host' for the record (evidence, reasons), quoted
// as a string literal. Statements never use it: the driver quotes what it
// sends.
func account(user, host string) string { return literal(user) + "@" + literal(host) }

func literal(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`).Replace(s) + "'"
}
