package evidence

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/dbpool"
	"github.com/leaseguard/leaseguard/internal/faultproxy"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// retryLog records the waits the relay announces ("retry_in").
type retryLog struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (l *retryLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *retryLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *retryLog) WithGroup(string) slog.Handler            { return l }
func (l *retryLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry_in" {
			l.mu.Lock()
			l.waits = append(l.waits, a.Value.Duration())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

// longest is the longest wait announced so far.
func (l *retryLog) longest() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for _, w := range l.waits {
		d = max(d, w)
	}
	return d
}

// proxiedPool opens a pool on schema through a fault proxy in front of
// the test PostgreSQL.
func proxiedPool(t *testing.T, schema string) (*pgxpool.Pool, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(pgtest.URLWithSearchPath(schema))
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start("127.0.0.1:0", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = proxy.Addr()
	pc, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	// As the state store's pool is set up: connecting to a silent server
	// gives up, and so does the check of a silenced idle connection.
	dbpool.Apply(pc, dbpool.Settings{ConnectTimeout: 300 * time.Millisecond})
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the proxy is closed before the pool, so
	// nothing waits on a silenced connection.
	t.Cleanup(pool.Close)
	t.Cleanup(func() { _ = proxy.Close() })
	return pool, proxy
}

// TestRelayDrainsBacklogPromptlyAfterStoreReturns: the relay's state store
// fails (every connection reset, or silent) long enough for the relay's
// retry wait to grow past 4 s, while evidence piles up in the outbox. The
// store comes back as that wait begins, and the backlog must be published
// within 3 s, before the wait is out: the relay notices the store
// answering again instead of sleeping out its backoff (which doubled to
// 32 s before), and a silent store does not wedge it. (With a 1 s wait
// and a 1 s bound, a loaded machine sometimes took longer to publish the
// backlog than the margin allowed.)
func TestRelayDrainsBacklogPromptlyAfterStoreReturns(t *testing.T) {
	t.Parallel()
	const retryWait = 4 * time.Second
	for _, mode := range []faultproxy.Mode{faultproxy.Reset, faultproxy.Blackhole} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			direct := testDB(t)
			var schema string
			if err := direct.QueryRow(context.Background(), `SELECT current_schema()`).Scan(&schema); err != nil {
				t.Fatal(err)
			}
			relayPool, proxy := proxiedPool(t, schema)
			_, js := natstest.Start(t).Connect(t)
			log := &retryLog{}
			var m countMetrics
			cfg := RelayConfig{
				Batch:          25,
				Interval:       20 * time.Millisecond,
				PublishTimeout: time.Second,
				StoreTimeout:   300 * time.Millisecond,
				// A long cap: the relay must not need to sleep it out.
				MaxBackoff: time.Minute,
				Metrics:    &m,
				Logger:     slog.New(log),
			}
			if _, err := EnsureStream(context.Background(), js, cfg); err != nil {
				t.Fatal(err)
			}
			events := sampleEvents(t, 60)
			appendOne(t, direct, events[0])
			r := newRelay(t, relayPool, js, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() {
				_ = proxy.Close() // nothing may wait on a silenced connection
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
			}()
			waitFor(t, "the first event relayed", 10*time.Second, func() bool { return unpublished(t, direct) == 0 })

			proxy.SetMode(mode)
			for _, ev := range events[1:] {
				appendOne(t, direct, ev)
			}
			waitFor(t, "the relay's retry wait to pass 4 s", time.Minute, func() bool { return log.longest() >= retryWait })
			proxy.SetMode(faultproxy.Pass)
			restored := time.Now()
			waitFor(t, "the backlog relayed within 3 s of the store's return", retryWait-time.Second, func() bool {
				return unpublished(t, direct) == 0
			})
			t.Logf("backlog of %d relayed %s after the store came back", len(events)-1, time.Since(restored).Round(time.Millisecond))
			checkStream(t, js, len(events))
		})
	}
}

// TestRelayBackoffIsCapped: by default the relay waits at most a few
// seconds between failed passes, however long the failure lasts.
func TestRelayBackoffIsCapped(t *testing.T) {
	t.Parallel()
	r, err := NewRelay(testDB(t), nopPublisher{}, RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.backoff(1000); got > 5*time.Second {
		t.Errorf("after 1000 failures the relay waits %s, want at most 5s", got)
	}
	if got := r.backoff(1); got != DefaultInterval {
		t.Errorf("after one failure the relay waits %s, want the interval %s", got, DefaultInterval)
	}
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, Event, []byte) error { return nil }

// flakyPublisher fails until up is set.
type flakyPublisher struct{ up atomic.Bool }

func (p *flakyPublisher) Publish(context.Context, Event, []byte) error {
	if !p.up.Load() {
		return errors.New("bus unavailable")
	}
	return nil
}

// TestRelayWakeEndsTheBackoff: while the bus fails the relay backs off;
// Wake (NATS reconnected) starts the next pass at once.
func TestRelayWakeEndsTheBackoff(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	for _, ev := range sampleEvents(t, 5) {
		appendOne(t, pool, ev)
	}
	log := &retryLog{}
	pub := &flakyPublisher{}
	r, err := NewRelay(pool, pub, RelayConfig{Interval: 20 * time.Millisecond, MaxBackoff: time.Minute, Logger: slog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitFor(t, "the relay's retry wait to pass a second", 20*time.Second, func() bool { return log.longest() >= time.Second })
	pub.up.Store(true)
	r.Wake()
	waitFor(t, "the outbox relayed at once after the wake", 500*time.Millisecond, func() bool { return unpublished(t, pool) == 0 })
}
