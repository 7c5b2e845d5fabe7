package observer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
)

// Message is one event to publish.
type Message struct {
	Subject string
	// ID is the event id, used as JetStream message id (Nats-Msg-Id): a
	// message published twice within the stream's duplicate window is
	// stored once.
	ID   string
	Body []byte
}

// Publisher publishes events in order. It returns how many of msgs, from
// the first, were stored; the rest are published again later.
type Publisher interface {
	Publish(ctx context.Context, msgs []Message) (int, error)
}

// JetStreamPublisher publishes on JetStream and waits for the stream's
// acknowledgements.
type JetStreamPublisher struct {
	js     jetstream.JetStream
	stream string
}

var _ Publisher = (*JetStreamPublisher)(nil)

// NewJetStreamPublisher publishes into cfg.Stream (see EnsureStream).
func NewJetStreamPublisher(js jetstream.JetStream, cfg Config) (*JetStreamPublisher, error) {
	if js == nil {
		return nil, errors.New("observer: jetstream is required")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &JetStreamPublisher{js: js, stream: cfg.Stream}, nil
}

// Publish sends msgs asynchronously and waits for every acknowledgement.
func (p *JetStreamPublisher) Publish(ctx context.Context, msgs []Message) (int, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	var perr error
	for _, m := range msgs {
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Body
		msg.Header.Set("Content-Type", "application/json")
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID), jetstream.WithExpectStream(p.stream))
		if err != nil {
			perr = fmt.Errorf("publish %s: %w", m.ID, err)
			break
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return i, fmt.Errorf("publish %s: %w", msgs[i].ID, err)
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return len(futures), perr
}

// EnsureStream creates the stream that keeps the observer's events, or
// updates it to capture <prefix>.> with a duplicate window of ten minutes.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	_, err := bus.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "leaseguard database observer: role and session changes of the target databases",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.StreamMaxAge,
		Duplicates:  10 * time.Minute,
		Replicas:    max(1, cfg.StreamReplicas),
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", cfg.Stream, err)
	}
	return nil
}
