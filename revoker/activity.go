package revoker

import "sync/atomic"

// Activity counts the batches a Service is carrying out, for the parts of
// the same process that give way to revocations while any are: the
// evidence relay (evidence.RelayConfig.GiveWay) publishes a backlog more
// slowly meanwhile. A nil Activity counts nothing and is never busy.
type Activity struct{ n atomic.Int64 }

// Busy reports whether a batch is being carried out.
func (a *Activity) Busy() bool { return a != nil && a.n.Load() > 0 }

// begin counts a batch until the function it returns is called.
func (a *Activity) begin() func() {
	if a == nil {
		return func() {}
	}
	a.n.Add(1)
	return func() { a.n.Add(-1) }
}
