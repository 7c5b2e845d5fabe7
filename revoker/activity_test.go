package revoker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
)

// The Service counts a batch in its Activity while it carries it out (the
// evidence relay of the process gives way meanwhile), and not once the
// batch is done.
func TestServiceActivityCoversItsBatches(t *testing.T) {
	t.Parallel()
	var activity atomic.Pointer[revoker.Activity]
	var busyAtDrop, dropped atomic.Bool
	faults := func(_ context.Context, step revoker.Step, _ []string) error {
		if step == revoker.StepBeforeCommit {
			busyAtDrop.Store(activity.Load().Busy())
			dropped.Store(true)
		}
		return nil
	}
	r := newSvcRigWith(t, revoker.DropperConfig{Faults: faults})
	activity.Store(r.activity)
	if r.activity.Busy() {
		t.Fatal("busy before any command")
	}
	user := "v-token-busy-" + pgtest.Suffix()
	r.role(t, user)
	r.publish(t, r.command(t, "cmd-"+user, user))
	r.drained(t)
	if !dropped.Load() || !busyAtDrop.Load() {
		t.Errorf("during the drop: dropped %v, busy %v; want both", dropped.Load(), busyAtDrop.Load())
	}
	// The count ends as the batch's handling returns, just after its ack.
	deadline := time.Now().Add(10 * time.Second)
	for r.activity.Busy() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r.activity.Busy() {
		t.Error("still busy after the batch was done")
	}
	var none *revoker.Activity
	if none.Busy() {
		t.Error("a nil Activity is busy")
	}
}
