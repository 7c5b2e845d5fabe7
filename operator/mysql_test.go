package operator_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/target/mysql"
)

func mysqlURL() string {
	if u := os.Getenv("TEST_MYSQL_URL"); u != "" {
		return u
	}
	return "mysql://root@127.0.0.1:3306/"
}

// An operator's `leaseguard revoke` on a MariaDB target: the plan finds a
// user with no lease and previews the superuser guard; executing it drops
// the user through the revoker.
func TestOperatorOnMySQL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, "lg_opmy")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	set, err := target.Open(ctx, target.Config{Targets: []target.Target{{Name: "maria", URL: mysqlURL()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	tag := pgtest.Suffix()[:8]
	guard := revoker.GuardConfig{ManagedPattern: regexp.MustCompile("^v-" + tag + "-")}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := revoker.NewSigner(priv)
	verifier, err := revoker.NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	dropper, err := revoker.NewDropper(revoker.DropperConfig{Guard: guard})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := revoker.NewIssuer(signer, set, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: dropper, Verifier: verifier, Targets: set,
		State: st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := operator.New(operator.Deps{State: st.Pool(), Targets: set, Guard: guard, Executor: exec, Issuer: issuer})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := mysql.ParseURL(mysqlURL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := sql.OpenDB(conn)
	t.Cleanup(func() { _ = root.Close() })
	name, super := "v-"+tag+"-leaked", "v-"+tag+"-super"
	// Past PostgreSQL's 63 bytes, within the 128 characters MariaDB takes.
	long := "v-" + tag + "-" + strings.Repeat("l", 100)
	for _, u := range []string{name, super, long} {
		if _, err := root.ExecContext(ctx, `CREATE USER ?@'%'`, u); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = root.Exec(`DROP USER IF EXISTS ?@'%'`, u) })
	}
	if _, err := root.ExecContext(ctx, `GRANT SUPER ON *.* TO ?@'%'`, super); err != nil {
		t.Fatal(err)
	}

	p, err := svc.Plan(ctx, operator.Request{Selector: operator.Selector{Database: "maria", AllManaged: true}, Reason: "leaked", Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range p.Items {
		got[it.DBUser] = it.Guard
	}
	if len(got) != 3 || got[name] != "" || got[long] != "" || got[super] != revoker.GuardSuperuser {
		t.Fatalf("plan items %+v; want %s, %s and %s, the latter refused as superuser", p.Items, name, long, super)
	}
	res, err := svc.Execute(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]schemas.Outcome{}
	for _, e := range res {
		outcomes[e.Result.DBUser] = e.Result.Outcome
	}
	if outcomes[name] != schemas.OutcomeDropped || outcomes[long] != schemas.OutcomeDropped || outcomes[super] != schemas.OutcomeRefused {
		t.Fatalf("outcomes %v", outcomes)
	}
	var n int
	if err := root.QueryRowContext(ctx, `SELECT count(*) FROM mysql.user WHERE User = ?`, name).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d hosts of %s left (%v)", n, name, err)
	}
}
