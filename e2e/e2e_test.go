//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// suffix makes every name of this run unique on the shared PostgreSQL.
var suffix = pgtest.Suffix()

// rig is one Vault, one leaseguard, and the state store they share.
type rig struct {
	vault  *vaultServer
	lg     *leaseguardProc
	lgBin  string
	env    []string
	lgLog  string
	socket string
	// proxy carries Vault's socket audit device to socket; scenario 5
	// cuts it.
	proxy  *socketProxy
	pool   *pgxpool.Pool
	schema string
	// auditDevices is LEASEGUARD_VAULT_AUDIT_DEVICE: every device that
	// feeds leaseguard.
	auditDevices string
	// tuned has audit_non_hmac_response_keys=username; hashed does not.
	tuned, hashed string
	userPrefix    string
}

func TestVaultEndToEnd(t *testing.T) {
	vaultBin, lgBin := os.Getenv("E2E_VAULT_BIN"), os.Getenv("E2E_LEASEGUARD_BIN")
	if vaultBin == "" || lgBin == "" {
		t.Fatal("E2E_VAULT_BIN and E2E_LEASEGUARD_BIN must name the Vault and leaseguard binaries (make e2e sets them)")
	}
	timings := map[string]time.Duration{}
	start := time.Now()
	r := setup(t, vaultBin, lgBin)
	timings["0 setup (Vault, leaseguard, mounts)"] = time.Since(start)
	scenario := func(name string, f func(t *testing.T, r *rig)) {
		begin := time.Now()
		t.Run(name, func(t *testing.T) { f(t, r) })
		timings[name] = time.Since(begin)
	}
	scenario("1 issue", scenarioIssue)
	scenario("2 renew and revoke", scenarioRenewRevoke)
	scenario("3 failed Vault revocation", scenarioFailedRevocation)
	scenario("4 ghost session", scenarioGhostSession)
	scenario("5 socket gap", scenarioSocketGap)
	names := make([]string, 0, len(timings))
	for n := range timings {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "\n  %-40s %6.1fs", n, timings[n].Seconds())
	}
	t.Logf("timings (%s):%s", vaultVersion(t, vaultBin), b.String())
}

func vaultVersion(t *testing.T, bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "vault version unknown"
	}
	return strings.TrimSpace(string(out))
}

func setup(t *testing.T, vaultBin, lgBin string) *rig {
	dir := t.TempDir()
	r := &rig{
		lgBin: lgBin, lgLog: filepath.Join(dir, "leaseguard.log"), socket: freePort(t),
		schema: pgtest.Schema(t, "lg_e2e"),
		tuned:  "lge2e" + suffix + "tuned", hashed: "lge2e" + suffix + "hashed",
		userPrefix: "v-e2e" + suffix + "-", auditDevices: "file,socket",
	}
	r.pool = pgtest.Pool(t)
	t.Cleanup(func() { dropTestUsers(t, r.pool, r.userPrefix) })
	out, err := exec.Command(lgBin, "config", "--markdown").Output()
	if err != nil {
		t.Fatalf("leaseguard config: %v", err)
	}
	if !strings.Contains(string(out), "LEASEGUARD_VAULT_ADDR") {
		t.Fatalf("%s has no Vault settings (LEASEGUARD_VAULT_ADDR): the scenarios need the Vault link", lgBin)
	}

	r.vault = startVault(t, vaultBin, dir)
	auditFile := filepath.Join(dir, "audit", "vault-audit.log")
	if err := os.MkdirAll(filepath.Dir(auditFile), 0o700); err != nil {
		t.Fatal(err)
	}
	r.env = []string{
		"LEASEGUARD_DATABASE_URL=" + pgtest.URL(),
		"LEASEGUARD_DATABASE_SCHEMA=" + r.schema,
		"LEASEGUARD_DATA_DIR=" + filepath.Join(dir, "leaseguard"),
		"LEASEGUARD_METRICS_ADDR=127.0.0.1:0",
		"LEASEGUARD_LOG_FORMAT=text",
		"LEASEGUARD_INSTANCE=e2e-" + suffix,
		// alerts need sinks; the admin API stays off.
		"LEASEGUARD_ROLES=ingest,detectors,revoker,relay,observer",
		"LEASEGUARD_AUDIT_FILE=" + auditFile,
		"LEASEGUARD_AUDIT_FILE_POLL=100ms",
		"LEASEGUARD_AUDIT_SOCKET_ADDR=" + r.socket,
		"LEASEGUARD_EXPIRY_GRACE=2s",
		"LEASEGUARD_DETECT_INTERVAL=250ms",
		"LEASEGUARD_OBSERVE_INTERVAL=500ms",
		// The PostgreSQL server is shared: leaseguard may drop only the
		// users this run's Vault creates, and enforce only on its mounts
		// (a ghost session of someone else's dropped role is observed,
		// never terminated).
		"LEASEGUARD_MANAGED_ROLE_PATTERN=^" + r.userPrefix,
		"LEASEGUARD_ENFORCE_SCOPE=role:lge2e" + suffix + "*/*",
		"LEASEGUARD_VAULT_ADDR=" + r.vault.addr,
		"LEASEGUARD_VAULT_TOKEN=" + r.vault.token,
		"LEASEGUARD_VAULT_FORCE=true",
		"LEASEGUARD_VAULT_AUDIT_DEVICE=" + r.auditDevices,
	}
	r.lg = startLeaseguard(t, lgBin, r.env, r.lgLog)
	t.Cleanup(func() {
		if t.Failed() {
			dumpTail(t, "leaseguard", r.lgLog)
		}
	})

	v := r.vault
	r.proxy = startSocketProxy(t, r.socket)
	v.must(t, "PUT", "sys/audit/file", map[string]any{"type": "file", "options": map[string]any{"file_path": auditFile, "mode": "0600"}})
	v.must(t, "PUT", "sys/audit/socket", map[string]any{"type": "socket", "options": map[string]any{
		"address": r.proxy.addr, "socket_type": "tcp", "write_timeout": "2s"}})
	v.must(t, "POST", "sys/mounts/"+r.tuned, map[string]any{"type": "database",
		"config": map[string]any{"audit_non_hmac_response_keys": []string{"username"}}})
	v.must(t, "POST", "sys/mounts/"+r.hashed, map[string]any{"type": "database"})
	create := `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`
	for _, m := range []string{r.tuned, r.hashed} {
		v.must(t, "POST", m+"/config/pg", map[string]any{
			"plugin_name":       "postgresql-database-plugin",
			"connection_url":    pgtest.URL(),
			"allowed_roles":     "*",
			"verify_connection": true,
			"username_template": r.userPrefix + `{{.RoleName | truncate 5}}-{{random 12}}`,
		})
		for role, ttl := range map[string]string{"app": "1h", "pfx": "1h", "frc": "1h"} {
			v.must(t, "POST", m+"/roles/"+role, map[string]any{
				"db_name": "pg", "creation_statements": []string{create}, "default_ttl": ttl, "max_ttl": "24h"})
		}
		v.must(t, "POST", m+"/roles/stuck", map[string]any{
			"db_name": "pg", "creation_statements": []string{create}, "default_ttl": "3s", "max_ttl": "3s",
			"revocation_statements": []string{`DO $$ BEGIN RAISE EXCEPTION 'e2e: this revocation always fails'; END $$;`}})
	}
	return r
}

// dropTestUsers removes what this run's Vault left in PostgreSQL: only
// users under the run's own prefix.
func dropTestUsers(t *testing.T, pool *pgxpool.Pool, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, prefix)
	if err != nil {
		t.Errorf("list test users: %v", err)
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Errorf("list test users: %v", err)
		return
	}
	for _, n := range names {
		id := pgx.Identifier{n}.Sanitize()
		_, _ = pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, n)
		_, _ = pool.Exec(ctx, "DROP OWNED BY "+id)
		if _, err := pool.Exec(ctx, "DROP ROLE IF EXISTS "+id); err != nil {
			t.Errorf("drop test user %s: %v", n, err)
		}
	}
}

// ledgerLease is a row of the lease ledger.
type ledgerLease struct {
	found     bool
	state     string
	dbUser    string
	hmac      bool
	expireAt  *time.Time
	lastEvent string
	renewedAt *time.Time
}

func (r *rig) lease(t *testing.T, leaseID string) ledgerLease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var l ledgerLease
	var user, last *string
	err := r.pool.QueryRow(ctx, `SELECT state, db_user, db_user_hmac, expire_at, last_event, renewed_at FROM `+
		pgx.Identifier{r.schema, "leases"}.Sanitize()+` WHERE lease_id = $1`, leaseID).
		Scan(&l.state, &user, &l.hmac, &l.expireAt, &last, &l.renewedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return l
	}
	if err != nil {
		t.Fatalf("read ledger: %v", err)
	}
	l.found = true
	if user != nil {
		l.dbUser = *user
	}
	if last != nil {
		l.lastEvent = *last
	}
	return l
}

func (r *rig) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET search_path TO "+pgx.Identifier{r.schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), "RESET search_path") }()
	var n int
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (r *rig) roleExists(t *testing.T, name string) bool {
	t.Helper()
	var ok bool
	if err := r.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// waitLease polls the ledger until cond holds for the lease.
func (r *rig) waitLease(t *testing.T, what, leaseID string, timeout time.Duration, cond func(ledgerLease) bool) ledgerLease {
	t.Helper()
	var l ledgerLease
	poll(t, what, timeout, func() (bool, string) {
		l = r.lease(t, leaseID)
		return cond(l), fmt.Sprintf("ledger row %+v", l)
	})
	return l
}

func near(a, b time.Time, tol time.Duration) bool {
	return math.Abs(float64(a.Sub(b))) <= float64(tol)
}

// expiryTolerance: the plugin sets VALID UNTIL to the lease's expiry plus
// 5 s, and leaseguard reads it from pg_roles.
const expiryTolerance = 8 * time.Second

// Scenario 1: issued credentials appear in the ledger with their lease id,
// user and expiry.
func scenarioIssue(t *testing.T, r *rig) {
	t.Run("tuned mount: plain user", func(t *testing.T) {
		c := r.vault.issue(t, r.tuned, "app")
		want := r.vault.expireTime(t, c.leaseID)
		l := r.waitLease(t, "the lease with its user and expiry", c.leaseID, 60*time.Second, func(l ledgerLease) bool {
			return l.found && l.expireAt != nil
		})
		if l.state != "active" || l.dbUser != c.username || l.hmac {
			t.Errorf("ledger %+v, want active lease of %s in plain", l, c.username)
		}
		if !near(*l.expireAt, want, expiryTolerance) {
			t.Errorf("ledger expiry %s, Vault's %s: %s apart", l.expireAt.UTC(), want.UTC(), l.expireAt.Sub(want))
		}
		t.Logf("expiry: ledger %s, Vault %s (%+.1fs)", l.expireAt.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339), l.expireAt.Sub(want).Seconds())
	})
	t.Run("hashed mount: user resolved through sys/audit-hash", func(t *testing.T) {
		c := r.vault.issue(t, r.hashed, "app")
		l := r.waitLease(t, "the lease of the hashed mount", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.found })
		// What the audit log carried: the user's HMAC under one of the
		// two devices (each device has its own salt).
		hashes := map[string]string{}
		for _, dev := range []string{"file", "socket"} {
			out := r.vault.must(t, "POST", "sys/audit-hash/"+dev, map[string]any{"input": c.username})
			hashes[dev] = str(out["data"].(map[string]any)["hash"])
		}
		from := "neither device"
		for dev, h := range hashes {
			if l.dbUser == h {
				from = "the " + dev + " device"
			}
		}
		t.Logf("the ledger holds the user's HMAC from %s; the devices' HMACs of it differ: %v", from, hashes["file"] != hashes["socket"])
		want := r.vault.expireTime(t, c.leaseID)
		issued := time.Now()
		// Each device has its own salt: the resolver must hash through the
		// device whose HMAC the ledger holds (here both devices feed it, and
		// both are listed).
		l = r.waitLease(t, fmt.Sprintf("the hashed user resolved, with its expiry (the ledger holds %s's HMAC; resolver devices %q)",
			from, r.auditDevices), c.leaseID, 60*time.Second, func(l ledgerLease) bool {
			return l.found && !l.hmac && l.dbUser == c.username && l.expireAt != nil
		})
		t.Logf("hashed user resolved %s after the lease reached the ledger", time.Since(issued).Round(100*time.Millisecond))
		if !near(*l.expireAt, want, expiryTolerance) {
			t.Errorf("ledger expiry %s, Vault's %s", l.expireAt.UTC(), want.UTC())
		}
	})
}

// Scenario 2: renew and the four ways to revoke move the ledger as Vault
// moved the leases.
func scenarioRenewRevoke(t *testing.T, r *rig) {
	v := r.vault
	t.Run("renew", func(t *testing.T) {
		c := v.issue(t, r.tuned, "app")
		r.waitLease(t, "the issued lease", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.found && l.expireAt != nil })
		v.must(t, "PUT", "sys/leases/renew", map[string]any{"lease_id": c.leaseID, "increment": 7200})
		want := v.expireTime(t, c.leaseID)
		r.waitLease(t, "the renewal and its new expiry", c.leaseID, 60*time.Second, func(l ledgerLease) bool {
			return l.state == "active" && l.renewedAt != nil && l.expireAt != nil && near(*l.expireAt, want, expiryTolerance)
		})
	})
	t.Run("revoke, CLI path", func(t *testing.T) {
		c := v.issue(t, r.tuned, "app")
		r.waitLease(t, "the issued lease", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.found })
		v.must(t, "PUT", "sys/leases/revoke/"+c.leaseID, nil)
		r.waitLease(t, "the revocation", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.state == "revoked" })
	})
	t.Run("revoke-prefix", func(t *testing.T) {
		a, b := v.issue(t, r.tuned, "pfx"), v.issue(t, r.tuned, "pfx")
		other := v.issue(t, r.tuned, "app")
		for _, c := range []creds{a, b, other} {
			r.waitLease(t, "the issued lease", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.found })
		}
		v.must(t, "PUT", "sys/leases/revoke-prefix/"+r.tuned+"/creds/pfx", nil)
		for _, c := range []creds{a, b} {
			r.waitLease(t, "the prefix revocation", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.state == "revoked" })
		}
		if l := r.lease(t, other.leaseID); l.state != "active" {
			t.Errorf("a lease outside the prefix is %s", l.state)
		}
	})
	t.Run("revoke-force", func(t *testing.T) {
		c := v.issue(t, r.tuned, "frc")
		r.waitLease(t, "the issued lease", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.found })
		v.must(t, "PUT", "sys/leases/revoke-force/"+r.tuned+"/creds/frc", nil)
		r.waitLease(t, "the forced revocation", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.state == "revoked" })
	})
	t.Run("revoke, API body", func(t *testing.T) {
		c := v.issue(t, r.tuned, "app")
		r.waitLease(t, "the issued lease", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.found })
		before := r.count(t, `SELECT count(*) FROM hashed_revocations`)
		v.must(t, "PUT", "sys/leases/revoke", map[string]any{"lease_id": c.leaseID})
		revoked := time.Now()
		poll(t, "the hashed revocation to be recorded", 60*time.Second, func() (bool, string) {
			n := r.count(t, `SELECT count(*) FROM hashed_revocations`)
			return n > before, fmt.Sprintf("%d rows", n)
		})
		r.waitLease(t, "the revocation by API body (only hashed_revocations names it: its lease id's HMAC must be linked)", c.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.state == "revoked" })
		t.Logf("revocation by API body in the ledger %s after Vault answered", time.Since(revoked).Round(100*time.Millisecond))
	})
}

// Scenario 3: Vault cannot revoke (its revocation statements fail);
// leaseguard drops the user after expiry plus grace, with evidence, then
// revokes the lease in Vault.
func scenarioFailedRevocation(t *testing.T, r *rig) {
	c := r.vault.issue(t, r.tuned, "stuck")
	issued := time.Now()
	var evidenceID string
	poll(t, "leaseguard to drop the expired user", 90*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var outcome string
		var ev *string
		err := r.pool.QueryRow(ctx, `SELECT outcome, evidence_id FROM `+pgx.Identifier{r.schema, "revocations"}.Sanitize()+
			` WHERE db_user = $1 AND state = 'done'`, c.username).Scan(&outcome, &ev)
		if err != nil {
			return false, err.Error()
		}
		if ev != nil {
			evidenceID = *ev
		}
		return outcome == "dropped" && ev != nil, "outcome " + outcome
	})
	t.Logf("dropped %s after issue (lease duration %s, grace 2s)", time.Since(issued).Round(100*time.Millisecond), c.duration)
	if r.roleExists(t, c.username) {
		t.Errorf("user %s still exists after the drop", c.username)
	}
	poll(t, "the drop's evidence to be relayed", 60*time.Second, func() (bool, string) {
		n := r.count(t, `SELECT count(*) FROM evidence_outbox WHERE id = $1 AND published_at IS NOT NULL`, evidenceID)
		return n == 1, "not published"
	})
	poll(t, "leaseguard to revoke the lease in Vault", 60*time.Second, func() (bool, string) {
		return !r.vault.leaseExists(t, c.leaseID), "Vault still has the lease"
	})
}

// Scenario 4: Vault revokes a lease whose user holds a session; the plugin
// drops the role and leaves the session; leaseguard terminates it, through
// the revoker.
func scenarioGhostSession(t *testing.T, r *rig) {
	c := r.vault.issue(t, r.tuned, "app")
	cfg, err := pgx.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = c.username, c.password
	cfg.RuntimeParams["application_name"] = "e2e-ghost"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", c.username, err)
	}
	defer conn.Close(context.Background())
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	// The observer must have seen the role and its session, so the ghost
	// has a known former user and lease.
	poll(t, "the observer to track the session", 60*time.Second, func() (bool, string) {
		n := r.count(t, `SELECT count(*) FROM db_sessions WHERE pid = $1 AND user_name = $2 AND ended_at IS NULL`, pid, c.username)
		return n == 1, "not tracked yet"
	})
	r.vault.must(t, "PUT", "sys/leases/revoke/"+c.leaseID, nil)
	revoked := time.Now()
	poll(t, "Vault's plugin to drop the role", 30*time.Second, func() (bool, string) {
		return !r.roleExists(t, c.username), "role still there"
	})
	poll(t, "leaseguard to terminate the ghost session", 60*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := conn.Ping(ctx)
		return err != nil, "session alive"
	})
	t.Logf("ghost session ended %s after the revocation", time.Since(revoked).Round(100*time.Millisecond))
	// The observer asked the revoker, which ended the session through a
	// signed terminate_session command, corroborated by the database.
	poll(t, "the ghost-session finding and the revoker's termination, with evidence", 30*time.Second, func() (bool, string) {
		n := r.count(t, `SELECT count(*) FROM findings f JOIN revocations v ON v.command_id = f.command_id
			WHERE f.rule = 'ghost-session' AND f.db_user = $1 AND f.evidence_id IS NOT NULL AND v.evidence_id IS NOT NULL
			AND f.finding->'facts'->>'pid' = $2 AND f.finding->'facts'->>'termination' = 'requested'
			AND v.outcome = 'terminated' AND v.result->>'sessions_left_after' = '0'`, c.username, fmt.Sprint(pid))
		return n >= 1, "no finding or termination yet"
	})
}

// Scenario 5: the socket device is unavailable for a moment while the file
// device keeps working, twice: first the network between Vault and
// leaseguard fails (the proxy is cut; leaseguard keeps running, and its
// metrics show the disconnect, the connected gauge at 0, then back at 1),
// then leaseguard itself is down. Vault keeps serving, the credentials
// issued in each gap reach the ledger from the file, and no finding names
// their users.
func scenarioSocketGap(t *testing.T, r *rig) {
	const (
		clients     = "leaseguard_ingest_audit_socket_clients"
		connections = "leaseguard_ingest_audit_socket_connections_total"
		disconnects = "leaseguard_ingest_audit_socket_disconnects_total"
		entries     = "leaseguard_ingest_audit_source_entries_total"
	)
	url := metricsURL(t, r.lgLog)
	// Vault wrote to the socket in the earlier scenarios.
	waitMetric(t, url, "Vault connected to the socket", 1, clients)
	conns, _ := metric(t, url, connections)
	closed, _ := metric(t, url, disconnects, `reason="closed"`)

	// The network fails: leaseguard notices and counts it.
	begin := time.Now()
	r.proxy.cut()
	waitMetric(t, url, "the disconnect counted", closed+1, disconnects, `reason="closed"`)
	waitMetric(t, url, "no socket device connected", 0, clients)
	t.Logf("disconnect counted and the connected gauge at 0 after %s", time.Since(begin).Round(time.Millisecond))
	fromFile, _ := metric(t, url, entries, `transport="file"`)
	fromSocket, _ := metric(t, url, entries, `transport="socket"`)
	c := r.vault.issue(t, r.tuned, "app")
	r.gapUserKnown(t, c, "the network gap's lease, from the file device")
	if v, _ := metric(t, url, entries, `transport="socket"`); v != fromSocket {
		t.Errorf("the socket source stored %v entries during the network gap, want none", v-fromSocket)
	}
	if v, _ := metric(t, url, entries, `transport="file"`); v <= fromFile {
		t.Errorf("the file source stored no entries during the network gap (%v, before %v)", v, fromFile)
	}
	// The network is back: Vault reconnects on its next write.
	r.proxy.open(t)
	after := r.vault.issue(t, r.tuned, "app")
	r.waitLease(t, "a lease issued after the network gap", after.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.found })
	waitMetric(t, url, "Vault to reconnect to the socket", 1, clients)
	waitMetric(t, url, "the reconnection counted", conns+1, connections)
	if v, _ := metric(t, url, entries, `transport="socket"`); v <= fromSocket {
		t.Errorf("the socket source stored nothing after the reconnection")
	}

	// leaseguard itself is down: Vault's socket device is refused.
	r.proxy.cut()
	r.lg.stop(t)
	begin = time.Now()
	c = r.vault.issue(t, r.tuned, "app")
	t.Logf("credentials issued while the socket device was down, in %s", time.Since(begin).Round(time.Millisecond))
	connected := countInLog(r.lgLog, "audit device connected")
	r.lg = startLeaseguard(t, r.lgBin, r.env, r.lgLog)
	r.proxy.open(t)
	r.gapUserKnown(t, c, "the gap's lease, from the file device")
	// Vault reconnects to the socket on its next write.
	after = r.vault.issue(t, r.tuned, "app")
	r.waitLease(t, "a lease issued after the gap", after.leaseID, 60*time.Second, func(l ledgerLease) bool { return l.found })
	poll(t, "Vault to reconnect to the socket", 30*time.Second, func() (bool, string) {
		return countInLog(r.lgLog, "audit device connected") > connected, "no new connection"
	})
	waitMetric(t, metricsURL(t, r.lgLog), "the restarted leaseguard to see Vault connected", 1, clients)
}

// gapUserKnown checks that credentials issued while the socket device was
// unavailable reached the ledger from the file device with their plain
// user, and that no unknown user is left behind: the observer sees the
// role, the ledger knows its lease, and no finding names it.
func (r *rig) gapUserKnown(t *testing.T, c creds, what string) {
	t.Helper()
	l := r.waitLease(t, what, c.leaseID, 60*time.Second, func(l ledgerLease) bool {
		return l.found && l.expireAt != nil
	})
	if l.dbUser != c.username || l.hmac {
		t.Errorf("ledger %+v, want the plain user %s", l, c.username)
	}
	if n := r.count(t, `SELECT count(*) FROM lease_events WHERE lease_id = $1 AND kind = 'issued' AND source->>'subject' = 'vault.audit.file'`, c.leaseID); n != 1 {
		t.Errorf("%d issue events from the file device, want 1", n)
	}
	poll(t, "the observer to see the gap's user", 60*time.Second, func() (bool, string) {
		n := r.count(t, `SELECT count(*) FROM db_roles WHERE rolname = $1 AND gone_at IS NULL`, c.username)
		return n == 1, "not observed yet"
	})
	if n := r.count(t, `SELECT count(*) FROM findings WHERE db_user = $1`, c.username); n != 0 {
		t.Errorf("%d findings name the gap's user %s", n, c.username)
	}
}
