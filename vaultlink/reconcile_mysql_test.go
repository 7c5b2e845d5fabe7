package vaultlink_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/target/mysql"
	"github.com/leaseguard/leaseguard/vaultlink"
)

const mariaURL = "mysql://root@127.0.0.1:3306/"

// On a MySQL target the reconciler checks mysql.user, every host of the
// name, and its messages and evidence say so, not pg_roles.
func TestReconcilerNamesMySQLUserTable(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	set, err := target.Open(ctx, target.Config{Targets: []target.Target{{Name: "maria", URL: mariaURL}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	mc, err := mysql.ParseURL(mariaURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := driver.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	root := sql.OpenDB(conn)
	t.Cleanup(func() { _ = root.Close() })
	user := "v-token-mforce-" + pgtest.Suffix()
	if _, err := root.Exec(`CREATE USER ?@'%'`, user); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = root.Exec(`DROP USER IF EXISTS ?@'%'`, user) })

	lease := "mysql/creds/force/" + pgtest.Suffix() + pgtest.Suffix() + "ZxYw"
	r.vault.AddLease(lease, vaulttest.Lease{IssueTime: r.clock.Now().Add(-time.Hour), ExpireTime: r.clock.Now().Add(-time.Minute), RevokeFails: true})
	if _, err := vaultlink.EnqueueVaultRevocation(ctx, r.st.Pool(), vaultlink.VaultRevocation{
		LeaseID: lease, CommandID: "cmd-" + user, Database: "maria", DBUser: user, DroppedAt: r.clock.Now(),
	}, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	cfg := vaultlink.DefaultReconcilerConfig()
	cfg.Force = true
	rec, err := vaultlink.NewReconciler(cfg, vaultlink.ReconcilerDeps{
		Pool: r.st.Pool(), Vault: r.client(t, nil), Targets: set,
		Evidence: evidence.Builder{Source: "urn:leaseguard:test", Clock: r.clock.Now}, Logger: r.logger(), Clock: r.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}

	// The user is still in mysql.user: no force, and the failure says where
	// it looked.
	if _, err := rec.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	q := r.queued(t, lease)
	if !strings.Contains(q.LastError, "the user exists in mysql.user") || strings.Contains(q.LastError, "pg_roles") {
		t.Fatalf("last error %q, want it to name mysql.user", q.LastError)
	}
	fs := r.findings(t, lease)
	if len(fs) != 1 || fs[0].Facts["user_absent_from_mysql_user"] != false || fs[0].Facts["user_absent_from_pg_roles"] != nil {
		t.Fatalf("failure evidence facts = %+v", fs[0].Facts)
	}

	// Gone from every host: the exact lease is forced, and the evidence
	// says the user was verified gone from mysql.user.
	if _, err := root.Exec(`DROP USER ?@'%'`, user); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(15 * time.Second)
	if n, err := rec.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("retry pass = %d, %v", n, err)
	}
	fs = r.findings(t, lease)
	if len(fs) != 2 || !strings.Contains(fs[1].Summary, "gone from mysql.user") || strings.Contains(fs[1].Summary, "pg_roles") ||
		fs[1].Facts["user_absent_from_mysql_user"] != true {
		t.Fatalf("resolution evidence = %q %+v", fs[1].Summary, fs[1].Facts)
	}
}
