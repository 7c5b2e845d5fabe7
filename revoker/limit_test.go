package revoker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves; After fires when it passes.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			kept = append(kept, tm)
			continue
		}
		tm.ch <- c.now
	}
	c.timers = kept
}

type waitResult struct {
	waited time.Duration
	err    error
}

func newTestLimiter(t *testing.T, perMinute int) (*Limiter, *fakeClock, chan bool) {
	t.Helper()
	clock := &fakeClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	throttle := make(chan bool, 16)
	l, err := NewLimiter(LimiterConfig{
		PerMinute:  perMinute,
		OnThrottle: func(waiting bool) { throttle <- waiting },
		Now:        clock.Now,
		After:      clock.After,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, clock, throttle
}

func waitAsync(ctx context.Context, l *Limiter, emergency bool) chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		w, err := l.Wait(ctx, emergency)
		ch <- waitResult{w, err}
	}()
	return ch
}

func expectThrottle(t *testing.T, throttle chan bool, want bool) {
	t.Helper()
	select {
	case got := <-throttle:
		if got != want {
			t.Fatalf("OnThrottle(%v), want OnThrottle(%v)", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no OnThrottle(%v)", want)
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, clock, throttle := newTestLimiter(t, 2)

	for i := range 2 {
		if w, err := l.Wait(ctx, false); w != 0 || err != nil {
			t.Fatalf("wait %d: %v, %v", i, w, err)
		}
	}
	// The bucket is empty: the third waits for a refill (30 s at 2/min).
	third := waitAsync(ctx, l, false)
	expectThrottle(t, throttle, true)

	// An emergency goes through at once, without a token.
	if w, err := l.Wait(ctx, true); w != 0 || err != nil {
		t.Fatalf("emergency: %v, %v", w, err)
	}

	clock.Advance(29 * time.Second)
	select {
	case r := <-third:
		t.Fatalf("third returned early: %+v", r)
	default:
	}
	clock.Advance(time.Second)
	r := <-third
	if r.err != nil || r.waited != 30*time.Second {
		t.Fatalf("third: %+v, want 30s", r)
	}
	expectThrottle(t, throttle, false)

	// A cancelled wait gives its token back.
	cctx, cancel := context.WithCancel(ctx)
	fourth := waitAsync(cctx, l, false)
	expectThrottle(t, throttle, true)
	cancel()
	if r := <-fourth; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled wait: %+v", r)
	}
	expectThrottle(t, throttle, false)
	fifth := waitAsync(ctx, l, false)
	expectThrottle(t, throttle, true)
	clock.Advance(30 * time.Second)
	if r := <-fifth; r.err != nil || r.waited != 30*time.Second {
		t.Fatalf("after a cancelled wait: %+v, want 30s", r)
	}
	expectThrottle(t, throttle, false)

	// A wait longer than the deadline fails at once and takes nothing.
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	defer dcancel()
	if _, err := l.Wait(dctx, false); !errors.Is(err, ErrWouldExceedDeadline) {
		t.Fatalf("deadline: %v", err)
	}
	select {
	case w := <-throttle:
		t.Fatalf("OnThrottle(%v) for a wait that never started", w)
	default:
	}
	// A minute refills the whole bucket, and no more.
	clock.Advance(10 * time.Minute)
	for i := range 2 {
		if w, err := l.Wait(ctx, false); w != 0 || err != nil {
			t.Fatalf("after refill %d: %v, %v", i, w, err)
		}
	}
	last := waitAsync(ctx, l, false)
	expectThrottle(t, throttle, true)
	clock.Advance(30 * time.Second)
	<-last
}

func TestLimiterConfig(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, -1} {
		if _, err := NewLimiter(LimiterConfig{PerMinute: n}); err == nil {
			t.Errorf("PerMinute %d accepted", n)
		}
	}
	l, err := NewLimiter(LimiterConfig{PerMinute: 60})
	if err != nil {
		t.Fatal(err)
	}
	if w, err := l.Wait(context.Background(), false); w != 0 || err != nil {
		t.Errorf("real clock: %v, %v", w, err)
	}
}
