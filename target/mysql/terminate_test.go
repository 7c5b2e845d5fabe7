package mysql

import (
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// ghostCommand is a terminate_session command for connection id of name,
// as the observer's rule issues it.
func (r *rig) ghostCommand(name string, id int64) schemas.RevocationCommand {
	r.t.Helper()
	obs, err := r.e.Observe(r.ctx())
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := r.command(name)
	cmd.ID, cmd.Action = "term-"+name, schemas.ActionTerminateSession
	cmd.Corroboration.Source = schemas.CorroboratedByDatabase
	cmd.Session = &schemas.SessionRef{PID: int32(id), BackendStart: obs.ServerStart, UserOID: AccountKey(name)}
	return cmd
}

// session opens a session as a new user of its own and returns it with
// its connection id.
func (r *rig) session(label string) (string, *sql.Conn, int64) {
	r.t.Helper()
	name := r.name(label)
	r.createUser(name, "pw-"+label, "%")
	c := r.connectAs(name, "pw-"+label)
	var id int64
	if err := c.QueryRowContext(r.ctx(), `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
		r.t.Fatal(err)
	}
	return name, c, id
}

func (r *rig) alive(id int64) bool {
	r.t.Helper()
	var n int
	if err := r.root.QueryRowContext(r.ctx(), `SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = ?`, id).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n > 0
}

// TestTerminateGhost: a user dropped by a plain DROP USER leaves its
// connection running; the command ends it, and says the server agreed.
func TestTerminateGhost(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name, _, id := r.session("ghost")
	cmd := r.ghostCommand(name, id)
	r.exec(`DROP USER ?@?`, name, "%")
	if !r.alive(id) {
		t.Fatal("DROP USER ended the session: no ghost to test")
	}
	res := r.e.TerminateGhost(r.ctx(), "maria", cmd, testGuard)
	if res.Outcome != schemas.OutcomeTerminated || res.SessionsTerminated != 1 || res.SessionsLeftAfter != 0 ||
		!res.RoleAbsentAfter || len(res.Statements) != 1 || res.Statements[0] != "KILL CONNECTION "+itoa(id) ||
		!strings.Contains(res.Reason, "no account of") {
		t.Fatalf("result = %+v", res)
	}
	if r.alive(id) {
		t.Fatal("the ghost is still in the processlist")
	}
	again := r.e.TerminateGhost(r.ctx(), "maria", cmd, testGuard)
	if again.Outcome != schemas.OutcomeAlreadyAbsent || len(again.Statements) != 0 {
		t.Fatalf("second time = %+v", again)
	}
}

// TestTerminateGhostRefusesALiveAccount: a session whose user has an
// account, on any host, is never killed, whatever the command says.
func TestTerminateGhostRefusesALiveAccount(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name, _, id := r.session("live")
	cmd := r.ghostCommand(name, id)
	res := r.e.TerminateGhost(r.ctx(), "maria", cmd, testGuard)
	if res.Outcome != schemas.OutcomeRefused || res.Guard != GuardAccountExists || len(res.Statements) != 0 || !r.alive(id) {
		t.Fatalf("live account: %+v, alive %v", res, r.alive(id))
	}
	// Another host of the name is enough: the account is not gone.
	r.createUser(name, "pw", "localhost")
	r.exec(`DROP USER ?@?`, name, "%")
	res = r.e.TerminateGhost(r.ctx(), "maria", cmd, testGuard)
	if res.Outcome != schemas.OutcomeRefused || res.Guard != GuardAccountExists || !r.alive(id) {
		t.Fatalf("account left on another host: %+v, alive %v", res, r.alive(id))
	}
}

// TestTerminateGhostChecksTheSession: a command whose connection runs as
// another user, whose key does not name the user, or that was issued
// before the server's start finds no such ghost, and kills nothing.
func TestTerminateGhostChecksTheSession(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name, _, id := r.session("gone")
	other, _, otherID := r.session("other")
	r.exec(`DROP USER ?@?`, name, "%")
	r.exec(`DROP USER ?@?`, other, "%")
	for what, mut := range map[string]func(*schemas.RevocationCommand){
		"another user's connection": func(c *schemas.RevocationCommand) { c.Session.PID = int32(otherID) },
		"a key of another name":     func(c *schemas.RevocationCommand) { c.Session.UserOID = AccountKey(other) },
		"before a restart":          func(c *schemas.RevocationCommand) { c.Session.BackendStart = c.Session.BackendStart.Add(-time.Hour) },
	} {
		cmd := r.ghostCommand(name, id)
		mut(&cmd)
		if res := r.e.TerminateGhost(r.ctx(), "maria", cmd, testGuard); res.Outcome != schemas.OutcomeAlreadyAbsent || len(res.Statements) != 0 {
			t.Errorf("%s: %+v", what, res)
		}
	}
	if !r.alive(id) || !r.alive(otherID) {
		t.Fatal("a session was killed")
	}
}

// TestTerminateGhostGuards: the guards of a drop stop a termination before
// anything runs.
func TestTerminateGhostGuards(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name, _, id := r.session("guard")
	r.exec(`DROP USER ?@?`, name, "%")
	for _, c := range []struct {
		what  string
		mut   func(*schemas.RevocationCommand)
		guard string
	}{
		{"outside the pattern", func(c *schemas.RevocationCommand) { c.DBUser = "app-" + r.suffix }, GuardManagedPattern},
		{"built-in account", func(c *schemas.RevocationCommand) { c.DBUser = "root" }, GuardProtected},
		{"no user", func(c *schemas.RevocationCommand) { c.DBUser = "" }, GuardEmpty},
		{"other target", func(c *schemas.RevocationCommand) { c.Target.SystemIdentifier = "mariadb:other" }, GuardTarget},
		{"other database", func(c *schemas.RevocationCommand) { c.Database = "pg" }, GuardDatabase},
		{"a drop", func(c *schemas.RevocationCommand) { c.Action = schemas.ActionDropRole }, GuardAction},
		{"no session", func(c *schemas.RevocationCommand) { c.Session = nil }, GuardAction},
	} {
		cmd := r.ghostCommand(name, id)
		c.mut(&cmd)
		if res := r.e.TerminateGhost(r.ctx(), "maria", cmd, testGuard); res.Outcome != schemas.OutcomeRefused || res.Guard != c.guard || len(res.Statements) != 0 {
			t.Errorf("%s: %+v", c.what, res)
		}
	}
	if !r.alive(id) {
		t.Fatal("a refused command killed the session")
	}
}

// TestTerminateGhostRefusesOwnAccount: the revoker never ends a session of
// its own account, even one whose account was dropped.
func TestTerminateGhostRefusesOwnAccount(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	own := "v-own-" + r.suffix
	e := r.revokerAs(own, "pw-own", "CREATE USER, CONNECTION ADMIN, PROCESS ON *.*", "SELECT ON mysql.*")
	victim := r.connectAs(own, "pw-own")
	var id int64
	if err := victim.QueryRowContext(r.ctx(), `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	cmd := r.ghostCommand(own, id)
	if res := e.TerminateGhost(r.ctx(), "maria", cmd, testGuard); res.Outcome != schemas.OutcomeRefused || res.Guard != GuardOwnRole || !r.alive(id) {
		t.Fatalf("own account: %+v", res)
	}
}

// TestTerminateRefusesBuiltInAndOwn: Terminate, which has no guard of its
// own beyond the name, never ends the server's own accounts' sessions nor
// the caller's.
func TestTerminateRefusesBuiltInAndOwn(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for _, name := range []string{"root", "mariadb.sys", "mysql.session", ""} {
		if n, err := r.e.Terminate(r.ctx(), name); err == nil || n != 0 {
			t.Errorf("Terminate(%q) = %d, %v; want a refusal", name, n, err)
		}
	}
	own := "v-self-" + r.suffix
	e := r.revokerAs(own, "pw-self", "CONNECTION ADMIN, PROCESS ON *.*", "SELECT ON mysql.*")
	other := r.connectAs(own, "pw-self")
	var id int64
	if err := other.QueryRowContext(r.ctx(), `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Terminate(r.ctx(), own); err == nil || n != 0 || !r.alive(id) {
		t.Fatalf("Terminate(own) = %d, %v, alive %v", n, err, r.alive(id))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
