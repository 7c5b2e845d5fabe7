package backoff

import (
	"testing"
	"time"
)

// TestWaitDoublesUpToTheCapWithJitter: the wait after n failures is drawn
// from [max(Base, c/2), c], where c is Base doubled n-1 times, at most Max.
func TestWaitDoublesUpToTheCapWithJitter(t *testing.T) {
	t.Parallel()
	p := Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	type bounds struct{ lo, hi time.Duration }
	want := map[int]bounds{
		0: {100 * time.Millisecond, 100 * time.Millisecond}, 1: {100 * time.Millisecond, 100 * time.Millisecond},
		2: {100 * time.Millisecond, 200 * time.Millisecond}, 3: {200 * time.Millisecond, 400 * time.Millisecond},
		5: {800 * time.Millisecond, 1600 * time.Millisecond}, 6: {time.Second, 2 * time.Second},
		10: {time.Second, 2 * time.Second}, 1000: {time.Second, 2 * time.Second},
	}
	for failures, b := range want {
		lo, hi := b.hi, time.Duration(0)
		for range 200 {
			got := p.Wait(failures)
			if got < b.lo || got > b.hi {
				t.Fatalf("Wait(%d) = %s, want within [%s, %s]", failures, got, b.lo, b.hi)
			}
			lo, hi = min(lo, got), max(hi, got)
		}
		// Jitter: 200 draws spread over most of the range.
		if hi-lo < (b.hi-b.lo)/2 {
			t.Errorf("Wait(%d) drew only from [%s, %s] of [%s, %s]: no jitter", failures, lo, hi, b.lo, b.hi)
		}
	}
}

// TestWaitWithoutCapOrBase: a Max below Base caps at Base; a zero
// policy waits nothing.
func TestWaitWithoutCapOrBase(t *testing.T) {
	t.Parallel()
	if got := (Policy{}).Wait(3); got != 0 {
		t.Errorf("zero policy waits %s", got)
	}
	p := Policy{Base: time.Second}
	if got := p.Wait(40); got != time.Second {
		t.Fatalf("Max unset: Wait(40) = %s, want 1s", got)
	}
}
