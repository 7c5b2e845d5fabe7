package evidence

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
)

// JetStreamPublisher publishes events to a JetStream stream in CloudEvents
// structured mode: the body is the whole event, the Content-Type header is
// application/cloudevents+json, and the message id (Nats-Msg-Id) is the
// event id, so the stream stores an event published twice within its
// duplicate window once.
type JetStreamPublisher struct {
	js      jetstream.JetStream
	subject string
	stream  string
}

var _ Publisher = (*JetStreamPublisher)(nil)

// NewJetStreamPublisher publishes on cfg.Subject, expecting cfg.Stream to
// capture it (a publish the stream does not capture fails).
func NewJetStreamPublisher(js jetstream.JetStream, cfg RelayConfig) (*JetStreamPublisher, error) {
	if js == nil {
		return nil, errors.New("evidence: jetstream is required")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &JetStreamPublisher{js: js, subject: cfg.Subject, stream: cfg.Stream}, nil
}

// Publish sends one event and waits for the stream's ack. A duplicate ack
// (the stream already holds the id) is a success.
func (p *JetStreamPublisher) Publish(ctx context.Context, ev Event, body []byte) error {
	msg := nats.NewMsg(p.subject)
	msg.Data = body
	msg.Header.Set("Content-Type", ContentType)
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(p.stream)); err != nil {
		return fmt.Errorf("jetstream publish %s: %w", ev.ID, err)
	}
	return nil
}

// EnsureStream creates the evidence stream, or updates an existing one so
// that it captures cfg.Subject, de-duplicates over at least
// cfg.DuplicateWindow, and refuses message deletes and purges. Limits an
// operator set on an existing stream (age, size) are left as they are; a new
// stream has none.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg RelayConfig) (jetstream.Stream, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        cfg.Stream,
			Description: "leaseguard evidence: hash-chained CloudEvents",
			Subjects:    []string{cfg.Subject},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    cfg.Replicas,
			Duplicates:  cfg.DuplicateWindow,
			DenyDelete:  true,
			DenyPurge:   true,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, cfg.Stream) // another process created it
		} else if err == nil {
			return s, bus.WaitReplicas(ctx, s, cfg.Replicas)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("evidence stream %s: %w", cfg.Stream, err)
	}
	sc := s.CachedInfo().Config
	changed := false
	if !slices.Contains(sc.Subjects, cfg.Subject) {
		sc.Subjects = append(sc.Subjects, cfg.Subject)
		changed = true
	}
	if sc.Duplicates < cfg.DuplicateWindow {
		sc.Duplicates = cfg.DuplicateWindow
		changed = true
	}
	if !sc.DenyDelete || !sc.DenyPurge {
		sc.DenyDelete, sc.DenyPurge = true, true
		changed = true
	}
	if sc.Replicas != cfg.Replicas {
		sc.Replicas = cfg.Replicas
		changed = true
	}
	if !changed {
		return s, nil
	}
	s, err = js.UpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("update evidence stream %s: %w", cfg.Stream, err)
	}
	return s, bus.WaitReplicas(ctx, s, cfg.Replicas)
}
