package revoker_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// panicPlan is a FaultFunc that panics at step on its first n calls there.
type panicPlan struct {
	mu   sync.Mutex
	step revoker.Step
	left int
	hits int
}

func (p *panicPlan) fn(_ context.Context, step revoker.Step, _ []string) error {
	if step != p.step {
		return nil
	}
	p.mu.Lock()
	p.hits++
	boom := p.left != 0
	if p.left > 0 {
		p.left--
	}
	p.mu.Unlock()
	if boom {
		panic("injected panic at " + string(step))
	}
	return nil
}

// TestPanicInHandlingIsRetried: the handling of a command panics on its
// first attempt, in the Dropper and in the Executor. The process lives on,
// the command is delivered again and ends dropped, once.
func TestPanicInHandlingIsRetried(t *testing.T) {
	t.Parallel()
	for _, step := range []revoker.Step{revoker.StepBeforeNologin, revoker.StepBeforeRecord} {
		t.Run(string(step), func(t *testing.T) {
			t.Parallel()
			plan := &panicPlan{step: step, left: 1}
			r := newSvcRigWith(t, revoker.DropperConfig{Faults: plan.fn})
			user := "v-panic-" + pgtest.Suffix()
			r.role(t, user)
			cmd := r.command(t, "panic-"+user, user)
			r.publish(t, cmd)
			r.drained(t)
			if exists(t, r.admin, user) {
				t.Fatal("user not dropped after the redelivery")
			}
			r.wantOutcomes(t, user, "dropped")
			rev, err := store.GetRevocation(context.Background(), r.st.Pool(), cmd.ID)
			if err != nil || rev.Attempts != 2 {
				t.Errorf("revocation = %+v, %v; want 2 attempts", rev, err)
			}
			r.chainVerifies(t)
		})
	}
}

// TestPanicOnEveryAttemptIsDeadLettered: a command whose handling panics
// on every attempt is recorded as failed, with its evidence, on its last
// attempt and dead-lettered; the role is left alone.
func TestPanicOnEveryAttemptIsDeadLettered(t *testing.T) {
	t.Parallel()
	plan := &panicPlan{step: revoker.StepBeforeNologin, left: -1}
	r := newSvcRigWith(t, revoker.DropperConfig{Faults: plan.fn})
	user := "v-panic-all-" + pgtest.Suffix()
	r.role(t, user)
	cmd := r.command(t, "panic-all-"+user, user)
	r.publish(t, cmd)
	r.drained(t)
	if !exists(t, r.admin, user) {
		t.Fatal("user dropped although every attempt panicked before NOLOGIN")
	}
	if plan.hits != r.cfg.MaxDeliver {
		t.Errorf("attempts = %d, want %d", plan.hits, r.cfg.MaxDeliver)
	}
	r.wantOutcomes(t, user, "failed")
	rev, err := store.GetRevocation(context.Background(), r.st.Pool(), cmd.ID)
	if err != nil || rev.Result == nil || !strings.Contains(rev.Result.Reason, "panic") {
		t.Errorf("revocation = %+v, %v; want a failure that names the panic", rev, err)
	}
	dead := r.deadLetters(t)
	if len(dead) != 1 || !strings.Contains(dead[0].Header.Get("Leaseguard-Reason"), "panic") {
		t.Fatalf("dead letters = %d, want 1 naming the panic", len(dead))
	}
	r.chainVerifies(t)
}

// panickyTargets panics when asked a target's identity, which the
// Executor does while admitting a command, before any drop.
type panickyTargets struct{ revoker.Targets }

func (panickyTargets) Identity(context.Context, string) (schemas.TargetIdentity, error) {
	panic("injected panic in Identity")
}

// TestPanicOutsideTheDropIsDeadLettered: a panic in admitting a command
// hands it back for a retry and dead-letters it on its last attempt; the
// consumer keeps running and the role is left alone.
func TestPanicOutsideTheDropIsDeadLettered(t *testing.T) {
	t.Parallel()
	r := newSvcRig(t)
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: r.dropper, Verifier: r.verifier,
		Targets: panickyTargets{target.Pools{"main": r.admin}}, State: r.st.Pool(),
		Evidence: evidence.Builder{Source: "urn:leaseguard:test"}})
	if err != nil {
		t.Fatal(err)
	}
	q := &queueService{r: r, cfg: r.cfg}
	q.cfg.Queue.Stream, q.cfg.Queue.Subject, q.cfg.Consumer = "Q_PANIC", "q.panic", "revoker-panic"
	q.subject = q.cfg.Queue.Subject
	if q.svc, err = revoker.NewService(q.cfg, r.js, exec); err != nil {
		t.Fatal(err)
	}
	if _, err := q.svc.EnsureConsumer(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := q.start(t)
	defer stop()
	user := "v-panic-admit-" + pgtest.Suffix()
	r.role(t, user)
	r.publishTo(t, q.subject, r.command(t, "panic-admit-"+user, user))
	q.drained(t)
	if !exists(t, r.admin, user) {
		t.Fatal("user dropped although admitting the command panicked")
	}
	dead := r.deadLetters(t)
	if len(dead) != 1 || !strings.Contains(dead[0].Header.Get("Leaseguard-Reason"), "panic") {
		t.Fatalf("dead letters = %d, want 1 naming the panic", len(dead))
	}
}
