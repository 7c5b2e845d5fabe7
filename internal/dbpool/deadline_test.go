package dbpool

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestDefaultDeadline: a call made without a deadline gets CallTimeout;
// a caller's own deadline, and a context marked WithoutDefaultDeadline,
// are left alone.
func TestDefaultDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := open(t, pgtest.URL(), Settings{CallTimeout: 300 * time.Millisecond})
	if _, err := pool.Exec(ctx, "SELECT pg_sleep(2)"); err == nil {
		t.Error("a 2 s statement without a deadline outlived the 300ms default")
	}
	own, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := pool.Exec(own, "SELECT pg_sleep(0.6)"); err != nil {
		t.Errorf("the caller's own deadline was cut short: %v", err)
	}
	if _, err := pool.Exec(WithoutDefaultDeadline(ctx), "SELECT pg_sleep(0.6)"); err != nil {
		t.Errorf("a call marked without a default deadline was cut: %v", err)
	}
	// Rows are read under the query's deadline until they are closed.
	rows, err := pool.Query(ctx, "SELECT g FROM generate_series(1, 3) g")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || len(got) != 3 {
		t.Errorf("rows %v, %v", got, err)
	}
	// A transaction begun without a deadline: each statement gets one.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for range 3 {
			if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.15)"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("a transaction of statements each within the default: %v", err)
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT pg_sleep(2)")
	if err := pool.SendBatch(ctx, b).Close(); err == nil {
		t.Error("a batch without a deadline outlived the default")
	}
}

// TestDefaultDeadlineOnASilentServer: a call made with a background
// context on a silent server returns.
func TestDefaultDeadlineOnASilentServer(t *testing.T) {
	t.Parallel()
	proxied, proxy := behindProxy(t, "")
	pc, err := pgxpool.ParseConfig(proxied)
	if err != nil {
		t.Fatal(err)
	}
	Apply(pc, Settings{CallTimeout: 500 * time.Millisecond, ConnectTimeout: time.Second, PingTimeout: time.Second})
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	t.Cleanup(func() { proxy.SetMode(faultproxy.Reset) })
	if _, err := pool.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	proxy.SetMode(faultproxy.Blackhole)
	for _, call := range []func() error{
		func() error { _, err := pool.Exec(context.Background(), "SELECT 1"); return err },
		func() error { var n int; return pool.QueryRow(context.Background(), "SELECT 1").Scan(&n) },
		func() error { _, err := pool.Begin(context.Background()); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if err == nil {
				t.Error("a silent server answered")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a call without a deadline waited on a silent server for good")
		}
	}
}

// TestMaxCallTimeCapsLongerDeadlines: with max set, a query whose context
// allows longer gets max; a shorter deadline is kept; an acquire is not
// capped; without max a caller's deadline is left alone.
func TestMaxCallTimeCapsLongerDeadlines(t *testing.T) {
	tr := defaultDeadline{d: time.Minute, max: 3 * time.Second}
	long, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	short, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	left := func(ctx context.Context) time.Duration {
		d, ok := ctx.Deadline()
		if !ok {
			t.Fatal("no deadline")
		}
		return time.Until(d)
	}
	if got := left(tr.start(long, true)); got > 3*time.Second || got < 2*time.Second {
		t.Errorf("query under a 1h deadline: %s left, want about 3s", got)
	}
	if got := left(tr.start(short, true)); got > time.Second {
		t.Errorf("query under a 1s deadline: %s left, want at most 1s", got)
	}
	if got := left(tr.start(long, false)); got < 59*time.Minute {
		t.Errorf("acquire under a 1h deadline: %s left, want it untouched", got)
	}
	if got := left(tr.start(context.Background(), true)); got > 3*time.Second {
		t.Errorf("query without a deadline: %s left, want the 3s cap over the 1m default", got)
	}
	if got := left(defaultDeadline{d: time.Minute}.start(long, true)); got < 59*time.Minute {
		t.Errorf("without a cap: %s left, want the caller's deadline", got)
	}
}
