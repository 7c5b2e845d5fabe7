package bus

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/pause"
)

// fetchExpiry is how long one pull request stays open on the server. When
// the consumer stops it waits at most this long for the request in flight
// to end, so that every message the server sent is handed back.
const fetchExpiry = time.Second

// PullBatches consumes cons in batches until ctx ends: it waits for one
// message, takes whatever else arrives within fillWait (up to max), and
// hands the batch to handle, which must settle every message (ack, nak or
// term). handle gets a context that is not cancelled with ctx, so the batch
// in hand when shutdown starts is finished rather than half-applied.
//
// Messages are pulled by requests of 2 × max that expire after
// fetchExpiry. When ctx ends, the messages of the request in flight that no
// handler got are nak'd at once, so a restarted process (or another one)
// gets them without waiting out the consumer's ack wait.
func PullBatches(ctx context.Context, cons jetstream.Consumer, max int, fillWait time.Duration, logger *slog.Logger,
	handle func(context.Context, []jetstream.Msg)) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	batch := make([]jetstream.Msg, 0, max)
	for ctx.Err() == nil {
		req, err := cons.Fetch(2*max, jetstream.FetchMaxWait(fetchExpiry))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			logger.Warn("pull", "err", err)
			if !pause.For(ctx, fetchExpiry, nil) {
				return nil
			}
			continue
		}
		msgs := req.Messages()
		for ctx.Err() == nil {
			batch = collect(ctx, msgs, batch[:0], max, fillWait)
			if len(batch) == 0 {
				break // the request ended
			}
			handle(context.WithoutCancel(ctx), batch)
		}
		handBack(msgs, logger)
		if err := req.Error(); err != nil && ctx.Err() == nil {
			logger.Warn("pull", "err", err)
		}
	}
	return nil
}

// collect waits for one message of msgs (or ctx's end, or the request's),
// then takes whatever else arrives within fillWait, up to max.
func collect(ctx context.Context, msgs <-chan jetstream.Msg, batch []jetstream.Msg, max int, fillWait time.Duration) []jetstream.Msg {
	select {
	case m, ok := <-msgs:
		if !ok {
			return batch
		}
		batch = append(batch, m)
	case <-ctx.Done():
		return batch
	}
	fill := time.NewTimer(fillWait)
	defer fill.Stop()
	for len(batch) < max {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
		case <-fill.C:
			return batch
		}
	}
	return batch
}

// handBack naks, for immediate redelivery, the messages of a pull request
// that no handler got, waiting for the request to end (it expires after
// fetchExpiry): without it they would wait out the consumer's ack wait.
func handBack(msgs <-chan jetstream.Msg, logger *slog.Logger) {
	n := 0
	for m := range msgs {
		if err := m.Nak(); err != nil {
			logger.Warn("nak of an unstarted message failed; it is redelivered after the ack wait", "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		logger.Info("stopping: unstarted messages handed back for redelivery", "messages", n)
	}
}

// KeepInProgress tells JetStream, every interval until the returned stop is
// called (or ctx ends), that msgs are being worked on: work longer than the
// ack wait (a commit on a slow database, a revocation waiting on the
// blast-radius limit) is not redelivered meanwhile, and the ack wait can
// stay short, so a process killed mid-batch costs its batch at most that.
func KeepInProgress(ctx context.Context, msgs []jetstream.Msg, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pause.Every(ctx, interval, nil, func() {
			for _, m := range msgs {
				_ = m.InProgress()
			}
		})
	}()
	return func() { cancel(); <-done }
}
