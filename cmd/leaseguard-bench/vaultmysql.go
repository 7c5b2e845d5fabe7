package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/leaseguard/leaseguard/target/mysql"
)

// vaultMy is the MariaDB side of the vault scenario: a connection of the
// database secrets engine to the local MariaDB through Vault's built-in
// mysql-database-plugin (its default pool and revocation, REVOKE ALL
// PRIVILEGES, GRANT OPTION and DROP USER per lease).
type vaultMy struct {
	b     *Bench
	v     *vaultServer
	m     *mariadb
	mount string
	db    string // the database the users are granted SELECT on
}

// vaultMariaDB configures the mount's connection "my" to the MariaDB of
// -mysql-url; without a reachable MariaDB the MariaDB side is skipped
// with a note (nil).
func (b *Bench) vaultMariaDB(ctx context.Context, v *vaultServer, mount string) (*vaultMy, error) {
	m, err := b.openMariaDB(ctx)
	if err != nil {
		b.logf("vault: MariaDB side skipped: %v", err)
		b.results.note("vault: revoke-prefix on MariaDB skipped: %s", short(err))
		return nil, nil
	}
	db, err := m.appDatabase(ctx, "vaultmy", mysqlTables)
	if err != nil {
		return nil, err
	}
	cfg, err := mysql.ParseURL(m.url)
	if err != nil {
		return nil, err
	}
	body := map[string]any{
		"plugin_name": "mysql-database-plugin", "allowed_roles": "*", "verify_connection": true,
		"connection_url": "{{username}}:{{password}}@tcp(" + cfg.Addr + ")/", "username": cfg.User, "password": cfg.Passwd,
		// The plugin's default template (display name and role cut to 10,
		// random, cut to 32) with this run's prefix, so that the sweep
		// finds what a failure leaves.
		"username_template": fmt.Sprintf(`{{ printf "%s%%s-%%s" (.RoleName | truncate 10) (random 20) | truncate 32 }}`, b.rolePrefix()),
	}
	if cfg.Passwd == "" {
		// Vault refuses an empty password field; a password-less account
		// goes in the URL.
		body["connection_url"] = cfg.User + "@tcp(" + cfg.Addr + ")/"
		delete(body, "username")
		delete(body, "password")
	}
	if _, err := v.call(ctx, http.MethodPost, mount+"/config/my", body); err != nil {
		return nil, err
	}
	return &vaultMy{b: b, v: v, m: m, mount: mount, db: db}, nil
}

// revokePrefix issues the leases of a new role, revokes them with
// revoke-prefix and returns users/s until the last is gone from
// mysql.user (or, with an error, as far as it got).
func (y *vaultMy) revokePrefix(ctx context.Context, role string, r int) (float64, error) {
	b, n := y.b, y.b.opt.vaultLeases
	create := []string{
		`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`,
		"GRANT SELECT ON " + mysqlIdent(y.db) + ".* TO '{{name}}'@'%'",
	}
	if _, err := y.v.call(ctx, http.MethodPost, y.mount+"/roles/"+role, map[string]any{
		"db_name": "my", "creation_statements": create, "default_ttl": "1h", "max_ttl": "24h"}); err != nil {
		return 0, err
	}
	start := time.Now()
	leases, _, err := b.vaultIssueAll(ctx, y.v, y.mount, role, n, n, nil)
	if err != nil {
		return 0, err
	}
	names := usernames(leases)
	if left, err := y.m.usersLeft(ctx, names); err != nil || left != n {
		return 0, fmt.Errorf("%d of %d issued users in mysql.user (%v)", left, n, err)
	}
	b.logf("vault: run %d: MariaDB: %d leases issued in %s (%.0f/s)", r+1, n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	cs := sampleCPU(y.v.cmd.Process.Pid)
	left := func(ctx context.Context) (int, error) { return y.m.usersLeft(ctx, names) }
	out, err := b.prefixRevoke(y.v, y.mount+"/creds/"+role, n, left, r).run(ctx)
	b.logf("vault: run %d: MariaDB: %s; %s", r+1, out.describe(n), b.cpuSince(cs))
	if err != nil {
		return out.rate(n), fmt.Errorf("%w; vault log: %s", err, y.v.lastLines())
	}
	return out.rate(n), nil
}
