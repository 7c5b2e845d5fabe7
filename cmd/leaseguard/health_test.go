package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
)

// withParam adds a query parameter to a connection URL.
func withParam(u, param string) string {
	if strings.Contains(u, "?") {
		return u + "&" + param
	}
	return u + "?" + param
}

// probe GETs one of the ops server's paths.
func probe(t *testing.T, p *pipeline, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.opsSrv.Addr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// workerGauge reads one worker's series of a metric from the registry.
func workerGauge(t *testing.T, reg prometheus.Gatherer, metric, worker string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "worker" || l.GetValue() != worker {
					continue
				}
				switch {
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue(), true
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// stayReady polls /readyz and /healthz (/livez) for d and fails on any answer but 200.
func stayReady(t *testing.T, ctx context.Context, p *pipeline, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, path := range []string{"/readyz", "/healthz"} {
			if code, body := probe(t, p, path); code != http.StatusOK {
				t.Fatalf("%s = %d while idle:\n%s", path, code, body)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestHealthSeesAStalledWorker wedges the expiry detector on a state store
// that does not answer (the test holds an exclusive lock on the ledger, so
// the detector's statement blocks) and checks what the ops server says:
// idle, the pipeline stays ready past the stall timeout; wedged, /readyz
// fails naming the detector once the stall timeout has passed, and /livez
// after the wedge timeout; released, both recover, and the worker metrics
// show it. Then the relay, the alert intake and the approval sweep are
// wedged the same way, one after the other.
func TestHealthSeesAStalledWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const stall, wedge = 2 * time.Second, 5 * time.Second
	admin := pgtest.Pool(t)
	schema := pgtest.Schema(t, "lg_health")
	// Enough connections that the blocked ones do not starve the checks.
	t.Setenv("LEASEGUARD_DATABASE_URL", withParam(pgtest.URL(), "pool_max_conns=16"))
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	t.Setenv("LEASEGUARD_ROLES", "detectors,relay,alerts")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_DETECT_INTERVAL", "100ms")
	t.Setenv("LEASEGUARD_ALERT_INTERVAL", "100ms")
	t.Setenv("LEASEGUARD_APPROVAL_SWEEP_INTERVAL", "100ms")
	t.Setenv("LEASEGUARD_STALL_TIMEOUT", stall.String())
	t.Setenv("LEASEGUARD_WEDGE_TIMEOUT", wedge.String())
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	const worker = "detectors.expiry"
	waitFor(t, ctx, 10*time.Second, "/readyz ready", func() bool {
		code, _ := probe(t, p, "/readyz")
		return code == http.StatusOK
	})

	// Idle: nothing to do is not stuck, however long it lasts.
	stayReady(t, ctx, p, 3*stall)
	if n, _ := workerGauge(t, p.registry, "leaseguard_worker_progress_total", worker); n == 0 {
		t.Errorf("leaseguard_worker_progress_total{worker=%q} = 0 after the idle passes", worker)
	}

	// Wedged: the detector's pass blocks on the locked ledger.
	// The unit the wedged pass holds may have been taken up to one detect
	// interval (100 ms) before the lock: the probes count from that unit,
	// so the earliest moment they may fail counts from there too.
	locked := time.Now().Add(-100 * time.Millisecond)
	release := lockTable(t, ctx, admin, schema, "leases")
	var body string
	waitFor(t, ctx, stall+10*time.Second, "/readyz naming the stalled detector", func() bool {
		var code int
		code, body = probe(t, p, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "worker "+worker+": stalled")
	})
	t.Logf("/readyz while wedged:\n%s", body)
	// A pass that had read the ledger before the lock may still finish
	// after it; from the moment /readyz says stalled, nothing may move.
	stalledAt, _ := workerGauge(t, p.registry, "leaseguard_worker_last_progress_timestamp_seconds", worker)
	if took := time.Since(locked); took < stall {
		t.Errorf("/readyz failed %s after the wedge, before the stall timeout %s:\n%s", took, stall, body)
	}
	if !strings.Contains(body, "state_store: ok") {
		t.Errorf("the dependency checks are gone from /readyz:\n%s", body)
	}
	if s, _ := workerGauge(t, p.registry, "leaseguard_worker_stalled_seconds", worker); s < stall.Seconds() {
		t.Errorf("leaseguard_worker_stalled_seconds{worker=%q} = %v while /readyz says stalled", worker, s)
	}
	if code, body := probe(t, p, "/healthz"); code != http.StatusOK && time.Since(locked) < wedge {
		t.Errorf("/healthz = %d before the wedge timeout:\n%s", code, body)
	}
	waitFor(t, ctx, wedge+10*time.Second, "/livez naming the wedged detector", func() bool {
		var code int
		code, body = probe(t, p, "/livez")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "worker "+worker+": wedged")
	})
	t.Logf("/livez while wedged:\n%s", body)
	if took := time.Since(locked); took < wedge {
		t.Errorf("/livez failed %s after the wedge, before the wedge timeout %s:\n%s", took, wedge, body)
	}
	stuckAt, _ := workerGauge(t, p.registry, "leaseguard_worker_last_progress_timestamp_seconds", worker)

	// Released: the detector carries on and both probes recover. The time
	// is taken before the release: the detector, let go, can record its
	// progress before release returns (CI saw it 36 ms ahead of a time
	// taken after).
	released := time.Now()
	release()
	waitFor(t, ctx, 10*time.Second, "/readyz and /livez ready again", func() bool {
		r, _ := probe(t, p, "/readyz")
		l, _ := probe(t, p, "/livez")
		return r == http.StatusOK && l == http.StatusOK
	})
	last, _ := workerGauge(t, p.registry, "leaseguard_worker_last_progress_timestamp_seconds", worker)
	if stuckAt != stalledAt || last < float64(released.UnixNano())/1e9 {
		t.Errorf("last progress: %v when /readyz said stalled, %v when /livez said wedged, %v after the release at %v",
			stalledAt, stuckAt, last, released.Unix())
	}
	if s, _ := workerGauge(t, p.registry, "leaseguard_worker_stalled_seconds", worker); s >= stall.Seconds() {
		t.Errorf("leaseguard_worker_stalled_seconds{worker=%q} = %v after the release", worker, s)
	}

	// The other periodic workers of these parts, each blocked on its table.
	for table, worker := range map[string]string{
		"evidence_relay_lock": "evidence.relay", "alert_intake_lock": "alerts.intake", "pending_revocations": "approvals.sweep",
	} {
		release := lockTable(t, ctx, admin, schema, table)
		waitFor(t, ctx, stall+10*time.Second, "/readyz naming "+worker, func() bool {
			code, body := probe(t, p, "/readyz")
			return code == http.StatusServiceUnavailable && strings.Contains(body, "worker "+worker+": stalled")
		})
		release()
		waitFor(t, ctx, 10*time.Second, "/readyz ready again after "+worker, func() bool {
			code, _ := probe(t, p, "/readyz")
			return code == http.StatusOK
		})
	}
}

// lockTable holds an exclusive lock on a state-store table, so that every
// statement on it blocks, until release (or the test's end).
func lockTable(t *testing.T, ctx context.Context, admin *pgxpool.Pool, schema, table string) (release func()) {
	t.Helper()
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	release = func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }
	t.Cleanup(release)
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{schema, table}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return release
}

// TestEveryWorkerReportsProgress runs every part leaseguard has (the
// ingest sources NATS, Kafka, the audit file and socket; the detectors;
// the revoker; the relay; the observer; the alerts with a sink; the
// approval sweep; the Vault link loops), gives each stream worker one unit
// of work, and checks that every worker is registered, reports progress
// and ends idle; idle, the pipeline stays ready past the stall timeout.
func TestEveryWorkerReportsProgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const stall = 2 * time.Second
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(1, "vault.audit", "vault.leases", "leaseguard.deadletter"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	vault := vaulttest.New(t, nil)
	vault.AddToken("hvs.health", vaulttest.Token{TTL: time.Hour, CreationTTL: time.Hour, Renewable: true, Sudo: true})
	vault.AddAuditDevice("file", []byte("salt"))
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer am.Close()
	dir := t.TempDir()
	auditFile, socket := filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit.sock")
	if err := os.WriteFile(auditFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_workers"),
		"LEASEGUARD_DATA_DIR": t.TempDir(), "LEASEGUARD_METRICS_ADDR": "127.0.0.1:0",
		"LEASEGUARD_ROLES": "ingest,detectors,revoker,relay,observer,alerts",
		// The observer and its rules touch no role of the shared server.
		"LEASEGUARD_MANAGED_ROLE_PATTERN": "^v-health-" + pgtest.Suffix() + "-",
		"LEASEGUARD_KAFKA_BROKERS":        strings.Join(cluster.ListenAddrs(), ","),
		"LEASEGUARD_AUDIT_FILE":           auditFile, "LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:" + socket, "LEASEGUARD_AUDIT_SOCKET_MODE": "0600",
		"LEASEGUARD_VAULT_ADDR": vault.URL, "LEASEGUARD_VAULT_TOKEN": "hvs.health", "LEASEGUARD_VAULT_AUDIT_DEVICE": "file",
		"LEASEGUARD_ALERTMANAGER_URLS": am.URL,
		"LEASEGUARD_DETECT_INTERVAL":   "200ms", "LEASEGUARD_OBSERVE_INTERVAL": "200ms", "LEASEGUARD_AUDIT_RULES_INTERVAL": "200ms",
		"LEASEGUARD_ALERT_INTERVAL": "200ms", "LEASEGUARD_APPROVAL_SWEEP_INTERVAL": "200ms",
		"LEASEGUARD_STALL_TIMEOUT": stall.String(), "LEASEGUARD_WEDGE_TIMEOUT": (3 * stall).String(),
	} {
		t.Setenv(k, v)
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()

	// One unit of work for each stream worker; the periodic ones work on
	// their own.
	entry := []byte(`{"type":"request","time":"2025-01-01T00:00:00Z","request":{"id":"health","operation":"read","path":"sys/health"}}`)
	if _, err := p.js.Publish(ctx, "vault.audit.health", entry); err != nil {
		t.Fatal(err)
	}
	kw := &kafka.Writer{Addr: kafka.TCP(cluster.ListenAddrs()...), Topic: "vault.audit", RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer kw.Close()
	if err := kw.WriteMessages(ctx, kafka.Message{Value: entry}); err != nil {
		t.Fatal(err)
	}
	appendLines(t, auditFile, [][]byte{entry})
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(append(entry, '\n')); err != nil {
		t.Fatal(err)
	}
	if _, err := p.js.Publish(ctx, cfg.RevocationSubject, []byte(`{"not":"a command"}`)); err != nil {
		t.Fatal(err)
	}

	want := []string{
		"alerts.intake", "alerts." + onlySink(t, p), "approvals.sweep", "detectors.audit_rules", "detectors.expiry",
		"evidence.relay", "ingest.audit_file", "ingest.audit_socket", "ingest.expiry_resolver", "ingest.kafka", "ingest.nats",
		"observer." + cfg.targetName(), "revoker", "vault.hmac_resolver", "vault.lease_confirmer", "vault.reconciler",
		"vault.revocation_linker", "vault.token_keeper",
	}
	sort.Strings(want)
	var got []string
	for _, s := range p.progress.Status() {
		got = append(got, s.Worker)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("workers:\n got %v\nwant %v", got, want)
	}
	silent := want
	waitFor(t, ctx, 60*time.Second, "progress from every worker", func() bool {
		var still []string
		for _, w := range silent {
			n, _ := workerGauge(t, p.registry, "leaseguard_worker_progress_total", w)
			last, _ := workerGauge(t, p.registry, "leaseguard_worker_last_progress_timestamp_seconds", w)
			if n == 0 || last < float64(started.UnixNano())/1e9 {
				still = append(still, w)
			}
		}
		if len(still) < len(silent) {
			t.Logf("no progress yet from %v", still)
		}
		silent = still
		return len(silent) == 0
	})
	for _, s := range p.progress.Status() {
		if s.Units == 0 || s.Stalled >= stall {
			t.Errorf("worker %s: %+v", s.Worker, s)
		}
	}
	stayReady(t, ctx, p, 3*stall)
	_, body := probe(t, p, "/readyz")
	for _, w := range want {
		if !strings.Contains(body, "worker "+w+": ok") {
			t.Errorf("/readyz does not say %s is ok:\n%s", w, body)
		}
	}
}

// onlySink names the one alert sink configured (the Alertmanager's).
func onlySink(t *testing.T, p *pipeline) string {
	t.Helper()
	var sinks []string
	for _, s := range p.progress.Status() {
		if name, ok := strings.CutPrefix(s.Worker, "alerts."); ok && name != "intake" {
			sinks = append(sinks, name)
		}
	}
	if len(sinks) != 1 {
		t.Fatalf("alert sinks: %v", sinks)
	}
	return sinks[0]
}

// A stall or wedge timeout that cannot work is refused at start, naming
// its variable.
func TestHealthTimeoutsValidate(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		setting string // "" = accepted
	}{
		{map[string]string{}, ""},
		{map[string]string{"LEASEGUARD_STALL_TIMEOUT": "30s", "LEASEGUARD_WEDGE_TIMEOUT": "30s"}, ""},
		{map[string]string{"LEASEGUARD_STALL_TIMEOUT": "500ms"}, "LEASEGUARD_STALL_TIMEOUT"},
		{map[string]string{"LEASEGUARD_STALL_TIMEOUT": "0s"}, "LEASEGUARD_STALL_TIMEOUT"},
		{map[string]string{"LEASEGUARD_STALL_TIMEOUT": "5m", "LEASEGUARD_WEDGE_TIMEOUT": "4m"}, "LEASEGUARD_WEDGE_TIMEOUT"},
		{map[string]string{"LEASEGUARD_WEDGE_TIMEOUT": "10 minutes"}, "LEASEGUARD_WEDGE_TIMEOUT"},
	} {
		cfg, err := loadWith(t, tc.env)
		if tc.setting == "" {
			if err != nil {
				t.Errorf("%v refused: %v", tc.env, err)
			} else if cfg.StallTimeout <= 0 || cfg.WedgeTimeout < cfg.StallTimeout {
				t.Errorf("%v: stall %s, wedge %s", tc.env, cfg.StallTimeout, cfg.WedgeTimeout)
			}
			continue
		}
		var ce configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("%v: error %v, want a configuration error naming %s", tc.env, err, tc.setting)
		}
	}
}
