package target

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/target/engine"
	"github.com/leaseguard/leaseguard/target/mysql"
)

func mysqlURL() string {
	if u := os.Getenv("TEST_MYSQL_URL"); u != "" {
		return u
	}
	return "mysql://root@127.0.0.1:3306/"
}

func TestParseTargetsKinds(t *testing.T) {
	t.Parallel()
	ts, err := ParseTargets("pg=postgres://u@db1/app, maria=mysql://lg:pw@db2:3306/, keys=host=db3 dbname=x")
	if err != nil {
		t.Fatal(err)
	}
	kinds := []engine.Kind{ts[0].Kind, ts[1].Kind, ts[2].Kind}
	if !slices.Equal(kinds, []engine.Kind{engine.KindPostgres, engine.KindMySQL, engine.KindPostgres}) {
		t.Errorf("kinds %v", kinds)
	}
	_, err = ParseTargets("maria=mysql://lg:s3cret@db2/?timeout=1s")
	if err == nil || !strings.Contains(err.Error(), "target maria: mysql url:") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad mysql url: %v", err)
	}
}

// A set of a PostgreSQL and a MySQL target: both through the engine
// interface; only PostgreSQL has a pool, only MySQL drops by itself.
func TestSetOfTwoEngines(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	set, err := Open(ctx, Config{
		Targets: []Target{{Name: "pg", URL: pgtest.URL()}, {Name: "maria", URL: mysqlURL()}},
		Routes:  []Route{{Pattern: "postgres", Target: "pg"}, {Pattern: "mysql", Target: "maria"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if err := set.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if got := set.AllNames(); !slices.Equal(got, []string{"maria", "pg"}) {
		t.Errorf("AllNames %v", got)
	}
	if got := set.Names(); !slices.Equal(got, []string{"pg"}) {
		t.Errorf("Names %v, want the PostgreSQL target alone (the callers of Pool)", got)
	}
	if _, ok := set.Pool("maria"); ok {
		t.Error("a MySQL target has a pgx pool")
	}
	if _, ok := set.Revoker("pg"); ok {
		t.Error("the PostgreSQL target drops by itself")
	}
	if r, ok := set.Revoker("maria"); !ok || r.Kind() != engine.KindMySQL {
		t.Errorf("Revoker(maria) = %v, %v", r, ok)
	}
	id, err := set.Identity(ctx, "maria")
	if err != nil || !strings.HasPrefix(id.SystemIdentifier, "mariadb:") || id.DatabaseOID != 0 {
		t.Errorf("maria identity %+v, %v", id, err)
	}
	pgID, err := set.Identity(ctx, "pg")
	if err != nil || pgID.DatabaseOID == 0 || pgID == id {
		t.Errorf("pg identity %+v, %v", pgID, err)
	}
	e, _ := set.Engine("maria")
	if _, err := e.Expiry(ctx, []string{"v-x"}); !errors.Is(err, engine.ErrNoExpiry) {
		t.Errorf("MySQL expiry: %v, want ErrNoExpiry", err)
	}
	mysqlRolesSeen(ctx, t, set)
}

// mysqlRolesSeen: Roles of a MySQL target are the users with an account,
// without oid and with NoExpiry; ValidUntil knows none.
func mysqlRolesSeen(ctx context.Context, t *testing.T, set *Set) {
	t.Helper()
	name := "v-roles-" + pgtest.Suffix()
	exec := func(q string) {
		t.Helper()
		if err := rootExec(ctx, q, name); err != nil {
			t.Fatal(err)
		}
	}
	exec("CREATE USER ?@'%'")
	t.Cleanup(func() { _ = rootExec(context.Background(), "DROP USER IF EXISTS ?@'%'", name) })
	roles, err := set.Roles(ctx, "maria", []string{name, "v-absent-" + name})
	if err != nil || len(roles) != 1 || roles[name] != (Role{NoExpiry: true}) {
		t.Errorf("Roles = %+v, %v; want only %s, NoExpiry", roles, err, name)
	}
	vu, err := set.ValidUntil(ctx, "maria", []string{name})
	if err != nil || len(vu) != 0 {
		t.Errorf("ValidUntil = %v, %v; want none", vu, err)
	}
}

// The PostgreSQL engine lists, terminates and verifies by name.
func TestPostgresEngine(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := pgtest.Pool(t)
	name := "v-eng-" + pgtest.Suffix()
	pgtest.DropRoleAtCleanup(t, admin, name)
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" LOGIN PASSWORD 'pw' VALID UNTIL '"+until.Format(time.RFC3339)+"'"); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(pgtest.URL())
	u.User = url.UserPassword(name, "pw")
	held, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())

	e := Postgres{Pool: admin}
	accts, err := e.Accounts(ctx, regexp.MustCompile("^"+regexp.QuoteMeta(name)+"$"))
	if err != nil || len(accts) != 1 || accts[0].Name != name || accts[0].OID == 0 || accts[0].ValidUntil == nil || !accts[0].ValidUntil.Equal(until) {
		t.Fatalf("Accounts = %+v, %v", accts, err)
	}
	sess, err := e.Sessions(ctx)
	if err != nil || !slices.ContainsFunc(sess, func(s engine.Session) bool { return s.User == name }) {
		t.Fatalf("Sessions has no session of %s: %v", name, err)
	}
	if n, err := e.Terminate(ctx, name); err != nil || n != 1 {
		t.Fatalf("Terminate = %d, %v; want 1", n, err)
	}
	if _, err := admin.Exec(ctx, "DROP ROLE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, err := e.Verify(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if g.Absent && g.Sessions == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Verify = %+v after terminate and drop", g)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// rootExec runs one statement on the MySQL test server with arg
// interpolated by the driver.
func rootExec(ctx context.Context, q string, arg string) error {
	cfg, err := mysql.ParseURL(mysqlURL())
	if err != nil {
		return err
	}
	c, err := driver.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	_, err = db.ExecContext(ctx, q, arg)
	return err
}
