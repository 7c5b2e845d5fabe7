package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PullBatches consumes cons in batches until ctx ends: it waits for one
// message, takes whatever else arrives within fillWait (up to max), and
// hands the batch to handle, which must settle every message (ack, nak or
// term). handle gets a context that is not cancelled with ctx, so the batch
// in hand when shutdown starts is finished rather than half-applied.
func PullBatches(ctx context.Context, cons jetstream.Consumer, max int, fillWait time.Duration, logger *slog.Logger,
	handle func(context.Context, []jetstream.Msg)) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * max))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer iter.Stop()
	batch := make([]jetstream.Msg, 0, max)
	for {
		first, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("consume: %w", err)
			}
			logger.Warn("pull", "err", err)
			continue
		}
		batch = append(batch[:0], first)
		for len(batch) < max {
			m, err := iter.Next(jetstream.NextMaxWait(fillWait))
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		handle(context.WithoutCancel(ctx), batch)
		if ctx.Err() != nil {
			return nil
		}
	}
}
