package revoker

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// A batch waiting on the blast-radius limit is slow, not stuck: each chunk
// the limit lets through is progress, so the revoker is not reported
// stalled while it drains a throttled queue.
func TestThrottledBatchMakesProgress(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, "lg_revoker_progress")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	admin := pgtest.Pool(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := NewSigner(priv)
	verifier, err := NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	limiter, err := NewLimiter(LimiterConfig{PerMinute: 1, Now: clock.Now, After: clock.After})
	if err != nil {
		t.Fatal(err)
	}
	tracker := progress.NewTracker(clock.Now)
	w := tracker.Worker("revoker")
	exec, err := NewExecutor(ExecutorDeps{
		Dropper: newTestDropper(t, DropperConfig{}), Verifier: verifier, Limiter: limiter,
		Targets: target.Pools{testTarget: admin}, State: st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"},
		Progress: w,
	})
	if err != nil {
		t.Fatal(err)
	}
	var cmds []schemas.RevocationCommand
	for _, n := range []string{"a", "b"} {
		user := "v-token-throttled-" + n + "-" + pgtest.Suffix()
		mustExec(t, admin, "CREATE ROLE "+pgx.Identifier{user}.Sanitize()+" LOGIN")
		pgtest.DropRoleAtCleanup(t, admin, user)
		cmd := cmdtest.Drop(t, admin, testTarget, user)
		if err := signer.Sign(&cmd); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}

	w.Start()                       // the batch is pulled
	clock.Advance(90 * time.Second) // and waits behind others
	done := make(chan []Executed, 1)
	// The wait for a token must fit in the context's deadline.
	execCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	go func() { done <- exec.Execute(execCtx, cmds, func(int) bool { return false }) }()
	// The first command takes the one token; the second waits for the next.
	waitUntil(t, "the first chunk and the wait for a token", func() bool {
		select {
		case out := <-done:
			for _, e := range out {
				t.Logf("%s: %s %v %v", e.Command.DBUser, e.Result.Outcome, e.Retry, e.Err)
			}
			t.Fatal("Execute returned")
		default:
		}
		clock.mu.Lock()
		waiting := len(clock.timers) > 0
		clock.mu.Unlock()
		return waiting && status(tracker).Units == 1
	})
	if s := status(tracker); s.Stalled != 0 || s.Held != 0 {
		t.Errorf("after the first chunk, waiting on the limit: %+v", s)
	}
	clock.Advance(time.Minute)
	out := <-done
	w.Finish(nil)
	for _, e := range out {
		if e.Result.Outcome != schemas.OutcomeDropped {
			t.Errorf("%s: %+v", e.Command.DBUser, e)
		}
	}
	if s := status(tracker); s.Units != 3 || s.Busy {
		t.Errorf("after the batch: %+v, want two chunks and the batch reported", s)
	}
}

func status(tr *progress.Tracker) progress.Status { return tr.Status()[0] }

// waitUntil polls cond until it holds, for up to 20 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
