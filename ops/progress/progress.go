package progress

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Tracker holds the registered workers.
type Tracker struct {
	now     func() time.Time
	mu      sync.Mutex
	workers map[string]*Worker
}

// NewTracker makes a tracker; now is its clock (nil: time.Now).
func NewTracker(now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{now: now, workers: map[string]*Worker{}}
}

// Worker registers a worker under name, or returns the one registered
// under it. A nil tracker returns nil (a worker that reports nowhere).
func (t *Tracker) Worker(name string) *Worker {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if w, ok := t.workers[name]; ok {
		return w
	}
	w := &Worker{name: name, tracker: t}
	w.progress.Store(t.now().UnixNano())
	t.workers[name] = w
	return w
}

// Worker is one loop's progress. Times are Unix nanoseconds; 0 is unset.
type Worker struct {
	name    string
	tracker *Tracker
	// inHand counts the units taken up and not finished.
	inHand atomic.Int64
	// handAt: when the units in hand were taken up, or last retried.
	handAt atomic.Int64
	// owedAt: when the work now owed was taken up; 0 when none is.
	owedAt atomic.Int64
	// progress: the last progress (registration until the first).
	progress atomic.Int64
	// units counts progress reports.
	units atomic.Uint64
	// parent: this worker has children, who report for it.
	parent atomic.Bool
}

func (w *Worker) now() int64 { return w.tracker.now().UnixNano() }

// Start says the worker took up a unit of work.
func (w *Worker) Start() {
	if w == nil {
		return
	}
	now := w.now()
	if w.inHand.Add(1) == 1 {
		w.handAt.Store(now)
	}
	w.owedAt.CompareAndSwap(0, now)
}

// Advance says part of the unit in hand is done (one message of a batch).
func (w *Worker) Advance() {
	if w == nil {
		return
	}
	w.progress.Store(w.now())
	w.units.Add(1)
}

// Retry says the unit in hand failed and is being tried again: no
// progress, but the worker is not blocked.
func (w *Worker) Retry() {
	if w == nil {
		return
	}
	w.handAt.Store(w.now())
}

// Finish says the unit ended: nil is progress, and once no unit is in hand
// nothing is owed; an error leaves the work owed until a unit succeeds.
func (w *Worker) Finish(err error) {
	if w == nil {
		return
	}
	if err != nil {
		w.owedAt.CompareAndSwap(0, w.now())
		w.inHand.Add(-1)
		return
	}
	w.Advance()
	if w.inHand.Add(-1) <= 0 {
		w.owedAt.Store(0)
	}
}

// Child registers a worker named after this one (name.child) for one of
// its loops (one per target, one per sink). A worker with children is
// reported through them only.
func (w *Worker) Child(name string) *Worker {
	if w == nil {
		return nil
	}
	w.parent.Store(true)
	return w.tracker.Worker(w.name + "." + name)
}

// Status is what a worker looks like now.
type Status struct {
	Worker string
	// Busy: the worker has work, in hand or owed, since BusySince.
	Busy      bool
	BusySince time.Time
	// LastProgress is the last progress (the registration before the
	// first); Units counts progress reports.
	LastProgress time.Time
	Units        uint64
	// Stalled is how long the busy worker has gone without progress; 0
	// when it is not busy.
	Stalled time.Duration
	// Held is how long a unit has been in hand without progress or retry;
	// 0 when none is in hand.
	Held time.Duration
}

// Status reports every registered worker, sorted by name.
func (t *Tracker) Status() []Status {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	ws := make([]*Worker, 0, len(t.workers))
	for _, w := range t.workers {
		if !w.parent.Load() {
			ws = append(ws, w)
		}
	}
	t.mu.Unlock()
	sort.Slice(ws, func(i, j int) bool { return ws[i].name < ws[j].name })
	now := t.now().UnixNano()
	out := make([]Status, len(ws))
	for i, w := range ws {
		out[i] = w.status(now)
	}
	return out
}

func (w *Worker) status(now int64) Status {
	inHand, hand, owed, prog := w.inHand.Load(), w.handAt.Load(), w.owedAt.Load(), w.progress.Load()
	s := Status{Worker: w.name, LastProgress: time.Unix(0, prog), Units: w.units.Load()}
	if owed == 0 && inHand > 0 {
		owed = hand // a unit taken up while the last one finished
	}
	if owed != 0 {
		s.Busy, s.BusySince = true, time.Unix(0, owed)
		s.Stalled = since(now, max(owed, prog))
	}
	if inHand > 0 {
		s.Held = since(now, max(hand, prog))
	}
	return s
}

func since(now, t int64) time.Duration {
	return time.Duration(max(now-t, 0))
}
