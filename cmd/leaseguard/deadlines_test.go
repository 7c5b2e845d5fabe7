package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/target"
)

// stateStoreBehindProxy starts a fault proxy in front of the test
// PostgreSQL and returns it with the state store URL that goes through it.
// The proxy is reset (every connection cut) first thing at cleanup, so a
// pipeline wedged on it can stop.
func stateStoreBehindProxy(t *testing.T) (*faultproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start("127.0.0.1:0", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	u.Host = proxy.Addr()
	return proxy, u.String()
}

// TestPipelineResumesAfterStateStoreBlackhole: the state store goes silent
// (its connections stay open and forward nothing, as behind a hung
// PostgreSQL, a wedged pgbouncer or a firewall dropping packets) for a few
// seconds while every part runs, then comes back. Within 10 s of its return
// the work is done: the audit file's offset is saved, the leases that came
// due are dropped, the observer records again, and the outbox is drained. Before deadlines, the parts
// blocked for good on reads of connections that would never answer.
func TestPipelineResumesAfterStateStoreBlackhole(t *testing.T) {
	proxy, proxied := stateStoreBehindProxy(t)
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(auditLog, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a := newAdversary(t)
	a.start(map[string]string{
		"LEASEGUARD_DATABASE_URL": proxied,
		// The targets are reached directly: only the state store fails.
		"LEASEGUARD_TARGETS":    "direct=" + pgtest.URL(),
		"LEASEGUARD_AUDIT_FILE": auditLog,
		// Short deadlines, so the test takes seconds.
		"LEASEGUARD_PASS_TIMEOUT":                   "2s",
		"LEASEGUARD_DB_CONNECT_TIMEOUT":             "1s",
		"LEASEGUARD_DB_IDLE_IN_TRANSACTION_TIMEOUT": "3s",
		"LEASEGUARD_STATE_STATEMENT_TIMEOUT":        "3s",
		"LEASEGUARD_STATE_LOCK_TIMEOUT":             "2s",
		"LEASEGUARD_EVIDENCE_RELAY_MAX_BACKOFF":     "2s",
		"LEASEGUARD_DB_TCP_USER_TIMEOUT":            "3s",
		"LEASEGUARD_APPROVAL_SWEEP_INTERVAL":        "200ms",
		"LEASEGUARD_AUDIT_FILE_POLL":                "50ms",
		"LEASEGUARD_VAULT_LEASE_CONFIRM_RATE":       "0",
		"LEASEGUARD_OBSERVE_INTERVAL":               "300ms",
		"LEASEGUARD_ALERT_INTERVAL":                 "200ms",
		"LEASEGUARD_AUDIT_RULES_INTERVAL":           "200ms",
		"LEASEGUARD_EXPIRY_GRACE":                   "1s",
		"LEASEGUARD_DETECT_INTERVAL":                "200ms",
		"LEASEGUARD_INSTANCE":                       "blackhole-" + a.tag,
		"LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE":     "600",
		"LEASEGUARD_STATEMENT_TIMEOUT":              "3s",
		"LEASEGUARD_LOCK_TIMEOUT":                   "2s",
		"LEASEGUARD_ALERT_MAX_BACKOFF":              "2s",
		"LEASEGUARD_ROLES":                          "ingest,detectors,revoker,relay,observer,alerts",
	})
	// Cut every connection before the pipeline stops (cleanups run last
	// first), so parts wedged on the proxy can end.
	t.Cleanup(func() { proxy.SetMode(faultproxy.Reset) })

	// Through the proxy everything works: a user issued and expired is
	// dropped, and its evidence relayed.
	first, lines, err := a.sim.Issue(a.ctx, "before", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, a.admin, first.Username)
	appendLines(t, auditLog, lines)
	a.wantDropped(first.Username)
	waitFor(t, a.ctx, 30*time.Second, "the outbox drained before the fault", func() bool { return a.unpublished() == 0 })

	// A lease that comes due only after the store is back: the detector
	// must be moving by then.
	due, lines, err := a.sim.Issue(a.ctx, "due", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, a.admin, due.Username)
	appendLines(t, auditLog, lines)
	waitFor(t, a.ctx, 30*time.Second, "the lease in the ledger", func() bool {
		return a.count(`SELECT count(*) FROM $schema.leases WHERE db_user = $1`, due.Username) == 1
	})

	proxy.SetMode(faultproxy.Blackhole)
	// While the store is silent, Vault issues another credential: the file
	// source publishes it, and cannot save its offset.
	during, lines, err := a.sim.Issue(a.ctx, "during", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, a.admin, during.Username)
	appendLines(t, auditLog, lines)
	// Let the parts run into the silence: the file source publishes the
	// new entries (JetStream is fine) and blocks on the offset.
	waitFor(t, a.ctx, 10*time.Second, "the file source to publish the entries", func() bool {
		return metricAtLeast(t, a.p, `leaseguard_ingest_audit_source_entries_total{transport="file"}`, 6)
	})
	holdFault(3 * time.Second)
	proxy.SetMode(faultproxy.Pass)
	restored := time.Now()
	// A managed role nobody drops (no lease names it): the observer must
	// see it appear.
	watched := a.name("watched")
	a.role(watched, "NOLOGIN")

	size := fileSize(t, auditLog)
	within(t, a, restored, "the audit file offset saved", func() bool {
		return a.count(`SELECT count(*) FROM $schema.audit_file_offsets WHERE byte_offset = $1`, size) == 1
	})
	within(t, a, restored, "the lease that came due dropped", func() bool { return a.dropped(due.Username) })
	within(t, a, restored, "the lease issued in the silence dropped", func() bool { return a.dropped(during.Username) })
	within(t, a, restored, "the observer observing again (a role created after the restore recorded)", func() bool {
		return a.count(`SELECT count(*) FROM $schema.db_events WHERE kind = 'role' AND strpos(event::text, $1) > 0`, watched) > 0
	})
	within(t, a, restored, "the outbox drained, the drops' evidence relayed", func() bool {
		return a.unpublished() == 0 && a.relayed(due.Username) && a.relayed(during.Username)
	})
}

// within waits for cond until 10 s after restored, and reports an error
// (not fatal: every check is reported) if it does not hold by then.
func within(t *testing.T, a *adversary, restored time.Time, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if time.Since(restored) > 10*time.Second || a.ctx.Err() != nil {
			t.Errorf("not within 10 s of the restore: %s", what)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s %s after the restore", what, time.Since(restored).Round(10*time.Millisecond))
}

// unpublished counts outbox events the relay has not published.
func (a *adversary) unpublished() int {
	return a.count(`SELECT count(*) FROM $schema.evidence_outbox WHERE published_at IS NULL`)
}

// relayed reports whether evidence about user was published.
func (a *adversary) relayed(user string) bool {
	return a.count(`SELECT count(*) FROM $schema.evidence_outbox WHERE subject LIKE '%/' || $1 AND published_at IS NOT NULL`, user) > 0
}

// dropped reports whether user is gone with its outcome recorded.
func (a *adversary) dropped(user string) bool {
	exists, _ := a.login(user)
	return !exists && a.count(`SELECT count(*) FROM $schema.revocations WHERE db_user = $1 AND outcome = 'dropped'`, user) == 1
}

// holdFault keeps a fault in place for d: its length is the scenario's
// input (the parts keep running into it meanwhile), not a wait for an
// outcome.
func holdFault(d time.Duration) { <-time.After(d) }

// metricAtLeast reports whether the sample named (with its labels) on the
// pipeline's /metrics is at least want.
func metricAtLeast(t *testing.T, p *pipeline, sample string, want float64) bool {
	t.Helper()
	for _, l := range strings.Split(httpGet(t, "http://"+p.opsSrv.Addr()+"/metrics"), "\n") {
		name, value, ok := strings.Cut(l, " ")
		if !ok || name != sample {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		return err == nil && v >= want
	}
	return false
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestDeadlineSettingsRefused: a deadline that makes no sense is refused at
// start, naming its variable.
func TestDeadlineSettingsRefused(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"LEASEGUARD_PASS_TIMEOUT":                   {"LEASEGUARD_PASS_TIMEOUT": "0s"},
		"LEASEGUARD_DB_CONNECT_TIMEOUT":             {"LEASEGUARD_DB_CONNECT_TIMEOUT": "1ms"},
		"LEASEGUARD_DB_TCP_USER_TIMEOUT":            {"LEASEGUARD_DB_TCP_USER_TIMEOUT": "-1s"},
		"LEASEGUARD_STATE_STATEMENT_TIMEOUT":        {"LEASEGUARD_STATE_STATEMENT_TIMEOUT": "0s"},
		"LEASEGUARD_STATE_LOCK_TIMEOUT":             {"LEASEGUARD_STATE_LOCK_TIMEOUT": "10"},
		"LEASEGUARD_DB_IDLE_IN_TRANSACTION_TIMEOUT": {"LEASEGUARD_PASS_TIMEOUT": "30s", "LEASEGUARD_DB_IDLE_IN_TRANSACTION_TIMEOUT": "20s"},
		"LEASEGUARD_EVIDENCE_RELAY_MAX_BACKOFF":     {"LEASEGUARD_EVIDENCE_RELAY_MAX_BACKOFF": "32m"},
		"LEASEGUARD_NATS_TIMEOUT":                   {"LEASEGUARD_NATS_TIMEOUT": "0s"},
		"LEASEGUARD_NATS_PING_INTERVAL":             {"LEASEGUARD_NATS_PING_INTERVAL": "0s"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadWith(t, env)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("error %v, want one naming %s", err, name)
			}
		})
	}
	if _, err := loadWith(t); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
}

// TestPoolsCarryTheDeadlines: the state store's and the targets'
// connections carry the configured server-side timeouts.
func TestPoolsCarryTheDeadlines(t *testing.T) {
	cfg, err := loadWith(t, map[string]string{
		"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_deadlines"),
		"LEASEGUARD_STATE_STATEMENT_TIMEOUT": "21s", "LEASEGUARD_STATE_LOCK_TIMEOUT": "7s",
		"LEASEGUARD_DB_IDLE_IN_TRANSACTION_TIMEOUT": "23s", "LEASEGUARD_STATEMENT_TIMEOUT": "9s", "LEASEGUARD_LOCK_TIMEOUT": "4s",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tc := cfg.parsed().targets
	targets, err := target.Open(ctx, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer targets.Close()
	tpool, _ := targets.Pool(targets.Names()[0])
	for _, c := range []struct {
		pool *pgxpool.Pool
		want map[string]string
	}{
		{st.Pool(), map[string]string{"statement_timeout": "21s", "lock_timeout": "7s", "idle_in_transaction_session_timeout": "23s"}},
		{tpool, map[string]string{"statement_timeout": "9s", "lock_timeout": "4s", "idle_in_transaction_session_timeout": "23s"}},
	} {
		for name, want := range c.want {
			var got string
			if err := c.pool.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s = %s, want %s", name, got, want)
			}
		}
	}
}

// TestTargetCallGivesUpOnSilentTarget: a call to a target on a connection
// that went silent (a hung server, a firewall dropping packets) gives up
// once the server would have ended the statement (LEASEGUARD_STATEMENT_
// TIMEOUT) plus 2 s, whatever deadline the caller gave. The revoker's drop
// transaction runs under a 2-minute bound for its whole chunk, so before
// this cap one silent BEGIN held every due drop of that target for two
// minutes after the target came back (found by the chaos suite's
// target-blackhole case: 1m43s).
func TestTargetCallGivesUpOnSilentTarget(t *testing.T) {
	proxy, viaProxy := stateStoreBehindProxy(t)
	cfg, err := loadWith(t, map[string]string{
		"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_silent_target"),
		"LEASEGUARD_TARGETS": "silent=" + viaProxy, "LEASEGUARD_STATEMENT_TIMEOUT": "1s", "LEASEGUARD_LOCK_TIMEOUT": "500ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	targets, err := target.Open(ctx, cfg.parsed().targets)
	if err != nil {
		t.Fatal(err)
	}
	defer targets.Close()
	pool, _ := targets.Pool("silent")
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// The connection just used goes back to the pool and is handed out
	// again at once (no health ping): the BEGIN is sent into the silence.
	proxy.SetMode(faultproxy.Blackhole)
	callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	tx, err := pool.Begin(callCtx)
	took := time.Since(start)
	if err == nil {
		_ = tx.Rollback(ctx)
		t.Fatal("BEGIN on a silent target succeeded")
	}
	if took > 5*time.Second {
		t.Errorf("BEGIN on a silent target gave up after %s, want about 1s + 2s (%v)", took.Round(100*time.Millisecond), err)
	}
	proxy.SetMode(faultproxy.Reset) // let the pool close
}
