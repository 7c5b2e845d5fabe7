// Package progress lets leaseguard's workers say whether they are moving,
// so that health checks can tell a worker that has nothing to do from one
// that is stuck.
//
// A worker registers by name and reports units of work: Start when it
// takes one up (a batch pulled, a pass begun), Advance when part of it is
// done, Finish when it ends. A unit that finishes with an error leaves its
// work owed: the worker stays busy until a unit succeeds. Retry says that
// the unit in hand failed and is being tried again inside the worker.
//
// From that, two questions are answered:
//   - stalled: the worker has work (in hand or owed) and has made no
//     progress for a while. Nothing to do is never stalled, however long.
//   - wedged: the worker has held a unit for a while without progress and
//     without trying again: it is blocked in a call, and only a restart
//     gets it out. A worker that keeps failing is stalled, not wedged: its
//     dependency is down, and restarting would not bring it back.
//
// The hot path (Start, Advance, Retry, Finish) takes no lock and allocates
// nothing: a few atomic operations, cheap enough per batch or per message.
// Every method of a nil *Worker or *Tracker does nothing, so a worker
// built without a tracker needs no checks.
package progress
