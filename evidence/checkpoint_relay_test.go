package evidence

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/natstest"
)

// outboxEvents reads the whole outbox in chain order.
func outboxEvents(t testing.TB, pool *pgxpool.Pool) []Event {
	t.Helper()
	evs, err := ReadOutbox(context.Background(), pool, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func lastIsCheckpointOf(t testing.TB, evs []Event, coversSeq int64) bool {
	t.Helper()
	if len(evs) == 0 || evs[len(evs)-1].Type != TypeCheckpoint {
		return false
	}
	d, err := checkpointOf(evs[len(evs)-1])
	if err != nil {
		t.Fatal(err)
	}
	return d.CoversSeq == coversSeq
}

// runRelay runs r until the returned stop is called; stop waits for Run
// to return.
func runRelay(t testing.TB, r *Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the relay did not stop")
		}
	}
}

// appendAll appends events in one transaction: no checkpoint between them.
func appendAll(t testing.TB, pool *pgxpool.Pool, evs []Event) {
	t.Helper()
	if err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		_, err := AppendMany(context.Background(), tx, evs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRelayCheckpoints: a running relay appends a checkpoint of the head
// at its cadence, none when nothing came after the last, and one when it
// stops if events came after the last; the last pass sends it on, and the
// outbox verifies as confirmed with the evidence key.
func TestRelayCheckpoints(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	signer := testEvidenceKey(t, 1)
	cfg := fastRelayConfig(nil)
	cfg.Checkpoints = &Checkpointing{Signer: signer, Builder: testBuilder(), Interval: 50 * time.Millisecond}
	// The last pass at shutdown has StoreTimeout + PublishTimeout: 500 ms
	// was too little for it once on a loaded machine ("the stream holds 7
	// of 9"), and a longer bound costs nothing when the bus answers.
	cfg.PublishTimeout = 10 * time.Second
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	evs := sampleEvents(t, 6)
	appendAll(t, pool, evs[:3])
	stop := runRelay(t, newRelay(t, pool, js, cfg))
	waitFor(t, "a checkpoint of seq 3", 10*time.Second, func() bool { return lastIsCheckpointOf(t, outboxEvents(t, pool), 3) })
	appendAll(t, pool, evs[3:5])
	waitFor(t, "a checkpoint of seq 6", 10*time.Second, func() bool { return lastIsCheckpointOf(t, outboxEvents(t, pool), 6) })
	stop()
	if n := len(outboxEvents(t, pool)); n != 7 {
		t.Fatalf("%d events after a stop with nothing new since the checkpoint at seq 7", n)
	}

	// A relay whose cadence never comes: only the stop checkpoints.
	cfg.Checkpoints.Interval = time.Hour
	stop = runRelay(t, newRelay(t, pool, js, cfg))
	appendOne(t, pool, evs[5])
	stop()
	all := outboxEvents(t, pool)
	if len(all) != 9 || !lastIsCheckpointOf(t, all, 8) {
		t.Fatalf("after the stop: %d events, the last %s; want a checkpoint of seq 8 at seq 9", len(all), all[len(all)-1].Type)
	}
	// The last pass at shutdown sent it on: the bus holds it too.
	if msgs := streamMessages(t, js); len(msgs) != len(all) || msgs[len(msgs)-1].Header.Get("Nats-Msg-Id") != all[len(all)-1].ID {
		t.Errorf("the stream holds %d of %d events, the checkpoint made at shutdown not last", len(msgs), len(all))
	}
	rep, err := VerifyOutbox(ctx, pool, VerifyOptions{Keys: []ed25519.PublicKey{signer.PublicKey()}})
	if err != nil || !rep.Confirmed() || rep.Checkpoints != 3 {
		t.Errorf("the outbox after shutdown: %+v %v", rep, err)
	}
}

// TestAppendCheckpointOnlyWhenSomethingIsNew: a head that is a checkpoint
// is not checkpointed again, nor is an empty chain.
func TestAppendCheckpointOnlyWhenSomethingIsNew(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	ctx := context.Background()
	s := testEvidenceKey(t, 1)
	if _, ok, err := AppendCheckpoint(ctx, pool, testBuilder(), s, t0); err != nil || ok {
		t.Fatalf("empty chain: appended %v, %v", ok, err)
	}
	appendOne(t, pool, sampleEvents(t, 1)[0])
	ev, ok, err := AppendCheckpoint(ctx, pool, testBuilder(), s, t0)
	if err != nil || !ok || ev.ChainSeq != 2 {
		t.Fatalf("after one event: %+v appended %v, %v", ev, ok, err)
	}
	if _, ok, err := AppendCheckpoint(ctx, pool, testBuilder(), s, t0.Add(time.Minute)); err != nil || ok {
		t.Fatalf("nothing new: appended %v, %v", ok, err)
	}
	if n := len(outboxEvents(t, pool)); n != 2 {
		t.Errorf("%d events in the outbox, want 2", n)
	}
}

// TestAppendCheckpointNeedsTheHead: without the chain head row nothing is
// appended.
func TestAppendCheckpointNeedsTheHead(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	if _, err := pool.Exec(context.Background(), `DELETE FROM evidence_chain_head`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := AppendCheckpoint(context.Background(), pool, testBuilder(), testEvidenceKey(t, 1), t0); !errors.Is(err, ErrNoChainHead) {
		t.Errorf("err %v, want ErrNoChainHead", err)
	}
}
