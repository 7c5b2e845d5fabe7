package evidence

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/ops/progress"
)

type countMetrics struct {
	published, failed atomic.Int64
}

func (m *countMetrics) Published(Event)            { m.published.Add(1) }
func (m *countMetrics) PublishFailed(Event, error) { m.failed.Add(1) }

func fastRelayConfig(m RelayMetrics) RelayConfig {
	return RelayConfig{
		Batch:          25,
		Interval:       10 * time.Millisecond,
		PublishTimeout: 500 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		Metrics:        m,
	}
}

func newRelay(t testing.TB, pool *pgxpool.Pool, js jetstream.JetStream, cfg RelayConfig) *Relay {
	t.Helper()
	pub, err := NewJetStreamPublisher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRelay(pool, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// streamMessages returns every message of the evidence stream, in order.
func streamMessages(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get stream message %d: %v", seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// checkStream asserts that the stream holds the chain 1..want, each event
// once, in order, in structured mode with the event id as message id.
func checkStream(t testing.TB, js jetstream.JetStream, want int) {
	t.Helper()
	msgs := streamMessages(t, js)
	if len(msgs) != want {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), want)
	}
	var file bytes.Buffer
	for i, m := range msgs {
		ev, err := decodeEvent(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.ChainSeq != int64(i+1) {
			t.Fatalf("stream message %d is chain seq %d", i+1, ev.ChainSeq)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != ev.ID {
			t.Errorf("message %d: Nats-Msg-Id %q, want the event id %s", i+1, got, ev.ID)
		}
		if got := m.Header.Get("Content-Type"); got != ContentType {
			t.Errorf("message %d: Content-Type %q", i+1, got)
		}
		file.Write(m.Data)
		file.WriteByte('\n')
	}
	rep, err := VerifyFile(&file, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != want || rep.Duplicates != 0 {
		t.Fatalf("verify stream contents: %+v %v", rep, err)
	}
}

func unpublished(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM evidence_outbox WHERE published_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelayPublishes(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	var m countMetrics
	cfg := fastRelayConfig(&m)
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	for _, ev := range sampleEvents(t, 30) {
		appendOne(t, pool, ev)
	}
	r := newRelay(t, pool, js, cfg)
	if n, err := r.PublishPending(ctx); err != nil || n != 25 {
		t.Fatalf("first pass: %d, %v; want a full batch of 25", n, err)
	}
	if n, err := r.PublishPending(ctx); err != nil || n != 5 {
		t.Fatalf("second pass: %d, %v", n, err)
	}
	if n, err := r.PublishPending(ctx); err != nil || n != 0 {
		t.Fatalf("third pass: %d, %v", n, err)
	}
	checkStream(t, js, 30)
	if unpublished(t, pool) != 0 || m.published.Load() != 30 || m.failed.Load() != 0 {
		t.Errorf("unpublished %d, metrics %d/%d", unpublished(t, pool), m.published.Load(), m.failed.Load())
	}
}

func TestEnsureStream(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	cfg := RelayConfig{}
	for range 2 {
		s, err := EnsureStream(ctx, js, cfg)
		if err != nil {
			t.Fatal(err)
		}
		sc := s.CachedInfo().Config
		if sc.Duplicates != DefaultDuplicateWindow || !sc.DenyDelete || !sc.DenyPurge ||
			len(sc.Subjects) != 1 || sc.Subjects[0] != DefaultSubject {
			t.Fatalf("stream config = %+v", sc)
		}
	}
	// An existing stream with a shorter window and another subject keeps
	// its subject and gets the window raised.
	other := RelayConfig{Stream: "OTHER", Subject: "other.evidence"}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"x.y"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	s, err := EnsureStream(ctx, js, other)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	if sc.Duplicates != DefaultDuplicateWindow || len(sc.Subjects) != 2 || !sc.DenyPurge {
		t.Errorf("updated stream config = %+v", sc)
	}
}

// A relay that published and died before recording it publishes again; the
// stream keeps each event once.
func TestRelayRepublishAfterCrash(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	var m countMetrics
	cfg := fastRelayConfig(&m)
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	for _, ev := range sampleEvents(t, 8) {
		appendOne(t, pool, ev)
	}
	r := newRelay(t, pool, js, cfg)

	// The publish step, then a crash: the marks are never committed.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.publishBatch(ctx, tx); err != nil || n != 8 {
		t.Fatalf("publish step: %d, %v", n, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := unpublished(t, pool); got != 8 {
		t.Fatalf("%d unpublished after the crash, want 8", got)
	}
	checkStream(t, js, 8)

	// The restarted relay publishes all again.
	if n, err := r.PublishPending(ctx); err != nil || n != 8 {
		t.Fatalf("after restart: %d, %v", n, err)
	}
	checkStream(t, js, 8)
	if got := unpublished(t, pool); got != 0 {
		t.Errorf("%d unpublished", got)
	}
}

// With NATS down, evidence waits in the outbox; when NATS is back, all of it
// is delivered, once, in order.
func TestRelayNATSDownThenUp(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	ctx := context.Background()
	storeDir := t.TempDir()

	// A listener, so that the server can come back at the same address.
	srv := natstest.StartWith(t, natstest.Config{StoreDir: storeDir, Listen: "127.0.0.1:0"})
	creds := srv.Creds
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), srv.UserOption(t, bus.UserLeaseguard))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var m countMetrics
	cfg := fastRelayConfig(&m)
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	events := sampleEvents(t, 20)
	for _, ev := range events[:5] {
		appendOne(t, pool, ev)
	}
	r := newRelay(t, pool, js, cfg)
	if n, err := r.PublishPending(ctx); err != nil || n != 5 {
		t.Fatalf("before the outage: %d, %v", n, err)
	}

	srv.Shutdown()

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	for _, ev := range events[5:] {
		appendOne(t, pool, ev)
	}
	waitFor(t, "failed publishes while NATS is down", 10*time.Second, func() bool { return m.failed.Load() >= 3 })
	if got := unpublished(t, pool); got != 15 {
		t.Fatalf("%d unpublished while NATS is down, want 15", got)
	}

	natstest.StartWith(t, natstest.Config{StoreDir: storeDir, Listen: u.Host, Credentials: creds})
	waitFor(t, "the outbox to drain", 30*time.Second, func() bool { return unpublished(t, pool) == 0 })
	checkStream(t, js, 20)
	var attempts int
	if err := pool.QueryRow(ctx, `SELECT max(publish_attempts) FROM evidence_outbox`).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts < 2 {
		t.Errorf("max publish_attempts %d; the outage left no trace", attempts)
	}
}

// Relays running in parallel, while events are appended, publish the chain
// in order, each event once.
func TestRelaysInParallel(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	srv := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, js := srv.Connect(t)
	var m countMetrics
	cfg := fastRelayConfig(&m)
	cfg.Batch = 4
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 {
		_, rjs := srv.Connect(t)
		r := newRelay(t, pool, rjs, cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				t.Errorf("run: %v", err)
			}
		}()
	}
	const n = 60
	for i, ev := range sampleEvents(t, n) {
		appendOne(t, pool, ev)
		if i%7 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(t, "the outbox to drain", 30*time.Second, func() bool { return unpublished(t, pool) == 0 })
	cancel()
	wg.Wait()
	checkStream(t, js, n)
	if got := m.published.Load(); got != n {
		t.Errorf("published metric %d, want %d", got, n)
	}
}

// A row changed in the outbox is not published, nor is anything after it.
func TestRelayHoldsBackTamperedRow(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	var m countMetrics
	cfg := fastRelayConfig(&m)
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	for _, ev := range sampleEvents(t, 5) {
		appendOne(t, pool, ev)
	}
	if _, err := pool.Exec(ctx, `UPDATE evidence_outbox SET event = convert_to(replace(convert_from(event, 'UTF8'), '"status_id":1', '"status_id":2'), 'UTF8') WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	r := newRelay(t, pool, js, cfg)
	n, err := r.PublishPending(ctx)
	if !errors.Is(err, ErrTampered) || n != 2 {
		t.Fatalf("pass: %d, %v; want 2 and ErrTampered", n, err)
	}
	checkStream(t, js, 2)
	var lastErr string
	if err := pool.QueryRow(ctx, `SELECT last_error FROM evidence_outbox WHERE seq = 3`).Scan(&lastErr); err != nil || lastErr == "" {
		t.Errorf("last_error of seq 3 = %q, %v", lastErr, err)
	}
	if m.failed.Load() != 1 {
		t.Errorf("failed metric %d", m.failed.Load())
	}
}

func TestRelayConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (RelayConfig{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := map[string]RelayConfig{
		"wildcard subject":    {Subject: "leaseguard.>"},
		"dotted stream":       {Stream: "a.b"},
		"negative batch":      {Batch: -1},
		"window too short":    {DuplicateWindow: 10 * time.Second},
		"store timeout":       {StoreTimeout: -time.Second},
		"backoff < interval":  {Interval: time.Minute, MaxBackoff: time.Second},
		"empty subject token": {Subject: "leaseguard..evidence"},
	}
	for name, c := range bad {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	if got := truncate("ab€", 4); got != "ab" {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("abc", 4); got != "abc" {
		t.Errorf("truncate = %q", got)
	}
}

// gatedPublisher accepts an event each time the test lets it.
type gatedPublisher struct {
	gate chan struct{}
	sent atomic.Int64
}

func (p *gatedPublisher) Publish(ctx context.Context, _ Event, _ []byte) error {
	select {
	case <-p.gate:
		p.sent.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A pass over a slow bus that still accepts events is progress event by
// event: the relay is not reported stalled while it works through a
// batch, only when the bus stops answering.
func TestRelayReportsEachEventPublished(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	for _, ev := range sampleEvents(t, 3) {
		appendOne(t, pool, ev)
	}
	tracker := progress.NewTracker(nil)
	cfg := fastRelayConfig(nil)
	cfg.PublishTimeout = time.Minute
	cfg.DuplicateWindow = 10 * time.Minute
	cfg.Progress = tracker.Worker("evidence.relay")
	pub := &gatedPublisher{gate: make(chan struct{})}
	r, err := NewRelay(pool, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	units := func() uint64 { return tracker.Status()[0].Units }
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _, err := r.PublishPending(ctx); done <- err }()
	for i := range 3 {
		pub.gate <- struct{}{}
		waitFor(t, "progress for the event published", 10*time.Second, func() bool { return units() == uint64(i+1) })
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
