package progress

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a time the test moves.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func status(t *testing.T, tr *Tracker, name string) Status {
	t.Helper()
	for _, s := range tr.Status() {
		if s.Worker == name {
			return s
		}
	}
	t.Fatalf("worker %q is not registered", name)
	return Status{}
}

var errDown = errors.New("state store down")

func TestIdleIsNeverStalled(t *testing.T) {
	t.Parallel()
	c := newClock()
	tr := NewTracker(c.now)
	tr.Worker("w")
	c.advance(time.Hour)
	s := status(t, tr, "w")
	if s.Busy || s.Stalled != 0 || s.Held != 0 {
		t.Errorf("a worker with nothing to do: %+v", s)
	}
}

func TestWorkInHandWithoutProgressStalls(t *testing.T) {
	t.Parallel()
	c := newClock()
	tr := NewTracker(c.now)
	w := tr.Worker("w")
	c.advance(time.Hour) // idle for long: that does not count
	w.Start()
	started := c.now()
	c.advance(90 * time.Second)
	s := status(t, tr, "w")
	if !s.Busy || !s.BusySince.Equal(started) || s.Stalled != 90*time.Second || s.Held != 90*time.Second {
		t.Errorf("a unit in hand for 90s: %+v", s)
	}
	w.Advance() // a message of the batch done
	c.advance(10 * time.Second)
	if s := status(t, tr, "w"); s.Stalled != 10*time.Second || s.Held != 10*time.Second || s.Units != 1 {
		t.Errorf("10s after progress: %+v", s)
	}
	w.Finish(nil)
	c.advance(time.Hour)
	if s := status(t, tr, "w"); s.Busy || s.Stalled != 0 || s.Held != 0 || s.Units != 2 {
		t.Errorf("finished, then idle: %+v", s)
	}
}

// A unit that fails leaves its work owed: failures in a row stall the
// worker, but a worker that keeps trying is not wedged.
func TestFailuresStallButDoNotWedge(t *testing.T) {
	t.Parallel()
	c := newClock()
	tr := NewTracker(c.now)
	w := tr.Worker("w")
	first := c.now()
	for range 12 {
		w.Start()
		c.advance(time.Second)
		w.Finish(errDown)
		c.advance(9 * time.Second)
	}
	s := status(t, tr, "w")
	if !s.Busy || !s.BusySince.Equal(first) || s.Stalled != 2*time.Minute || s.Held != 0 {
		t.Errorf("two minutes of failed passes: %+v", s)
	}
	w.Start()
	w.Finish(nil)
	if s := status(t, tr, "w"); s.Busy || s.Stalled != 0 {
		t.Errorf("after a pass that worked: %+v", s)
	}
}

// A unit retried inside the worker (a publish retried until it is stored)
// stalls, but is not wedged: the worker is still trying.
func TestRetryKeepsAUnitAlive(t *testing.T) {
	t.Parallel()
	c := newClock()
	tr := NewTracker(c.now)
	w := tr.Worker("w")
	w.Start()
	for range 10 {
		c.advance(time.Minute)
		w.Retry()
	}
	c.advance(30 * time.Second)
	s := status(t, tr, "w")
	if s.Stalled != 10*time.Minute+30*time.Second || s.Held != 30*time.Second {
		t.Errorf("retried every minute for 10m: %+v", s)
	}
}

// Units of one worker may overlap (one per connection): the worker is
// idle again only once none is in hand.
func TestOverlappingUnits(t *testing.T) {
	t.Parallel()
	c := newClock()
	tr := NewTracker(c.now)
	w := tr.Worker("w")
	w.Start() // a connection whose publish hangs
	c.advance(time.Minute)
	w.Start()
	w.Finish(nil) // another connection's line stored
	c.advance(2 * time.Minute)
	s := status(t, tr, "w")
	if !s.Busy || s.Stalled != 2*time.Minute || s.Held != 2*time.Minute {
		t.Errorf("one unit still in hand: %+v", s)
	}
	w.Finish(nil)
	if s := status(t, tr, "w"); s.Busy {
		t.Errorf("none in hand: %+v", s)
	}
}

func TestChildrenReportForTheirParent(t *testing.T) {
	t.Parallel()
	c := newClock()
	tr := NewTracker(c.now)
	p := tr.Worker("observer")
	p.Child("a").Start()
	p.Child("b")
	if a1, a2 := p.Child("a"), p.Child("a"); a1 != a2 {
		t.Error("a child registered twice is two workers")
	}
	var names []string
	for _, s := range tr.Status() {
		names = append(names, s.Worker)
	}
	if len(names) != 2 || names[0] != "observer.a" || names[1] != "observer.b" {
		t.Errorf("workers = %v, want the children alone, sorted", names)
	}
	if tr.Worker("observer") != p {
		t.Error("registering a name again gives another worker")
	}
}

func TestNilIsANoOp(t *testing.T) {
	t.Parallel()
	var tr *Tracker
	w := tr.Worker("w")
	w.Start()
	w.Advance()
	w.Retry()
	w.Finish(errDown)
	w.Child("x").Finish(nil)
	if tr.Status() != nil {
		t.Error("a nil tracker has workers")
	}
}

func TestRealClockAndRace(t *testing.T) {
	t.Parallel()
	tr := NewTracker(nil)
	w := tr.Worker("w")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				w.Start()
				w.Advance()
				w.Retry()
				w.Finish(nil)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = tr.Status()
		}
	})
	wg.Wait()
	if s := status(t, tr, "w"); s.Busy || s.Units != 16000 {
		t.Errorf("after balanced units: %+v", s)
	}
}

// The hot path allocates nothing and takes no lock.
func TestHotPathAllocatesNothing(t *testing.T) {
	tr := NewTracker(nil)
	w := tr.Worker("w")
	if n := testing.AllocsPerRun(1000, func() {
		w.Start()
		w.Advance()
		w.Finish(nil)
	}); n != 0 {
		t.Errorf("%v allocations per unit", n)
	}
}

func BenchmarkUnit(b *testing.B) {
	w := NewTracker(nil).Worker("w")
	for b.Loop() {
		w.Start()
		w.Finish(nil)
	}
}
