package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// rig is a migrated state store in a schema of its own, a clock that tests
// can move forward, and a log buffer.
type rig struct {
	t      *testing.T
	st     *store.Store
	offset atomic.Int64
	logs   *syncBuffer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	schema := pgtest.Schema(t, "alert")
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: schema, MaxConns: 12})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return &rig{t: t, st: st, logs: &syncBuffer{}}
}

// now is the rig's clock: real time plus whatever the test moved it by.
func (r *rig) now() time.Time { return time.Now().Add(time.Duration(r.offset.Load())) }

// advance moves the rig's clock forward.
func (r *rig) advance(d time.Duration) { r.offset.Add(int64(d)) }

// fastConfig is a configuration for tests: short intervals and backoffs.
func fastConfig() Config {
	return Config{
		Interval:           20 * time.Millisecond,
		MaxBackoff:         200 * time.Millisecond,
		Timeout:            3 * time.Second,
		AlertmanagerResend: time.Second,
	}
}

// start runs a dispatcher over cfg until the test ends.
func (r *rig) start(cfg Config) *Dispatcher {
	r.t.Helper()
	x, err := New(cfg, Deps{
		Pool:       r.st.Pool(),
		Logger:     slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: prometheus.NewRegistry(),
		Clock:      r.now,
	})
	if err != nil {
		r.t.Fatalf("new dispatcher: %v", err)
	}
	r.run(x)
	return x
}

func (r *rig) run(x *Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				r.t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			r.t.Errorf("dispatcher did not stop")
		}
	})
}

// finding is a finding of rule about user in database, detected now.
func (r *rig) finding(rule string, sev schemas.Severity, database, user string) schemas.Finding {
	id := pgtest.Suffix()
	return schemas.Finding{
		Type: schemas.FindingType, ID: "finding-" + id, Rule: rule, Severity: sev,
		Mode: schemas.ModeEnforce, InScope: true, DetectedAt: r.now().UTC(),
		Database: database, DBUser: user, LeaseID: "database/creds/app/" + id,
		Summary: "lease of " + user + " expired and no revocation was seen",
		Facts:   map[string]any{"expire_source": "pg_valid_until", "last_event": "issue"},
		Action:  schemas.ActionRevocationRequested,
	}
}

// insert records f as the detectors do.
func (r *rig) insert(f schemas.Finding) {
	r.t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, r.st.Pool(), func(tx pgx.Tx) error {
		_, err := store.InsertFinding(ctx, tx, f, "")
		return err
	})
	if err != nil {
		r.t.Fatalf("insert finding: %v", err)
	}
}

// revoked records a finished revocation of user with outcome.
func (r *rig) revoked(database, user string, outcome schemas.Outcome) {
	r.t.Helper()
	_, err := r.st.Pool().Exec(context.Background(), `
		INSERT INTO revocations (command_id, database, db_user, rule, state, outcome, command, finished_at)
		VALUES ($1, $2, $3, 'lease-expired-not-revoked', 'done', $4, '{}'::jsonb, $5)`,
		"cmd-"+pgtest.Suffix(), database, user, string(outcome), r.now())
	if err != nil {
		r.t.Fatalf("insert revocation: %v", err)
	}
}

// alertRow is what the alerts table says of the alert of a dedup key.
type alertRow struct {
	id       int64
	findings int
	resolved bool
	reason   string
}

func (r *rig) alerts(key string) []alertRow {
	r.t.Helper()
	rows, err := r.st.Pool().Query(context.Background(), `
		SELECT id, findings, resolved_at IS NOT NULL, coalesce(resolve_reason, '') FROM alerts
		WHERE dedup_key = $1 ORDER BY id`, key)
	if err != nil {
		r.t.Fatalf("read alerts: %v", err)
	}
	var out []alertRow
	var a alertRow
	if _, err := pgx.ForEachRow(rows, []any{&a.id, &a.findings, &a.resolved, &a.reason}, func() error {
		out = append(out, a)
		return nil
	}); err != nil {
		r.t.Fatalf("read alerts: %v", err)
	}
	return out
}

// intakePassed waits until an intake pass that began after the call has
// committed: what that pass would have raised or resolved (with the clock
// as it is now) is in the alerts table. It takes in two sentinel findings,
// one after the other, below any alert threshold: the pass that takes the
// second began after the one that took the first had ended, and so after
// the call.
func (r *rig) intakePassed() {
	r.t.Helper()
	for range 2 {
		f := r.finding("sentinel", schemas.SeverityInfo, "appdb", "v-sentinel-"+pgtest.Suffix())
		f.Mode, f.Action = schemas.ModeObserve, schemas.ActionNone
		r.insert(f)
		waitFor(r.t, 10*time.Second, "an intake pass", func() bool {
			var seen bool
			err := r.st.Pool().QueryRow(context.Background(), `SELECT alert_seen_at IS NOT NULL FROM findings WHERE id = $1`, f.ID).Scan(&seen)
			return err == nil && seen
		})
	}
}

// quiet waits until the dispatchers have done everything there is to do:
// an intake pass began after the call and ended, every delivery is
// acknowledged by its sink, and no delivery pass is under way (each sink's
// lock row is free). Whatever they will send was sent by then.
func (r *rig) quiet() {
	r.t.Helper()
	r.intakePassed()
	ctx := context.Background()
	waitFor(r.t, 10*time.Second, "every delivery acknowledged", func() bool {
		var pending int
		err := r.st.Pool().QueryRow(ctx, `
			SELECT count(*) FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
			WHERE d.delivered <> 'resolve' AND (d.delivered = 'none' OR a.resolved_at IS NOT NULL)`).Scan(&pending)
		return err == nil && pending == 0
	})
	// A pass holds its sink's row from before it reads the deliveries until
	// it recorded what it sent: taking every row waits for passes under way.
	err := pgx.BeginFunc(ctx, r.st.Pool(), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT sink FROM alert_sinks FOR NO KEY UPDATE`)
		return err
	})
	if err != nil {
		r.t.Fatalf("wait for delivery passes: %v", err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// receiver is a local HTTP server standing in for PagerDuty or Slack: it
// keeps the JSON documents it accepted and answers with the status its
// status function gives (default 202), after block (if set) lets it.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	accepted []map[string]any
	paths    []string
	requests int
	status   func(n int) int
	block    chan struct{}
	body     func(r *http.Request) string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	block := rc.block
	rc.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	raw, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.requests++
	code := http.StatusAccepted
	if rc.status != nil {
		code = rc.status(rc.requests)
	}
	body := `{"status":"success"}`
	if rc.body != nil {
		body = rc.body(r)
	}
	if code/100 == 2 {
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			code, body = http.StatusBadRequest, "not a JSON object"
		} else {
			rc.accepted = append(rc.accepted, doc)
			rc.paths = append(rc.paths, r.URL.Path)
		}
	}
	rc.mu.Unlock()
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// docs returns the documents accepted so far.
func (rc *receiver) docs() []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]map[string]any(nil), rc.accepted...)
}

// pathsSeen returns the request paths of the accepted documents.
func (rc *receiver) pathsSeen() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.paths...)
}

func (rc *receiver) setBody(f func(r *http.Request) string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.body = f
}

func (rc *receiver) setBlock(ch chan struct{}) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.block = ch
}

func (rc *receiver) setStatus(f func(n int) int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.status = f
}

// metricValue reads a counter or gauge of the dispatcher's metrics.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("metric is neither counter nor gauge")
	return 0
}

// str walks a decoded JSON document: str(doc, "payload", "severity").
func str(doc map[string]any, path ...string) string {
	var cur any = doc
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}
