package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/internal/natstest"
)

// TestPullBatchesHandsBackUnstartedMessages: when the consumer stops, the
// messages it had pulled but not handed to its handler are nak'd at once,
// so a restarted process gets them without waiting out the ack wait.
func TestPullBatchesHandsBackUnstartedMessages(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Start(t).Connect(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PULL", Subjects: []string{"pull.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := js.Publish(ctx, "pull.x", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "PULL", jetstream.ConsumerConfig{Durable: "c",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The handler takes one batch of 2 (acks it) and then the consumer
	// stops, with up to 2 × 2 more pulled into the buffer.
	runCtx, stop := context.WithCancel(ctx)
	handled := 0
	err = bus.PullBatches(runCtx, cons, 2, 10*time.Millisecond, nil, func(_ context.Context, msgs []jetstream.Msg) {
		for _, m := range msgs {
			_ = m.Ack()
		}
		handled += len(msgs)
		stop()
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another run of the consumer gets all the rest at once, not after the
	// hour of ack wait.
	next, err := cons.Fetch(20-handled, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range next.Messages() {
		n++
	}
	if n != 20-handled {
		t.Errorf("%d of the %d remaining messages delivered at once", n, 20-handled)
	}
}
