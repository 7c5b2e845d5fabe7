package revoker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/schemas"
)

// QueueConfig names the JetStream work queue of revocation commands.
type QueueConfig struct {
	Stream  string
	Subject string
	// Duplicates is the de-duplication window for command ids.
	Duplicates time.Duration
	// Replicas of the stream on a JetStream cluster (below 1: 1).
	Replicas int
}

// DefaultQueueConfig returns the documented defaults.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{Stream: "LEASEGUARD_REVOCATIONS", Subject: "leaseguard.revocations", Duplicates: 10 * time.Minute}
}

// Validate checks the configuration.
func (c QueueConfig) Validate() error {
	if c.Stream == "" || c.Subject == "" {
		return errors.New("revocation queue: stream and subject are required")
	}
	return nil
}

// Queue publishes revocation commands to the work queue. It is the
// detectors' and operators' way to ask for a drop.
type Queue struct {
	cfg QueueConfig
	js  jetstream.JetStream
}

// NewQueue builds a queue publisher.
func NewQueue(cfg QueueConfig, js jetstream.JetStream) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, js: js}, nil
}

// EnsureStream creates or updates the work-queue stream: each command is
// delivered to one revoker and removed once acknowledged.
func (q *Queue) EnsureStream(ctx context.Context) error {
	_, err := bus.EnsureStream(ctx, q.js, jetstream.StreamConfig{
		Name:       q.cfg.Stream,
		Subjects:   []string{q.cfg.Subject},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: q.cfg.Duplicates,
		Replicas:   max(1, q.cfg.Replicas),
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", q.cfg.Stream, err)
	}
	return nil
}

// Submit publishes the commands and waits until JetStream has stored every
// one. The message id is derived from the signed bytes (MessageID): the
// same command published twice within the duplicates window is stored
// once, and nobody can occupy the id of a command before it exists. A
// command issued again (a new nonce) is a new message, which the revoker's
// own idempotency (the command id) makes harmless.
func (q *Queue) Submit(ctx context.Context, cmds []schemas.RevocationCommand) error {
	futures := make([]jetstream.PubAckFuture, 0, len(cmds))
	for i := range cmds {
		body, err := json.Marshal(cmds[i])
		if err != nil {
			return fmt.Errorf("encode command %s: %w", cmds[i].ID, err)
		}
		f, err := q.js.PublishAsync(q.cfg.Subject, body, jetstream.WithMsgID(MessageID(body)))
		if err != nil {
			return fmt.Errorf("publish command %s: %w", cmds[i].ID, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish command %s: %w", cmds[i].ID, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
