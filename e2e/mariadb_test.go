//go:build e2e

package e2e

import (
	"context"
	"database/sql"
	"os"
	"regexp"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// mariaURL is the local MariaDB, root without a password from loopback.
func mariaURL() string {
	if u := os.Getenv("TEST_MYSQL_URL"); u != "" {
		return u
	}
	return "mysql://root@127.0.0.1:3306/"
}

// mariaRig is a Vault whose database mount issues MariaDB users with the
// built-in mysql-database-plugin, and the MySQL engine leaseguard revokes
// through.
type mariaRig struct {
	vault  *vaultServer
	mount  string
	root   *sql.DB
	e      *mysql.Engine
	guard  engine.Guard
	issued []string
}

// TestVaultMariaDB: Vault 1.21's mysql plugin issues a user on the local
// MariaDB; a client holds a session; the lease expires and Vault's own
// revocation drops the account but leaves the session running (asserted:
// it still answers). The revocation kills it. Then the same with a
// revocation statement that fails: Vault keeps the lease past its expiry,
// the account and its session stay, and the revocation (corroborated by
// Vault's lookup) drops both.
func TestVaultMariaDB(t *testing.T) {
	vaultBin := os.Getenv("E2E_VAULT_BIN")
	if vaultBin == "" {
		t.Fatal("E2E_VAULT_BIN must name the Vault binary (make e2e sets it)")
	}
	r := setupMaria(t, vaultBin)
	t.Run("expired lease leaves a ghost session", r.scenarioGhost)
	t.Run("failed Vault revocation", r.scenarioStuck)
}

func setupMaria(t *testing.T, vaultBin string) *mariaRig {
	t.Helper()
	cfg, err := mysql.ParseURL(mariaURL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &mariaRig{mount: "lgmy" + suffix, root: sql.OpenDB(conn),
		guard: engine.Guard{ManagedPattern: regexp.MustCompile("^v-my" + suffix + "-")}}
	t.Cleanup(func() { _ = r.root.Close() })
	if r.e, err = mysql.Open(mariaURL(), 2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.e.Close)
	t.Cleanup(func() {
		for _, u := range r.issued {
			if _, err := r.root.Exec(`DROP USER IF EXISTS ?@'%'`, u); err != nil {
				t.Errorf("cleanup %s: %v", u, err)
			}
		}
	})
	r.vault = startVault(t, vaultBin, t.TempDir())
	v := r.vault
	v.must(t, "POST", "sys/mounts/"+r.mount, map[string]any{"type": "database"})
	v.must(t, "POST", r.mount+"/config/maria", map[string]any{
		"plugin_name":       "mysql-database-plugin",
		"connection_url":    "root@tcp(" + cfg.Addr + ")/",
		"allowed_roles":     "*",
		"verify_connection": true,
		"username_template": "v-my" + suffix + `-{{random 8}}`,
	})
	create := []string{`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';`, `GRANT SELECT ON *.* TO '{{name}}'@'%';`}
	v.must(t, "POST", r.mount+"/roles/app", map[string]any{
		"db_name": "maria", "creation_statements": create, "default_ttl": "3s", "max_ttl": "3s"})
	v.must(t, "POST", r.mount+"/roles/stuck", map[string]any{
		"db_name": "maria", "creation_statements": create, "default_ttl": "3s", "max_ttl": "3s",
		"revocation_statements": []string{`SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'e2e: this revocation always fails';`}})
	t.Cleanup(func() {
		// Vault would retry the failing revocation until the end of the run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = v.call(ctx, "PUT", "sys/leases/revoke-force/"+r.mount, nil)
	})
	return r
}

// issue has Vault issue a user of role and opens a session as it.
func (r *mariaRig) issue(t *testing.T, role string) (creds, *sql.Conn) {
	t.Helper()
	c := r.vault.issue(t, r.mount, role)
	r.issued = append(r.issued, c.username)
	cfg, err := mysql.ParseURL(mariaURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Passwd = c.username, c.password
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	held, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("connect as %s: %v", c.username, err)
	}
	t.Cleanup(func() { _ = held.Close() })
	if err := held.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	return c, held
}

// state is what MariaDB shows of a user: its hosts and its sessions.
func (r *mariaRig) state(t *testing.T, user string) (hosts, sessions int) {
	t.Helper()
	err := r.root.QueryRow(`SELECT (SELECT count(*) FROM mysql.user WHERE User = ?), `+
		`(SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ?)`, user, user).Scan(&hosts, &sessions)
	if err != nil {
		t.Fatal(err)
	}
	return hosts, sessions
}

// drop is the revocation, on a command corroborated by Vault's lookup.
func (r *mariaRig) drop(t *testing.T, c creds, detail string) schemas.RevocationResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := r.e.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmd := schemas.RevocationCommand{ID: "e2e-" + c.username, Action: schemas.ActionDropRole, Database: "maria",
		Target: id, DBUser: c.username, LeaseID: c.leaseID,
		Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByVaultLookup, CheckedAt: time.Now().UTC(), Detail: detail}}
	return r.e.Drop(ctx, "maria", cmd, r.guard)
}

func answers(held *sql.Conn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := held.ExecContext(ctx, `SELECT 1`)
	return err == nil
}

func (r *mariaRig) scenarioGhost(t *testing.T) {
	c, held := r.issue(t, "app")
	if h, s := r.state(t, c.username); h != 1 || s != 1 {
		t.Fatalf("after issue: %d hosts, %d sessions of %s; want 1, 1", h, s, c.username)
	}
	poll(t, "Vault to revoke the expired lease", 60*time.Second, func() (bool, string) {
		return !r.vault.leaseExists(t, c.leaseID), "lease still in Vault"
	})
	poll(t, "Vault's revocation to drop the account", 30*time.Second, func() (bool, string) {
		h, _ := r.state(t, c.username)
		return h == 0, "account still in mysql.user"
	})
	if _, s := r.state(t, c.username); s != 1 || !answers(held) {
		t.Fatalf("after Vault's revocation: %d sessions, answers %v; want the session left running", s, answers(held))
	}

	res := r.drop(t, c, "Vault no longer holds the lease")

	if res.Outcome != schemas.OutcomeAlreadyAbsent || res.SessionsTerminated != 1 || res.SessionsLeftAfter != 0 {
		t.Fatalf("revocation %+v; want already_absent with the ghost session killed", res)
	}
	if answers(held) {
		t.Error("the ghost session still answers")
	}
}

func (r *mariaRig) scenarioStuck(t *testing.T) {
	c, held := r.issue(t, "stuck")
	poll(t, "the lease to pass its expiry in Vault", 60*time.Second, func() (bool, string) {
		return time.Now().After(r.vault.expireTime(t, c.leaseID).Add(2 * time.Second)), "not expired yet"
	})
	if h, s := r.state(t, c.username); h != 1 || s != 1 || !answers(held) {
		t.Fatalf("after Vault's failed revocation: %d hosts, %d sessions; want the account and its session", h, s)
	}

	res := r.drop(t, c, "Vault holds the lease past its expiry")

	if res.Outcome != schemas.OutcomeDropped || res.SessionsTerminated != 1 || !res.RoleAbsentAfter {
		t.Fatalf("revocation %+v; want dropped with its session killed", res)
	}
	if h, s := r.state(t, c.username); h != 0 || s != 0 || answers(held) {
		t.Errorf("after the revocation: %d hosts, %d sessions", h, s)
	}
}
