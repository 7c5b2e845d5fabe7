package revoker_test

import (
	"context"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/promtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
)

// TestStepsOfABatchObserved: a batch observes each step of the Executor
// once in leaseguard_revocation_step_seconds, the drop's time falls in
// carry_out, and the steps, one after another, add up to no more than
// the call took.
func TestStepsOfABatchObserved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := appPool(t, "lg-steps-"+pgtest.Suffix())
	plan := newFaultPlan()
	rig := newExecRig(t, pool, revoker.DropperConfig{Faults: plan.fn})
	exec, reg, signer := rig.exec, rig.reg, rig.signer
	cmd := signedDrop(t, pool, signer, "v-steps-")
	beforeCommit := plan.hold(t, revoker.StepBeforeCommit)
	done := make(chan revoker.Executed, 1)
	start := time.Now()
	go func() { done <- exec.Execute(ctx, []schemas.RevocationCommand{cmd}, nil)[0] }()
	beforeCommit.wait(t)
	holdFor(t, "the drop before its commit", func() bool { return true })
	beforeCommit.let()
	if e := <-done; !e.Recorded || e.Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("drop: %+v", e)
	}
	took := time.Since(start).Seconds()

	steps, err := promtest.Histograms(reg, "leaseguard_revocation_step_seconds", "step")
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, step := range []string{"admit", "claim", "triage", "carry_out", "record"} {
		h, ok := steps[step]
		if !ok || h.GetSampleCount() != 1 {
			t.Errorf("step %s observed %d times, want once", step, h.GetSampleCount())
		}
		sum += h.GetSampleSum()
	}
	if got := steps["carry_out"].GetSampleSum(); got < held.Seconds() {
		t.Errorf("carry_out %.3f s, less than the %v the drop was held", got, held)
	}
	if sum > took {
		t.Errorf("the steps add up to %.3f s, more than the %.3f s the batch took", sum, took)
	}
}
