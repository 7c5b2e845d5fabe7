package revoker_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leaseguard/leaseguard/internal/pgtest"
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

	steps := stepHistograms(t, reg)
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

// stepHistograms are the series of leaseguard_revocation_step_seconds, by
// step.
func stepHistograms(t *testing.T, reg *prometheus.Registry) map[string]*dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		if mf.GetName() != "leaseguard_revocation_step_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "step" {
					out[l.GetValue()] = m.GetHistogram()
				}
			}
		}
	}
	return out
}
