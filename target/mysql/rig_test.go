package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"regexp"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
)

// testURL is the MariaDB (or MySQL) the tests run against: the local
// server, root without a password from loopback, unless TEST_MYSQL_URL says
// otherwise. A missing server fails the tests; it never skips them.
func testURL() string {
	if u := os.Getenv("TEST_MYSQL_URL"); u != "" {
		return u
	}
	return "mysql://root@127.0.0.1:3306/"
}

// rig is one test's server: a root connection for setting up and looking,
// and the engine under test. Everything it makes carries a unique suffix
// and is removed at cleanup.
type rig struct {
	t      *testing.T
	root   *sql.DB
	e      *Engine
	suffix string
	users  []string // names, every host dropped at cleanup
	dbs    []string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	cfg, err := ParseURL(testURL())
	if err != nil {
		t.Fatalf("TEST_MYSQL_URL: %v", err)
	}
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := sql.OpenDB(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := root.PingContext(ctx); err != nil {
		t.Fatalf("MariaDB at %s is needed for these tests: %v", cfg.Addr, err)
	}
	e, err := Open(testURL(), 4)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	r := &rig{t: t, root: root, e: e, suffix: hex.EncodeToString(b)}
	t.Cleanup(r.cleanup)
	return r
}

func (r *rig) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range r.users {
		rows, err := r.root.QueryContext(ctx, `SELECT Host FROM mysql.user WHERE User = ?`, u)
		if err != nil {
			r.t.Errorf("cleanup: %v", err)
			continue
		}
		var hosts []string
		_ = eachRow(rows, func(rows *sql.Rows) error {
			var h string
			err := rows.Scan(&h)
			hosts = append(hosts, h)
			return err
		})
		for _, h := range hosts {
			if _, err := r.root.ExecContext(ctx, `DROP USER IF EXISTS ?@?`, u, h); err != nil {
				r.t.Errorf("cleanup: drop %s: %v", account(u, h), err)
			}
		}
	}
	for _, d := range r.dbs {
		if _, err := r.root.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+d+"`"); err != nil {
			r.t.Errorf("cleanup: drop database %s: %v", d, err)
		}
	}
	r.e.Close()
	_ = r.root.Close()
}

func (r *rig) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r.t.Cleanup(cancel)
	return ctx
}

// name is a managed name unique to the test ("v-" and the suffix).
func (r *rig) name(label string) string {
	n := "v-" + label + "-" + r.suffix
	r.users = append(r.users, n)
	return n
}

// exec runs a setup statement as root (args interpolated by the driver).
func (r *rig) exec(query string, args ...any) {
	r.t.Helper()
	if _, err := r.root.ExecContext(r.ctx(), query, args...); err != nil {
		r.t.Fatalf("%s: %v", query, err)
	}
}

// createUser creates name at each host with password pw.
func (r *rig) createUser(name, pw string, hosts ...string) {
	r.t.Helper()
	for _, h := range hosts {
		r.exec(`CREATE USER ?@? IDENTIFIED BY ?`, name, h, pw)
	}
}

// database creates a database of its own for the test.
func (r *rig) database() string {
	d := "lg_" + r.suffix
	r.exec("CREATE DATABASE `" + d + "`")
	r.dbs = append(r.dbs, d)
	return d
}

// hosts reads, as root, the hosts of name in mysql.user.
func (r *rig) hosts(name string) []string {
	r.t.Helper()
	rows, err := r.root.QueryContext(r.ctx(), `SELECT Host FROM mysql.user WHERE User = ? ORDER BY Host`, name)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	if err := eachRow(rows, func(rows *sql.Rows) error {
		var h string
		err := rows.Scan(&h)
		out = append(out, h)
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// sessionsOf counts, as root, the processlist rows of name.
func (r *rig) sessionsOf(name string) int {
	r.t.Helper()
	var n int
	if err := r.root.QueryRowContext(r.ctx(), `SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ?`, name).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// connectAs opens one session as name and keeps it: the returned conn is
// a live session in the processlist.
func (r *rig) connectAs(name, pw string) *sql.Conn {
	r.t.Helper()
	cfg, err := ParseURL(testURL())
	if err != nil {
		r.t.Fatal(err)
	}
	cfg.User, cfg.Passwd, cfg.DBName = name, pw, ""
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	r.t.Cleanup(func() { _ = db.Close() })
	c, err := db.Conn(r.ctx())
	if err != nil {
		r.t.Fatalf("connect as %s: %v", name, err)
	}
	if _, err := c.ExecContext(r.ctx(), `SELECT 1`); err != nil {
		r.t.Fatalf("query as %s: %v", name, err)
	}
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

// command is a drop command for name on this server, corroborated by Vault.
func (r *rig) command(name string) schemas.RevocationCommand {
	r.t.Helper()
	id, err := r.e.Identity(r.ctx())
	if err != nil {
		r.t.Fatal(err)
	}
	return schemas.RevocationCommand{ID: "cmd-" + name, Action: schemas.ActionDropRole, Database: "maria",
		Target: id, DBUser: name, Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByVaultLookup}}
}

var testGuard = engine.Guard{ManagedPattern: regexp.MustCompile(`^v-`)}

// revokerAs opens an engine connected as a revoker account of its own
// name with exactly grants (each "… ON …" clause granted to it).
func (r *rig) revokerAs(name, pw string, grants ...string) *Engine {
	r.t.Helper()
	r.users = append(r.users, name)
	r.createUser(name, pw, "%", "localhost", "127.0.0.1")
	for _, h := range []string{"%", "localhost", "127.0.0.1"} {
		for _, g := range grants {
			r.exec("GRANT "+g+" TO ?@?", name, h)
		}
	}
	cfg, err := ParseURL(testURL())
	if err != nil {
		r.t.Fatal(err)
	}
	e, err := Open("mysql://"+urlUser(name, pw)+"@"+cfg.Addr+"/", 2)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(e.Close)
	return e
}
