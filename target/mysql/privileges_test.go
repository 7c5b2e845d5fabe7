package mysql

import (
	"net/url"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/schemas"
)

func urlUser(name, pw string) string { return url.UserPassword(name, pw).String() }

// revokerGrants are the privileges a revoker that is not root needs on
// MariaDB 10.11 (docs/mysql.md): CREATE USER (ALTER USER … ACCOUNT LOCK,
// REVOKE ALL … FROM, DROP USER), CONNECTION ADMIN (KILL another account's
// connection), PROCESS (see them in the processlist), and SELECT on the
// mysql schema (mysql.user and SHOW GRANTS FOR another account).
var revokerGrants = []string{"CREATE USER, CONNECTION ADMIN, PROCESS ON *.*", "SELECT ON mysql.*"}

// With exactly those grants the revoker drops a user with a live session
// on two hosts.
func TestDropWithTheDocumentedGrantsOnly(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rev := r.revokerAs("lgrev-"+r.suffix, "rev-pw", revokerGrants...)
	name := r.name("np")
	r.createUser(name, "pw", "%", "127.0.0.1")
	held := r.connectAs(name, "pw")

	res := rev.Drop(r.ctx(), "maria", r.command(name), testGuard)

	if res.Outcome != schemas.OutcomeDropped || res.SessionsTerminated != 1 {
		t.Fatalf("outcome %s (%s), terminated %d; want dropped, 1", res.Outcome, res.Reason, res.SessionsTerminated)
	}
	if h := r.hosts(name); len(h) != 0 {
		t.Errorf("hosts left: %v", h)
	}
	if _, err := held.ExecContext(r.ctx(), `SELECT 1`); err == nil {
		t.Error("the held session still answers")
	}
}

// Without CONNECTION ADMIN the session cannot be killed: the drop fails
// (the account was locked first), and says so.
func TestDropWithoutConnectionAdminFails(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rev := r.revokerAs("lgrev-"+r.suffix, "rev-pw", "CREATE USER, PROCESS ON *.*", "SELECT ON mysql.*")
	name := r.name("nk")
	r.createUser(name, "pw", "%")
	r.connectAs(name, "pw")

	res := rev.Drop(r.ctx(), "maria", r.command(name), testGuard)

	if res.Outcome != schemas.OutcomeFailed || res.SQLState == "" || !strings.Contains(res.Reason, "left locked") {
		t.Fatalf("outcome %s sqlstate %q (%s); want failed with the server's SQLSTATE, the account left locked", res.Outcome, res.SQLState, res.Reason)
	}
	if h := r.hosts(name); len(h) != 1 {
		t.Errorf("hosts %v; the account must stay (locked) when its session cannot be killed", h)
	}
}

// The revoker never drops its own account, even when its name matches the
// managed pattern.
func TestDropRefusesOwnAccount(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	self := "v-rev-" + r.suffix
	rev := r.revokerAs(self, "rev-pw", revokerGrants...)

	res := rev.Drop(r.ctx(), "maria", r.command(self), testGuard)

	if res.Outcome != schemas.OutcomeRefused || res.Guard != GuardOwnRole || len(res.Statements) != 0 {
		t.Fatalf("outcome %s guard %q (%s) statements %q; want refused by own_role", res.Outcome, res.Guard, res.Reason, res.Statements)
	}
	if h := r.hosts(self); len(h) != 3 {
		t.Errorf("hosts %v, want the 3 it had", h)
	}
}
