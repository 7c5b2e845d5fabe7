package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// vaultIssuers is how many creds requests are in flight at once: the
// database plugin's connection pool holds 4 by default.
const vaultIssuers = 4

// vaultPoll is how often pg_roles is polled in the vault scenario.
const vaultPoll = 50 * time.Millisecond

// vaultScenario measures Vault's own revocation of database users on the
// same PostgreSQL: a dev server with the database secrets engine issues
// users shaped like the revoke scenario's (USAGE on a schema, SELECT on
// its tables), then (a) sys/leases/revoke-prefix of all of them, timed
// until the last is gone from pg_roles, and (b) a set of leases that
// expire in about the same second, revoked by Vault's expiration manager,
// with the lag from each lease's expire time to its user's disappearance.
func (b *Bench) vaultScenario(ctx context.Context) error {
	if b.opt.vaultBin == "" {
		b.logf("vault: skipped: %s", b.opt.vaultWhy)
		b.results.note("vault: skipped: %s", b.opt.vaultWhy)
		return nil
	}
	v, err := b.startVault(ctx, b.opt.vaultBin)
	if err != nil {
		return err
	}
	defer v.stop()
	seal, err := v.api.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return err
	}
	b.logf("vault: %s %s dev server at %s", b.opt.vaultBin, seal.Version, v.addr)

	dbURL, appDB, dropDB, err := b.vaultDatabase(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = dropDB(context.WithoutCancel(ctx)) }()
	const mount = "lgbench-db"
	role, err := b.vaultPostgres(ctx, v, mount, dbURL, appDB)
	if err != nil {
		return err
	}
	my, err := b.vaultMariaDB(ctx, v, mount)
	if err != nil {
		return err
	}
	// What was measured is recorded also when a later phase fails.
	f := &vaultFigures{}
	defer f.record(b)
	runs := b.opt.runsFor("vault")
	var longest time.Duration
	for r := range runs {
		if r > 0 && !roomFor(ctx, longest) {
			deadline, _ := ctx.Deadline()
			b.logf("vault: %d of %d runs: %s left before -timeout, and a run took up to %s", r, runs,
				time.Until(deadline).Round(time.Second), longest.Round(time.Second))
			b.results.note("vault: %d of %d runs: -timeout left too little for another (a run took up to %s)", r, runs, longest.Round(time.Second))
			break
		}
		started := time.Now()
		b.vacuumCatalogs(ctx, appDB, "vault")
		rp, ex := fmt.Sprintf("rp%d", r+1), fmt.Sprintf("ex%d", r+1)
		if err := role(rp, "1h"); err != nil {
			return err
		}
		rate, issueRate, err := b.vaultRevokePrefix(ctx, v, mount, rp, r)
		f.prefix(rate, err)
		if err != nil {
			return fmt.Errorf("run %d: revoke-prefix: %w", r+1, err)
		}
		if my != nil {
			rate, err := my.revokePrefix(ctx, fmt.Sprintf("myrp%d", r+1), r)
			f.mysqlPrefix(rate, err)
			if err != nil {
				return fmt.Errorf("run %d: revoke-prefix on MariaDB: %w", r+1, err)
			}
		}
		lag, fromVU, err := b.vaultExpiry(ctx, v, mount, ex, role, issueRate, r)
		if err != nil {
			return fmt.Errorf("run %d: expiry: %w", r+1, err)
		}
		f.expiry(b, r, lag, fromVU)
		longest = max(longest, time.Since(started))
	}
	return nil
}

// roomFor reports whether ctx leaves time for another run as long as the
// longest so far, and a quarter more. A slow Vault's third run, started
// with ten minutes left, was cut off by -timeout, and the scenario failed
// with the figures of two whole runs in hand.
func roomFor(ctx context.Context, longest time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > longest+longest/4
}

// vaultPostgres mounts the database secrets engine with a connection to
// the PostgreSQL database of the run (default revocation, the plugin's
// default pool) and returns the function that writes a role of it
// granting on appDB's tables, with a default TTL.
func (b *Bench) vaultPostgres(ctx context.Context, v *vaultServer, mount, dbURL string, appDB *pgxpool.Pool) (func(name, ttl string) error, error) {
	grants, err := b.appSchemaIn(ctx, appDB, "vault", revokeTables)
	if err != nil {
		return nil, err
	}
	if _, err := v.call(ctx, http.MethodPost, "sys/mounts/"+mount, map[string]any{"type": "database"}); err != nil {
		return nil, err
	}
	// Vault's default username template with the display name replaced
	// by this run's, so that the sweep finds what a failure leaves.
	tmpl := fmt.Sprintf(`{{ printf "%s%%s-%%s-%%s" (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}`, b.rolePrefix())
	if _, err := v.call(ctx, http.MethodPost, mount+"/config/pg", map[string]any{
		"plugin_name": "postgresql-database-plugin", "connection_url": dbURL, "allowed_roles": "*",
		"verify_connection": true, "username_template": tmpl,
	}); err != nil {
		return nil, err
	}
	create := []string{
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
		strings.ReplaceAll(grants[0], "{{name}}", `"{{name}}"`),
		strings.ReplaceAll(grants[1], "{{name}}", `"{{name}}"`),
	}
	return func(name, ttl string) error {
		_, err := v.call(ctx, http.MethodPost, mount+"/roles/"+name, map[string]any{
			"db_name": "pg", "creation_statements": create, "default_ttl": ttl, "max_ttl": "24h"})
		return err
	}, nil
}

// vaultFigures are the vault scenario's figures, run by run.
type vaultFigures struct {
	rates, myRates           []float64
	prefixLeft, myLeft       bool // a revoke-prefix ended with users left
	p50s, p99s, vu50s, vu99s []float64
	lags                     []float64
}

// prefix takes one revoke-prefix's rate; with err, the users left at the
// end of the wait make it a lower bound, still reported.
func (f *vaultFigures) prefix(rate float64, err error) {
	if rate > 0 || err == nil {
		f.rates = append(f.rates, rate)
	}
	f.prefixLeft = f.prefixLeft || err != nil
}

func (f *vaultFigures) mysqlPrefix(rate float64, err error) {
	if rate > 0 || err == nil {
		f.myRates = append(f.myRates, rate)
	}
	f.myLeft = f.myLeft || err != nil
}

func (f *vaultFigures) expiry(b *Bench, r int, lag, fromVU []float64) {
	d, dv := distOf(lag), distOf(fromVU)
	b.logf("vault: run %d: lease expire time → gone from pg_roles: %s; from VALID UNTIL: %s", r+1, d, dv)
	f.lags = append(f.lags, lag...)
	f.p50s, f.p99s = append(f.p50s, d.p50), append(f.p99s, d.p99)
	f.vu50s, f.vu99s = append(f.vu50s, dv.p50), append(f.vu99s, dv.p99)
}

// record writes the figures measured, whatever phase ended the scenario.
func (f *vaultFigures) record(b *Bench) {
	n, m := b.opt.vaultLeases, b.opt.vaultExpiryLeases
	lower := map[bool]string{true: " (a lower bound: users were left at the end of -vault-wait)"}
	if len(f.rates) > 0 {
		b.results.add(row{figure: fmt.Sprintf("Vault revoke-prefix, %d leases%s", n, lower[f.prefixLeft]), value: median(f.rates), baseline: nanF, unit: "/s"})
		b.results.set("vault_revoke_prefix_per_sec", median(f.rates))
		b.results.set("vault_revoke_leases", float64(n))
	}
	if len(f.myRates) > 0 {
		b.results.add(row{figure: fmt.Sprintf("Vault revoke-prefix on MariaDB, %d leases%s", n, lower[f.myLeft]), value: median(f.myRates), baseline: nanF, unit: "/s"})
		b.results.set("vault_mysql_revoke_prefix_per_sec", median(f.myRates))
	}
	if len(f.p50s) == 0 {
		return
	}
	b.results.add(row{figure: fmt.Sprintf("Vault expiry lag p50, %d leases", m), value: median(f.p50s), baseline: nanF, unit: "ms"})
	b.results.add(row{figure: "  p99", value: median(f.p99s), baseline: nanF, unit: "ms"})
	b.results.add(row{figure: "  p99 from VALID UNTIL", value: median(f.vu99s), baseline: nanF, unit: "ms"})
	b.results.set("vault_expiry_lag_p50_ms", median(f.p50s))
	b.results.set("vault_expiry_lag_p99_ms", median(f.p99s))
	b.results.set("vault_expiry_after_valid_until_p50_ms", median(f.vu50s))
	b.results.set("vault_expiry_after_valid_until_p99_ms", median(f.vu99s))
	b.results.set("vault_expiry_leases", float64(m))
	b.results.note("vault: %s dev server (in-memory storage), database secrets engine on the same PostgreSQL with the plugin's default connection pool and revocation; "+
		"users granted USAGE on a schema and SELECT on %d tables as in the revocations scenario, issued %d requests at a time; "+
		"revoke-prefix: %d leases, from the request to the last user gone from pg_roles (MariaDB: mysql.user); expiry: %d leases expiring within about one second, "+
		"lag from each lease's expire_time (sys/leases/lookup) to its user missing from pg_roles, polled every %s; "+
		"Vault sets VALID UNTIL 5 s after the lease's expiry, and leaseguard's expiry figure counts from VALID UNTIL; all runs pooled: %s",
		b.opt.vaultBin[strings.LastIndex(b.opt.vaultBin, "/")+1:], revokeTables, vaultIssuers, n, m, vaultPoll, distOf(f.lags))
}

// vaultDatabase returns the database Vault's users are granted on: a
// database of this run on the same server (dropped when the run ends), or
// with -vault-shared-db the harness's own database. Vault's default
// revocation reads information_schema.role_column_grants for each user, a
// query whose cost grows with the database's catalog: on a database where
// other clients keep creating and dropping schemas it takes seconds.
func (b *Bench) vaultDatabase(ctx context.Context) (string, *pgxpool.Pool, func(context.Context) error, error) {
	if b.opt.vaultSharedDB {
		return b.opt.dbURL, b.admin, func(ctx context.Context) error { return b.dropSchema(ctx, b.schemaName("vault")) }, nil
	}
	name := b.schemaName("vault")
	u, err := url.Parse(b.opt.dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, nil, errors.New("the vault scenario's own database needs a postgres:// URL (or use -vault-shared-db)")
	}
	if _, err := b.admin.Exec(ctx, "CREATE DATABASE "+ident(name)); err != nil {
		return "", nil, nil, fmt.Errorf("create database %s: %w", name, err)
	}
	var pool *pgxpool.Pool
	drop := func(ctx context.Context) error {
		if pool != nil {
			pool.Close()
		}
		// The users' grants live in this database: it goes before the
		// sweep drops the users.
		_, err := b.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)")
		return err
	}
	b.undo.add("drop vault database", drop)
	u.Path = "/" + name
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return "", nil, nil, err
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["application_name"] = "leaseguard-bench"
	if pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return "", nil, nil, err
	}
	return u.String(), pool, drop, nil
}

// vaultCPU is cpuSince with the Vault server as the child (its PostgreSQL
// backends count among other clients').
func (b *Bench) vaultCPU(cs cpuSample) string {
	return strings.Replace(b.cpuSince(cs), "leaseguard ", "vault ", 1) + " (vault's backends among other clients')"
}

// vaultCompare adds the rows that put leaseguard's figures against
// Vault's, when both were measured in this run.
func (b *Bench) vaultCompare() {
	get := func(k string) (float64, bool) { v, ok := b.results.json[k]; return v, ok && v > 0 }
	if lg, ok := get("revocations_per_sec"); ok {
		if vr, ok := get("vault_revoke_prefix_per_sec"); ok {
			b.results.add(row{figure: "revocations vs Vault revoke-prefix", value: lg, baseline: vr, unit: "/s"})
			b.results.set("revocations_vs_vault_ratio", lg/vr)
		}
	}
	if lg, ok := get("mysql_revocations_per_sec"); ok {
		if vr, ok := get("vault_mysql_revoke_prefix_per_sec"); ok {
			b.results.add(row{figure: "MariaDB revocations vs Vault revoke-prefix on MariaDB", value: lg, baseline: vr, unit: "/s"})
			b.results.set("mysql_revocations_vs_vault_ratio", lg/vr)
		}
	}
	if lg, ok := get("expiry_to_drop_p99_ms"); ok {
		if vl, ok := get("vault_expiry_lag_p99_ms"); ok {
			b.results.add(row{figure: "expiry→drop p99 vs Vault's expiry lag p99 (ratio: Vault ÷ leaseguard)", value: lg, baseline: vl, unit: "ms", inverse: true})
			b.results.set("expiry_p99_vs_vault_ratio", vl/lg)
		}
		if vl, ok := get("vault_expiry_lag_p99_ms"); ok {
			// leaseguard's figure counts from VALID UNTIL, which Vault's
			// plugin sets 5 s after the lease's expiry.
			b.results.add(row{figure: "  same, leaseguard's counted from the lease's expiry (+5 s)", value: lg + 5000, baseline: vl, unit: "ms", inverse: true})
			b.results.set("expiry_p99_from_lease_expiry_vs_vault_ratio", vl/(lg+5000))
		}
	}
}

// vaultIssueAll issues n leases of a role, vaultIssuers at a time; before
// each chunk of the given size, prepare (if any) runs first.
func (b *Bench) vaultIssueAll(ctx context.Context, v *vaultServer, mount, role string, n, chunk int, prepare func(done int) error) ([]vaultLease, int, error) {
	leases := make([]vaultLease, 0, n)
	var mu sync.Mutex
	var retries atomic.Int64
	for lo := 0; lo < n; lo += chunk {
		if prepare != nil {
			if err := prepare(lo); err != nil {
				return leases, int(retries.Load()), err
			}
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(vaultIssuers)
		for range min(chunk, n-lo) {
			g.Go(func() error {
				l, rt, err := v.issue(gctx, mount, role)
				retries.Add(int64(rt))
				if err != nil {
					return err
				}
				mu.Lock()
				leases = append(leases, l)
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return leases, int(retries.Load()), err
		}
	}
	return leases, int(retries.Load()), nil
}

func usernames(ls []vaultLease) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.username
	}
	return out
}

// vaultRevokePrefix issues the leases, revokes them with revoke-prefix and
// returns users/s until the last is gone, and the issue rate.
func (b *Bench) vaultRevokePrefix(ctx context.Context, v *vaultServer, mount, role string, r int) (rate, issueRate float64, err error) {
	n := b.opt.vaultLeases
	start := time.Now()
	leases, retries, err := b.vaultIssueAll(ctx, v, mount, role, n, n, nil)
	if err != nil {
		return 0, 0, err
	}
	issueRate = float64(n) / time.Since(start).Seconds()
	names := usernames(leases)
	if left, err := b.rolesLeft(ctx, names); err != nil || left != n {
		return 0, 0, fmt.Errorf("%d of %d issued users in pg_roles (%v)", left, n, err)
	}
	b.logf("vault: run %d: %d leases issued in %s (%.0f/s, %d retries after \"tuple concurrently updated\")",
		r+1, n, time.Since(start).Round(time.Millisecond), issueRate, retries)

	cs := sampleCPU(v.cmd.Process.Pid)
	out, err := b.prefixRevoke(v, mount+"/creds/"+role, n, func(ctx context.Context) (int, error) { return b.rolesLeft(ctx, names) }, r).run(ctx)
	rate = out.rate(n)
	b.logf("vault: run %d: %s; %s", r+1, out.describe(n), b.vaultCPU(cs))
	if err != nil {
		return rate, issueRate, fmt.Errorf("%w; vault log: %s", err, v.lastLines())
	}
	return rate, issueRate, nil
}

// vaultExpiry issues leases whose expiry falls in about one second (the
// role's TTL is set before each chunk to the whole seconds left until a
// common instant) and measures the lag from each lease's expire time to
// its user's disappearance, and from the user's VALID UNTIL.
func (b *Bench) vaultExpiry(ctx context.Context, v *vaultServer, mount, role string, setRole func(name, ttl string) error, issueRate float64, r int) (lag, fromVU []float64, err error) {
	m := b.opt.vaultExpiryLeases
	const chunk = 40
	// The common expiry: the estimated issue time at the rate just
	// measured, with room for the lookups that follow.
	budget := time.Duration(float64(m)/issueRate*1.5*float64(time.Second)) + 8*time.Second
	target := time.Now().Add(budget)
	start := time.Now()
	leases, retries, err := b.vaultIssueAll(ctx, v, mount, role, m, chunk, func(int) error {
		left := time.Until(target)
		if left < 4*time.Second {
			return fmt.Errorf("issuing too slow: %s left before the common expiry (rerun with fewer leases)", left.Round(time.Millisecond))
		}
		return setRole(role, fmt.Sprintf("%ds", int(math.Round(left.Seconds()))))
	})
	if err != nil {
		return nil, nil, err
	}
	names := usernames(leases)
	b.logf("vault: run %d: %d expiring leases issued in %s (%d retries); %.1f s left before the common expiry",
		r+1, m, time.Since(start).Round(time.Millisecond), retries, time.Until(target).Seconds())

	// Each lease's expire time as Vault holds it.
	expire := make(map[string]time.Time, m)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, l := range leases {
		g.Go(func() error {
			out, err := v.call(gctx, http.MethodPut, "sys/leases/lookup", map[string]any{"lease_id": l.id})
			if err != nil {
				return err
			}
			data, _ := out["data"].(map[string]any)
			t, err := time.Parse(time.RFC3339Nano, str(data["expire_time"]))
			if err != nil {
				return fmt.Errorf("lookup %s: expire_time: %w", l.id, err)
			}
			mu.Lock()
			expire[l.username] = t
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	validUntil := map[string]time.Time{}
	rows, err := b.admin.Query(ctx, "SELECT rolname::text, rolvaliduntil FROM pg_roles WHERE rolname = ANY($1)", names)
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var u string
		var t time.Time
		if err := rows.Scan(&u, &t); err != nil {
			rows.Close()
			return nil, nil, err
		}
		validUntil[u] = t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	first, last := target.Add(time.Hour), time.Time{}
	for _, t := range expire {
		if t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	b.logf("vault: run %d: leases expire within %s, the first %.1f s from now", r+1, last.Sub(first).Round(time.Millisecond), time.Until(first).Seconds())

	cs := sampleCPU(v.cmd.Process.Pid)
	deadline := last.Add(b.opt.vaultWait)
	goneAt, err := b.pollGone(ctx, names, first.Add(-200*time.Millisecond), deadline, vaultPoll)
	if err != nil {
		return nil, nil, err
	}
	b.logf("vault: run %d: %s", r+1, b.vaultCPU(cs))
	missing := 0
	for _, u := range names {
		t, ok := goneAt[u]
		if !ok {
			missing++
			continue
		}
		lag = append(lag, ms(t.Sub(expire[u])))
		if vu, ok := validUntil[u]; ok {
			fromVU = append(fromVU, ms(t.Sub(vu)))
		}
	}
	if missing > 0 {
		return nil, nil, fmt.Errorf("%d of %d users still in pg_roles %s after their leases expired; vault log: %s", missing, m, b.opt.vaultWait, v.lastLines())
	}
	return lag, fromVU, nil
}
