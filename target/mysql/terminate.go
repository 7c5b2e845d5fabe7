package mysql

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
)

// GuardAccountExists: a terminate_session command names a session whose
// user still has an account: it is no ghost, whatever the command says.
const GuardAccountExists = "account_exists"

// ghostCheckSQL asks, in one statement, whether any host of the name is in
// mysql.user and whether the connection still runs as the name.
const ghostCheckSQL = `SELECT (SELECT count(*) FROM mysql.user WHERE User = ?), ` +
	`(SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = ? AND USER = ? AND ID <> CONNECTION_ID())`

// ghostLeftSQL: is the connection still in the processlist?
const ghostLeftSQL = `SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = ?`

// termination is one TerminateGhost on its way.
type termination struct {
	e    *Engine
	conn *sql.Conn
	cmd  schemas.RevocationCommand
	res  schemas.RevocationResult
}

// TerminateGhost ends the ghost session a terminate_session command names:
// a connection whose user has no account left (DROP USER leaves its
// sessions running). Just before it acts, under the user's named lock (a
// drop of the same name waits), the server must agree: it is the server
// the command was signed for, it has run since the session's start (the
// command's BackendStart is the server's start, see Observation), no host
// of the name is in mysql.user, and the connection id still runs as that
// name. Then KILL CONNECTION, and a wait for the processlist to let it go.
// The guards of a drop apply to the name (built-in accounts, the managed
// pattern, protected names, the revoker's own account). It never returns
// an error: every path ends in an outcome with its reason.
func (e *Engine) TerminateGhost(ctx context.Context, database string, cmd schemas.RevocationCommand, g engine.Guard) schemas.RevocationResult {
	ctx, cancel := context.WithTimeout(ctx, dropTimeout)
	defer cancel()
	t := &termination{e: e, cmd: cmd, res: schemas.RevocationResult{
		CommandID: cmd.ID, Database: database, DBUser: cmd.DBUser, StartedAt: time.Now()}}
	t.run(ctx, database, g)
	t.res.FinishedAt = time.Now()
	return t.res
}

func (t *termination) run(ctx context.Context, database string, g engine.Guard) {
	if rf := t.precheck(database, g); rf != nil {
		t.refuse(rf)
		return
	}
	conn, err := t.e.db.Conn(ctx)
	if err != nil {
		t.fail("connect", err)
		return
	}
	defer conn.Close()
	t.conn = conn
	r := &revocation{e: t.e, conn: conn, cmd: t.cmd}
	if err := r.lockName(ctx); err != nil {
		t.fail("named lock", err)
		return
	}
	defer r.unlockName(ctx)
	rf, gone, err := t.agree(ctx)
	switch {
	case err != nil:
		t.fail("read", err)
	case rf != nil:
		t.refuse(rf)
	case gone != "":
		t.res.Outcome, t.res.Reason, t.res.RoleAbsentAfter = schemas.OutcomeAlreadyAbsent, gone, true
	default:
		t.kill(ctx)
	}
}

// precheck: the guards that need no server.
func (t *termination) precheck(database string, g engine.Guard) *refusal {
	switch {
	case t.cmd.Action != schemas.ActionTerminateSession:
		return refuse(GuardAction, "action %q is not %s", t.cmd.Action, schemas.ActionTerminateSession)
	case t.cmd.Database != database:
		return refuse(GuardDatabase, "command is for target %q, not %q", t.cmd.Database, database)
	case t.cmd.Session == nil || t.cmd.Session.PID <= 0:
		return refuse(GuardAction, "a terminate_session command must name a session")
	}
	return checkName(g, t.cmd.DBUser)
}

// agree asks the server, under the name's lock, whether the session is
// still the ghost the command names. It returns a refusal, or why there is
// no such ghost any more, or neither: the server agrees.
func (t *termination) agree(ctx context.Context) (*refusal, string, error) {
	id, err := readIdentity(ctx, t.conn)
	if err != nil {
		return nil, "", err
	}
	if id != t.cmd.Target {
		return refuse(GuardTarget, "the command was issued for server %s, and this target is %s",
			t.cmd.Target.SystemIdentifier, id.SystemIdentifier), "", nil
	}
	if rf, err := ownAccount(ctx, t.conn, t.cmd.DBUser); err != nil || rf != nil {
		return rf, "", err
	}
	start, err := t.e.serverStart(ctx)
	if err != nil {
		return nil, "", err
	}
	s := t.cmd.Session
	if !start.Equal(s.BackendStart.UTC().Truncate(time.Second)) || s.UserOID != AccountKey(t.cmd.DBUser) {
		return nil, "no such ghost session: the server restarted since (it started " + start.Format(time.RFC3339) +
			"), or the command's session does not name the user", nil
	}
	var hosts, running int
	if err := t.conn.QueryRowContext(ctx, ghostCheckSQL, t.cmd.DBUser, s.PID, t.cmd.DBUser).Scan(&hosts, &running); err != nil {
		return nil, "", err
	}
	if hosts > 0 {
		return refuse(GuardAccountExists, "the target disagrees: %q has %d account(s) in mysql.user, so connection %d is no ghost",
			t.cmd.DBUser, hosts, s.PID), "", nil
	}
	if running == 0 {
		return nil, fmt.Sprintf("no such ghost session: connection %d has ended, or no longer runs as %q", s.PID, t.cmd.DBUser), nil
	}
	return nil, "", nil
}

// ownAccount refuses the revoker's own account.
func ownAccount(ctx context.Context, q rowQuerier, name string) (*refusal, error) {
	var current, session string
	if err := q.QueryRowContext(ctx, `SELECT CURRENT_USER(), USER()`).Scan(&current, &session); err != nil {
		return nil, err
	}
	if name == splitAccount(current) || name == splitAccount(session) {
		return refuse(GuardOwnRole, "%q is the revoker's own account", name), nil
	}
	return nil, nil
}

// kill ends the connection (its id is never reused while the server
// runs, so the id checked is the session killed) and waits for it to leave
// the processlist.
func (t *termination) kill(ctx context.Context) {
	pid := t.cmd.Session.PID
	t.res.RoleAbsentAfter = true
	t.res.Statements = []string{fmt.Sprintf("KILL CONNECTION %d", pid)}
	_, err := t.conn.ExecContext(ctx, `KILL CONNECTION ?`, pid)
	var me *driver.MySQLError
	switch {
	case errors.As(err, &me) && me.Number == erUnknownThread:
		t.res.Statements, t.res.Outcome = nil, schemas.OutcomeAlreadyAbsent
		t.res.Reason = fmt.Sprintf("no such ghost session: connection %d ended before KILL reached it", pid)
		return
	case err != nil:
		t.fail("kill connection", err)
		return
	}
	t.res.SessionsTerminated = 1
	left, err := t.settle(ctx, pid)
	switch {
	case err != nil:
		t.fail("check after", err)
	case left:
		t.res.Outcome, t.res.SessionsLeftAfter = schemas.OutcomeFailed, 1
		t.res.Reason = "the connection was killed and is still in the processlist"
	default:
		t.res.Outcome = schemas.OutcomeTerminated
		t.res.Reason = fmt.Sprintf("the target agreed just before: no account of %q in mysql.user on any host, "+
			"and connection %d still ran as it", t.cmd.DBUser, pid)
	}
}

// settle waits, up to the engine's settle time, for the connection to
// leave the processlist, and says whether it is still there.
func (t *termination) settle(ctx context.Context, pid int32) (bool, error) {
	deadline := time.Now().Add(t.e.settle)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		var n int
		if err := t.conn.QueryRowContext(ctx, ghostLeftSQL, pid).Scan(&n); err != nil {
			return true, err
		}
		if n == 0 || time.Now().After(deadline) {
			return n > 0, nil
		}
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-tick.C:
		}
	}
}

func (t *termination) refuse(rf *refusal) {
	t.res.Outcome, t.res.Guard, t.res.Reason = schemas.OutcomeRefused, rf.guard, rf.reason
}

func (t *termination) fail(step string, err error) {
	t.res.Outcome, t.res.Reason = schemas.OutcomeFailed, step+": "+err.Error()
	var me *driver.MySQLError
	if errors.As(err, &me) && me.SQLState != [5]byte{} {
		t.res.SQLState = string(me.SQLState[:])
	}
}

// AccountKey is the observer's key of a MySQL account name, standing in
// for PostgreSQL's role oid (MySQL has none): the first 32 bits of a
// SHA-256 of the name, never 0. It is stable across passes and restarts,
// so a ghost's former user is known by its key; unlike an oid it does not
// change when the account is dropped and created again (MySQL keeps
// nothing that would tell the two apart), and two names may share a key
// (the observer refuses a pass that reads two such names).
func AccountKey(name string) uint32 {
	sum := sha256.Sum256([]byte("mysql-account\x00" + name))
	k := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
	if k == 0 {
		k = 1
	}
	return k
}

// checkTerminateName is what Terminate refuses whatever the managed
// pattern: no name, a name MySQL would not accept, the server's own
// accounts.
func checkTerminateName(name string) error {
	if rf := checkName(engine.Guard{ManagedPattern: anyName}, name); rf != nil {
		return rf
	}
	return nil
}

var anyName = regexp.MustCompile(``)
