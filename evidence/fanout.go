package evidence

import (
	"context"
	"errors"
)

// Fanout publishes every event to several buses (NATS and Kafka). It fails
// when any of them fails, so the relay retries the event on all: the
// JetStream copy is de-duplicated by message id, a Kafka copy may repeat
// and consumers de-duplicate on the CloudEvents id.
type Fanout []Publisher

// Publish sends the event to every publisher.
func (f Fanout) Publish(ctx context.Context, ev Event, body []byte) error {
	var errs []error
	for _, p := range f {
		if err := p.Publish(ctx, ev, body); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
