package pause

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestEveryWaitsForTheFirstBeatOrWake: with an interval that never beats
// in the test, only the wake-up calls f; a first call at once would make
// two.
func TestEveryWaitsForTheFirstBeatOrWake(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	called := make(chan struct{}, 10)
	wake := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Hour, wake, func() { calls.Add(1); called <- struct{}{} })
	}()
	wake <- struct{}{}
	waitFor(t, called)
	cancel()
	waitFor(t, done)
	if n := calls.Load(); n != 1 {
		t.Fatalf("Every called f %d times for one wake-up and no beat; want 1", n)
	}
}

func TestEveryCallsOnEachBeatUntilCtxEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	called := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Millisecond, nil, func() {
			select {
			case called <- struct{}{}:
			default:
			}
		})
	}()
	for range 3 {
		waitFor(t, called)
	}
	cancel()
	waitFor(t, done)
}

// TestRepeatRunsAtOnceAndAgainWhileMore: with an interval that never beats
// in the test, f runs at once, and again at once while it reports more.
func TestRepeatRunsAtOnceAndAgainWhileMore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	fourth := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Repeat(ctx, time.Hour, func() bool {
			n := calls.Add(1)
			if n == 4 {
				close(fourth)
			}
			return n < 4
		})
	}()
	waitFor(t, fourth)
	cancel()
	waitFor(t, done)
	if n := calls.Load(); n != 4 {
		t.Fatalf("Repeat called f %d times; want 4 (three with more work, then one without)", n)
	}
}

func TestRepeatCallsOnEachBeat(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	called := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Repeat(ctx, time.Millisecond, func() bool {
			select {
			case called <- struct{}{}:
			default:
			}
			return false
		})
	}()
	for range 3 {
		waitFor(t, called)
	}
	cancel()
	waitFor(t, done)
}

func waitFor(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out")
	}
}
