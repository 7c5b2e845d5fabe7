package mysql

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
)

// A user with a live session and three hosts: every host is dropped, the
// session is killed (DROP USER alone leaves it running), and the outcome
// rests on mysql.user and the processlist.
func TestDropKillsSessionsAndEveryHost(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name := r.name("app")
	r.createUser(name, "pw-1", "%", "localhost", "127.0.0.1")
	held := r.connectAs(name, "pw-1")
	if n := r.sessionsOf(name); n != 1 {
		t.Fatalf("before the drop: %d sessions of %s, want 1", n, name)
	}

	res := r.e.Drop(r.ctx(), "maria", r.command(name), testGuard)

	if res.Outcome != schemas.OutcomeDropped {
		t.Fatalf("outcome %s (%s), want dropped", res.Outcome, res.Reason)
	}
	if res.SessionsTerminated != 1 || !res.RoleAbsentAfter || res.SessionsLeftAfter != 0 {
		t.Errorf("terminated %d, absent after %v, left %d; want 1, true, 0", res.SessionsTerminated, res.RoleAbsentAfter, res.SessionsLeftAfter)
	}
	if h := r.hosts(name); len(h) != 0 {
		t.Errorf("hosts left in mysql.user: %v", h)
	}
	if n := r.sessionsOf(name); n != 0 {
		t.Errorf("%d sessions of %s left", n, name)
	}
	if _, err := held.ExecContext(r.ctx(), `SELECT 1`); err == nil {
		t.Error("the held session still answers after the drop")
	}
	want := []string{
		"ALTER USER '" + name + "'@'%' ACCOUNT LOCK",
		"ALTER USER '" + name + "'@'127.0.0.1' ACCOUNT LOCK",
		"ALTER USER '" + name + "'@'localhost' ACCOUNT LOCK",
	}
	if len(res.Statements) < 6 || !slices.Equal(res.Statements[:3], want) || !strings.HasPrefix(res.Statements[3], "KILL CONNECTION ") {
		t.Fatalf("statements %q", res.Statements)
	}
	drop := "DROP USER IF EXISTS '" + name + "'@'%', '" + name + "'@'127.0.0.1', '" + name + "'@'localhost'"
	if !slices.Contains(res.Statements, drop) {
		t.Errorf("no %q in %q", drop, res.Statements)
	}
}

// A redelivered command finds its work done: already_absent, nothing run
// but the check.
func TestDropTwiceIsAlreadyAbsent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name := r.name("twice")
	r.createUser(name, "pw", "%")
	cmd := r.command(name)
	if res := r.e.Drop(r.ctx(), "maria", cmd, testGuard); res.Outcome != schemas.OutcomeDropped {
		t.Fatalf("first drop: %s (%s)", res.Outcome, res.Reason)
	}
	res := r.e.Drop(r.ctx(), "maria", cmd, testGuard)
	if res.Outcome != schemas.OutcomeAlreadyAbsent || !res.RoleAbsentAfter || len(res.Statements) != 0 {
		t.Fatalf("second drop: %s (%s), absent %v, statements %q; want already_absent, none", res.Outcome, res.Reason,
			res.RoleAbsentAfter, res.Statements)
	}
}

// Vault's own revocation drops the account and leaves its session running
// (seen on MariaDB 10.11): the command then finds the account absent, and
// still kills the ghost session.
func TestDropOfAbsentUserKillsItsGhostSession(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name := r.name("ghost")
	r.createUser(name, "pw", "%")
	held := r.connectAs(name, "pw")
	r.exec(`DROP USER ?@?`, name, "%")
	if n := r.sessionsOf(name); n != 1 {
		t.Fatalf("after DROP USER alone: %d sessions, want the 1 left running", n)
	}

	res := r.e.Drop(r.ctx(), "maria", r.command(name), testGuard)

	if res.Outcome != schemas.OutcomeAlreadyAbsent || res.SessionsTerminated != 1 || res.SessionsLeftAfter != 0 {
		t.Fatalf("outcome %s (%s), terminated %d, left %d; want already_absent, 1, 0", res.Outcome, res.Reason,
			res.SessionsTerminated, res.SessionsLeftAfter)
	}
	if _, err := held.ExecContext(r.ctx(), `SELECT 1`); err == nil {
		t.Error("the ghost session still answers")
	}
}

// Views, routines, triggers and events run as their definer: the drop
// names them in its reason, and goes on.
func TestDropReportsDefiners(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name := r.name("def")
	r.createUser(name, "pw", "%")
	db := r.database()
	r.exec("CREATE TABLE `" + db + "`.t (x int)")
	r.exec("CREATE DEFINER = ?@? VIEW `"+db+"`.v AS SELECT x FROM `"+db+"`.t", name, "%")
	r.exec("CREATE DEFINER = ?@? PROCEDURE `"+db+"`.p() SELECT 1", name, "%")
	r.exec("CREATE DEFINER = ?@? TRIGGER `"+db+"`.trg BEFORE INSERT ON `"+db+"`.t FOR EACH ROW SET NEW.x = 1", name, "%")
	r.exec("CREATE DEFINER = ?@? EVENT `"+db+"`.ev ON SCHEDULE EVERY 1 DAY DISABLE DO SELECT 1", name, "%")

	res := r.e.Drop(r.ctx(), "maria", r.command(name), testGuard)

	if res.Outcome != schemas.OutcomeDropped {
		t.Fatalf("outcome %s (%s), want dropped", res.Outcome, res.Reason)
	}
	want := []string{"event " + db + ".ev", "procedure " + db + ".p", "trigger " + db + ".trg", "view " + db + ".v"}
	if !slices.Equal(res.Definers, want) {
		t.Errorf("definers %q, want %q", res.Definers, want)
	}
	for _, obj := range want {
		if !strings.Contains(res.Reason, obj) {
			t.Errorf("reason %q does not name %s", res.Reason, obj)
		}
	}
}

// Every guard refuses before anything is run, and the account stays.
func TestDropGuardsRefuse(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	super := r.name("super")
	r.createUser(super, "pw", "%")
	r.exec(`GRANT SUPER ON *.* TO ?@?`, super, "%")
	all := r.name("all")
	r.createUser(all, "pw", "localhost")
	r.exec(`GRANT ALL PRIVILEGES ON *.* TO ?@?`, all, "localhost")
	outside := "app-" + r.suffix
	r.users = append(r.users, outside)
	r.createUser(outside, "pw", "%")
	uncorroborated := r.name("pgvu")
	r.createUser(uncorroborated, "pw", "%")
	protected := r.name("keep")
	r.createUser(protected, "pw", "%")
	// Administrator rights that come through a role: SHOW GRANTS names
	// only the role.
	viaRole := r.name("viarole")
	r.createUser(viaRole, "pw", "%")
	adminRole := "lgadm_" + r.suffix
	r.exec("CREATE ROLE " + "`" + adminRole + "`")
	t.Cleanup(func() { r.exec("DROP ROLE IF EXISTS " + "`" + adminRole + "`") })
	r.exec(`GRANT SUPER ON *.* TO ` + "`" + adminRole + "`")
	r.exec(`GRANT `+"`"+adminRole+"`"+` TO ?@?`, viaRole, "%")

	// The server's own accounts are asked of through a revoker that cannot
	// drop anyone (no CREATE USER): were the guard broken, the drop would
	// fail on the server instead of removing them (mariadb.sys defines
	// mysql.user; without it the server's user table cannot be read).
	powerless := r.revokerAs("lgro-"+r.suffix, "ro-pw", "PROCESS ON *.*", "SELECT ON mysql.*")
	everything := engine.Guard{ManagedPattern: regexp.MustCompile(`.*`)}
	cases := []struct {
		name, user, guard string
		g                 engine.Guard
		edit              func(*schemas.RevocationCommand)
		e                 *Engine
	}{
		{"root", "root", GuardProtected, everything, nil, powerless},
		{"mariadb.sys", "mariadb.sys", GuardProtected, everything, nil, powerless},
		{"mysql", "mysql", GuardProtected, everything, nil, powerless},
		{"mysql.sys", "mysql.sys", GuardProtected, everything, nil, powerless},
		{"pattern", outside, GuardManagedPattern, testGuard, nil, nil},
		{"protected", protected, GuardProtected, engine.Guard{ManagedPattern: testGuard.ManagedPattern, Protected: []string{protected}}, nil, nil},
		{"super", super, GuardSuperuser, testGuard, nil, nil},
		{"all privileges", all, GuardSuperuser, testGuard, nil, nil},
		{"super through a role", viaRole, GuardSuperuser, testGuard, nil, nil},
		{"pg corroboration", uncorroborated, GuardCorroboration, testGuard, func(c *schemas.RevocationCommand) {
			c.Corroboration.Source = schemas.CorroboratedByValidUntil
		}, nil},
		{"other server", uncorroborated, GuardTarget, testGuard, func(c *schemas.RevocationCommand) {
			c.Target.SystemIdentifier = "mariadb:another"
		}, nil},
		{"other target", uncorroborated, GuardDatabase, testGuard, func(c *schemas.RevocationCommand) { c.Database = "other" }, nil},
		{"terminate", uncorroborated, GuardAction, testGuard, func(c *schemas.RevocationCommand) {
			c.Action = schemas.ActionTerminateSession
		}, nil},
		{"empty", "", GuardEmpty, testGuard, nil, nil},
		{"too long", "v-" + strings.Repeat("x", 127), GuardInvalidName, testGuard, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := r.hosts(tc.user)
			cmd := r.command(tc.user)
			if tc.edit != nil {
				tc.edit(&cmd)
			}
			e := r.e
			if tc.e != nil {
				e = tc.e
			}
			res := e.Drop(r.ctx(), "maria", cmd, tc.g)
			if res.Outcome != schemas.OutcomeRefused || res.Guard != tc.guard {
				t.Fatalf("outcome %s guard %q (%s); want refused by %s", res.Outcome, res.Guard, res.Reason, tc.guard)
			}
			if len(res.Statements) != 0 {
				t.Errorf("statements run: %q", res.Statements)
			}
			if after := r.hosts(tc.user); !slices.Equal(before, after) {
				t.Errorf("hosts %v became %v", before, after)
			}
		})
	}
}

// AllowSuper lets an account with SUPER go.
func TestDropAllowSuper(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	super := r.name("super")
	r.createUser(super, "pw", "%")
	r.exec(`GRANT SUPER ON *.* TO ?@?`, super, "%")
	g := testGuard
	g.AllowSuper = true
	if res := r.e.Drop(r.ctx(), "maria", r.command(super), g); res.Outcome != schemas.OutcomeDropped {
		t.Fatalf("outcome %s (%s), want dropped", res.Outcome, res.Reason)
	}
}

// Two revokers carrying out the same command at once (a redelivery racing
// the first delivery): the named lock orders them; one drops, the other
// finds the user gone.
func TestConcurrentDropsOfOneUser(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name := r.name("race")
	r.createUser(name, "pw", "%", "localhost")
	r.connectAs(name, "pw")
	other, err := Open(testURL(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	cmd := r.command(name)
	results := make(chan schemas.RevocationResult, 2)
	for _, e := range []*Engine{r.e, other} {
		go func() { results <- e.Drop(r.ctx(), "maria", cmd, testGuard) }()
	}
	got := []schemas.Outcome{(<-results).Outcome, (<-results).Outcome}
	slices.Sort(got)
	if !slices.Equal(got, []schemas.Outcome{schemas.OutcomeAlreadyAbsent, schemas.OutcomeDropped}) {
		t.Fatalf("outcomes %v, want one dropped and one already_absent", got)
	}
	if h := r.hosts(name); len(h) != 0 {
		t.Errorf("hosts left: %v", h)
	}
}
