package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/ops/progress"
)

func TestServer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "leaseguard_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Inc()
	s, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var dbErr error
	s.AddCheck("database", func(context.Context) error { return dbErr })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "leaseguard_test_total 1") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "database: ok") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	dbErr = errors.New("down")
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "database: down") {
		t.Errorf("/readyz not ready = %d %q", code, body)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal("second shutdown:", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{Addr: "nope", Gatherer: prometheus.NewRegistry()}); err == nil {
		t.Error("bad address accepted")
	}
}

// clock is a time the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestWorkerHealth: /readyz fails naming a worker that has had work
// without progress for the stall timeout, /livez and /healthz one that has
// held a unit for the wedge timeout; idle workers never; the metrics say
// the same.
func TestWorkerHealth(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	tr := progress.NewTracker(c.now)
	reg := prometheus.NewRegistry()
	s, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg, Workers: tr, StallTimeout: 2 * time.Minute, WedgeTimeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(s.WorkerCollector())
	s.AddCheck("state_store", func(context.Context) error { return nil })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	expect := func(path string, code int, parts ...string) {
		t.Helper()
		got, body := get(path)
		if got != code {
			t.Errorf("%s = %d, want %d:\n%s", path, got, code, body)
		}
		for _, p := range parts {
			if !strings.Contains(body, p) {
				t.Errorf("%s does not say %q:\n%s", path, p, body)
			}
		}
	}
	detector, relay := tr.Worker("detectors.expiry"), tr.Worker("evidence.relay")
	c.advance(time.Hour) // idle for an hour: fine
	expect("/readyz", 200, "state_store: ok\n", "worker detectors.expiry: ok, idle\n", "worker evidence.relay: ok, idle\n")
	expect("/livez", 200, "worker detectors.expiry: ok\n")

	detector.Start()
	relay.Start()
	c.advance(119 * time.Second)
	relay.Finish(nil)
	expect("/readyz", 200, "worker detectors.expiry: ok, busy, no progress for 1m59s\n")
	c.advance(time.Second)
	expect("/readyz", 503, "state_store: ok\n", "worker detectors.expiry: stalled: work pending since 2025-01-01T01:00:00Z, no progress for 2m0s\n",
		"worker evidence.relay: ok, idle\n")
	expect("/livez", 200)
	metrics := func() string { _, b := get("/metrics"); return b }
	for _, want := range []string{
		`leaseguard_worker_stalled_seconds{worker="detectors.expiry"} 120`,
		`leaseguard_worker_stalled_seconds{worker="evidence.relay"} 0`,
		`leaseguard_worker_busy_since_timestamp_seconds{worker="detectors.expiry"} 1.7356932e+09`,
		`leaseguard_worker_busy_since_timestamp_seconds{worker="evidence.relay"} 0`,
		`leaseguard_worker_last_progress_timestamp_seconds{worker="detectors.expiry"} 1.7356896e+09`,
		`leaseguard_worker_last_progress_timestamp_seconds{worker="evidence.relay"} 1.735693319e+09`,
		`leaseguard_worker_progress_total{worker="evidence.relay"} 1`,
	} {
		if m := metrics(); !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	c.advance(7*time.Minute + 59*time.Second)
	expect("/livez", 200, "worker detectors.expiry: ok\n")
	c.advance(time.Second)
	expect("/livez", 503, "worker detectors.expiry: wedged: one unit in hand for 10m0s without progress\n", "worker evidence.relay: ok\n")
	expect("/healthz", 503, "worker detectors.expiry: wedged")

	detector.Finish(nil)
	expect("/readyz", 200, "worker detectors.expiry: ok, idle\n")
	expect("/livez", 200)
}

// A worker whose passes keep failing is not ready but alive: a restart
// would not bring its dependency back.
func TestFailingWorkerIsNotWedged(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	tr := progress.NewTracker(c.now)
	s, err := New(Config{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Workers: tr, StallTimeout: time.Minute, WedgeTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	w := tr.Worker("vault.reconciler")
	for range 60 {
		w.Start()
		c.advance(time.Second)
		w.Finish(errors.New("vault sealed"))
		c.advance(9 * time.Second)
	}
	rec := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "worker vault.reconciler: stalled") {
		t.Errorf("/readyz = %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
	if rec.Code != 200 {
		t.Errorf("/livez = %d %q", rec.Code, rec.Body.String())
	}
}

func TestConfigValidateTimeouts(t *testing.T) {
	t.Parallel()
	tr := progress.NewTracker(nil)
	for _, c := range []Config{
		{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Workers: tr},
		{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Workers: tr, StallTimeout: time.Minute, WedgeTimeout: time.Second},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}
