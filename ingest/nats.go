package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
)

// Dead-letter headers, on JetStream and (as record headers) on Kafka.
const (
	HeaderReason        = "Leaseguard-Reason"
	HeaderSourceSubject = "Leaseguard-Source-Subject"
	HeaderSourceStream  = "Leaseguard-Source-Stream"
	HeaderSourceOffset  = "Leaseguard-Source-Offset"
)

// NATSConfig configures the JetStream source.
type NATSConfig struct {
	// Stream holds AuditSubject and LeaseSubject; created if absent.
	Stream string
	// Replicas of the audit and dead-letter streams on a JetStream
	// cluster (below 1: 1).
	Replicas     int
	AuditSubject string
	LeaseSubject string
	// Consumer is the durable pull consumer's name.
	Consumer string
	// DeadLetterSubject prefixes dead letters: <prefix>.audit, <prefix>.lease.
	// Its stream (DeadLetterStream) is created if absent.
	DeadLetterSubject string
	DeadLetterStream  string
	// DeadLetterMaxAge bounds how long dead letters are kept (0: 7 days).
	DeadLetterMaxAge time.Duration
	// MaxAge bounds how long the audit stream keeps entries (0: 7 days).
	MaxAge        time.Duration
	Batch         int
	MaxAckPending int
	AckWait       time.Duration
	// FillWait is how long to wait for more messages once one has arrived.
	FillWait time.Duration
	// Backoff for redelivery after a transient failure, by delivery count.
	Backoff []time.Duration
	// Progress hears of each batch committed (nil: nobody).
	Progress *progress.Worker
}

// DefaultNATSConfig returns the defaults documented in docs/configuration.md.
func DefaultNATSConfig() NATSConfig {
	return NATSConfig{
		Stream:            "VAULT_AUDIT",
		AuditSubject:      "vault.audit.>",
		LeaseSubject:      "vault.leases.>",
		Consumer:          "leaseguard-ingest",
		DeadLetterSubject: "leaseguard.deadletter",
		DeadLetterStream:  "LEASEGUARD_DEADLETTER",
		MaxAge:            7 * 24 * time.Hour,
		Batch:             500,
		MaxAckPending:     4096,
		AckWait:           30 * time.Second,
		FillWait:          5 * time.Millisecond,
		// Capped at a few seconds: a ledger failure is a state store that
		// is down or silent, and ingest must resume as soon as it is back.
		Backoff: []time.Duration{time.Second, 2 * time.Second, 5 * time.Second},
	}
}

// Validate checks the configuration.
func (c NATSConfig) Validate() error {
	switch {
	case c.Stream == "" || c.Consumer == "" || c.DeadLetterStream == "":
		return errors.New("nats source: stream, consumer and dead-letter stream names are required")
	case c.AuditSubject == "":
		return errors.New("nats source: audit subject is required")
	case c.DeadLetterSubject == "" || strings.ContainsAny(c.DeadLetterSubject, "*>"):
		return errors.New("nats source: dead-letter subject must be a plain subject prefix")
	case c.Batch <= 0 || c.MaxAckPending < c.Batch:
		return fmt.Errorf("nats source: batch %d must be positive and at most max ack pending %d", c.Batch, c.MaxAckPending)
	case c.AckWait <= 0:
		return errors.New("nats source: ack wait must be positive")
	}
	for _, s := range []string{c.AuditSubject, c.LeaseSubject} {
		if s != "" && (subjectOverlaps(s, c.DeadLetterSubject+".>")) {
			return fmt.Errorf("nats source: subject %q overlaps the dead-letter subject", s)
		}
	}
	return nil
}

// NATSSource consumes the audit stream with a durable pull consumer.
type NATSSource struct {
	cfg     NATSConfig
	js      jetstream.JetStream
	proc    *Processor
	metrics *Metrics
	logger  *slog.Logger
	// stream is the audit stream (EnsureStreams), to erase messages from.
	stream jetstream.Stream
	// beforeAck, when set (tests), runs after a batch is committed and
	// before it is acknowledged; an error simulates a crash there.
	beforeAck func() error
}

// NewNATSSource builds a source; Run consumes.
func NewNATSSource(cfg NATSConfig, js jetstream.JetStream, proc *Processor, metrics *Metrics, logger *slog.Logger) (*NATSSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = DefaultNATSConfig().Backoff
	}
	if cfg.FillWait <= 0 {
		cfg.FillWait = DefaultNATSConfig().FillWait
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &NATSSource{cfg: cfg, js: js, proc: proc, metrics: metrics, logger: logger}, nil
}

// EnsureStreams creates or updates the audit and dead-letter streams and
// the durable consumer.
func (s *NATSSource) EnsureStreams(ctx context.Context) (jetstream.Consumer, error) {
	subjects := []string{s.cfg.AuditSubject}
	if s.cfg.LeaseSubject != "" {
		subjects = append(subjects, s.cfg.LeaseSubject)
	}
	maxAge := s.cfg.MaxAge
	if maxAge <= 0 {
		maxAge = 7 * 24 * time.Hour
	}
	stream, err := bus.EnsureStream(ctx, s.js, jetstream.StreamConfig{
		Name:       s.cfg.Stream,
		Subjects:   subjects,
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     maxAge,
		Duplicates: 2 * time.Minute,
		Replicas:   max(1, s.cfg.Replicas),
	})
	if err := bus.CheckServer(s.js.Conn()); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", s.cfg.Stream, err)
	}
	s.stream = stream
	if err := bus.EnsureDeadLetterStream(ctx, s.js, s.cfg.DeadLetterStream, s.cfg.DeadLetterSubject, s.cfg.DeadLetterMaxAge, s.cfg.Replicas); err != nil {
		return nil, err
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, jetstream.ConsumerConfig{
		Durable:        s.cfg.Consumer,
		Description:    "leaseguard ingest: Vault audit entries and lease events into the lease ledger",
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        s.cfg.AckWait,
		MaxAckPending:  s.cfg.MaxAckPending,
		MaxDeliver:     -1, // a database outage must never drop an event
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		FilterSubjects: subjects,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s: %w", s.cfg.Consumer, err)
	}
	return cons, nil
}

// Run consumes until ctx is cancelled. Batches go through two stages:
// while one batch's ledger transaction commits and its messages are
// acknowledged, the next batch is pulled and decoded (Processor.Prepare),
// so decoding does not wait for the database nor the database for
// decoding. Batches commit in the order they were pulled. The batch
// committing when ctx ends is finished (committed and acknowledged, or
// left for redelivery), never half-applied; a batch decoded but not yet
// committing when ctx ends is handed back at once (nak without delay).
func (s *NATSSource) Run(ctx context.Context) error {
	cons, err := s.EnsureStreams(ctx)
	if err != nil {
		return err
	}
	s.logger.Info("ingest consuming", "stream", s.cfg.Stream, "consumer", s.cfg.Consumer)
	// One prepared batch waits while another commits.
	prepared := make(chan natsBatch, 1)
	var pullErr error
	go func() {
		defer close(prepared)
		pullErr = bus.PullBatches(ctx, cons, s.cfg.Batch, s.cfg.FillWait, s.logger, func(_ context.Context, batch []jetstream.Msg) {
			prepared <- s.prepare(batch)
		})
	}()
	for b := range prepared {
		if ctx.Err() != nil {
			// Stopping: a batch not yet committing is handed back.
			s.release(b)
			continue
		}
		s.cfg.Progress.Start()
		s.cfg.Progress.Finish(s.finish(context.WithoutCancel(ctx), b))
	}
	if pullErr != nil {
		return fmt.Errorf("consumer %s: %w", s.cfg.Consumer, pullErr)
	}
	return nil
}

// natsBatch is a pulled batch, decoded.
type natsBatch struct {
	msgs []jetstream.Msg
	in   []Message
	prep *Prepared
	// err: preparing panicked; every message is retried.
	err error
}

// prepare decodes a pulled batch. The slice is copied: the puller reuses
// its own.
func (s *NATSSource) prepare(batch []jetstream.Msg) (b natsBatch) {
	b.msgs = slices.Clone(batch)
	b.in = make([]Message, len(batch))
	for i, m := range batch {
		b.in[i] = Message{Data: m.Data(), LeaseEvent: s.isLeaseSubject(m.Subject()), Source: s.sourceRef(m)}
	}
	defer func() {
		if p := recover(); p != nil {
			b.prep, b.err = nil, fmt.Errorf("panic in processing: %v", p)
		}
	}()
	b.prep = s.proc.Prepare(b.in)
	return b
}

// release hands a batch back for immediate redelivery: nothing of it was
// committed.
func (s *NATSSource) release(b natsBatch) {
	s.logger.Info("ingest stopping; decoded batch handed back for redelivery", "messages", len(b.msgs))
	for _, m := range b.msgs {
		if err := m.Nak(); err != nil {
			s.logger.Warn("nak failed; message will be redelivered after ack wait", "err", err)
		}
	}
}

// finish commits a prepared batch and acknowledges, dead-letters or naks
// each of its messages; a message that carried a plaintext secret is then
// erased from the audit stream. It returns why the batch did not commit.
func (s *NATSSource) finish(ctx context.Context, b natsBatch) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckWait)
	defer cancel()
	defer bus.KeepInProgress(ctx, b.msgs, s.cfg.AckWait/3)()
	results, err := s.commitSafely(ctx, b)
	if err != nil {
		s.logger.Warn("ingest batch will be redelivered", "messages", len(b.msgs), "err", err)
	}
	if err == nil && s.beforeAck != nil {
		if hookErr := s.beforeAck(); hookErr != nil {
			return hookErr
		}
	}
	var toErase []jetstream.Msg // acknowledged, carrying a plaintext secret
	for i, m := range b.msgs {
		r := results[i]
		switch r.Disposition {
		case DeadLetter:
			reason, _ := schemas.RedactText(r.Reason)
			if dlErr := s.deadLetter(ctx, m, b.in[i], reason); dlErr != nil {
				s.logger.Error("dead-letter publish failed; will retry", "err", dlErr, "reason", reason)
				s.nak(m)
				continue
			}
			s.logger.Warn("audit entry dead-lettered", "reason", reason, "subject", m.Subject(), "offset", b.in[i].Source.Offset)
			s.ack(m)
		case Retry:
			s.nak(m)
			continue
		default:
			s.ack(m)
		}
		if r.PlaintextSecret {
			toErase = append(toErase, m)
		}
	}
	// Erased once every message is acknowledged, so a slow erase holds
	// back no acknowledgement.
	for _, m := range toErase {
		s.erase(ctx, m)
	}
	return err
}

// commitSafely turns a panic in preparing or committing into a retry of
// the batch.
func (s *NATSSource) commitSafely(ctx context.Context, b natsBatch) (results []Result, err error) {
	retryAll := func(err error) []Result {
		results := make([]Result, len(b.msgs))
		for i := range results {
			results[i] = Result{Disposition: Retry, Reason: err.Error()}
		}
		return results
	}
	if b.err != nil {
		return retryAll(b.err), b.err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in processing: %v", p)
			results = retryAll(err)
		}
	}()
	return s.proc.Commit(ctx, b.prep)
}

func (s *NATSSource) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		s.logger.Warn("ack failed; message will be redelivered (harmless)", "err", err)
	}
}

func (s *NATSSource) nak(m jetstream.Msg) {
	delay := s.cfg.Backoff[0]
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 0 {
		i := int(md.NumDelivered) - 1
		if i >= len(s.cfg.Backoff) {
			i = len(s.cfg.Backoff) - 1
		}
		delay = s.cfg.Backoff[i]
	}
	if s.metrics != nil {
		s.metrics.retries.WithLabelValues("nats").Inc()
	}
	if err := m.NakWithDelay(delay); err != nil {
		s.logger.Warn("nak failed; message will be redelivered after ack wait", "err", err)
	}
}

func (s *NATSSource) deadLetter(ctx context.Context, m jetstream.Msg, msg Message, reason string) error {
	kind := "audit"
	if msg.LeaseEvent {
		kind = "lease"
	}
	out := nats.NewMsg(s.cfg.DeadLetterSubject + "." + kind)
	out.Data, reason = redactDeadLetter(m.Data(), reason)
	out.Header.Set(HeaderReason, reason)
	out.Header.Set(HeaderSourceSubject, m.Subject())
	out.Header.Set(HeaderSourceStream, msg.Source.Stream)
	out.Header.Set(HeaderSourceOffset, strconv.FormatInt(msg.Source.Offset, 10))
	// The message id makes a redelivered dead letter a duplicate.
	id := fmt.Sprintf("%s:%d", msg.Source.Stream, msg.Source.Offset)
	if _, err := s.js.PublishMsg(ctx, out, jetstream.WithMsgID(id)); err != nil {
		return err
	}
	if s.metrics != nil {
		s.metrics.deadLetters.WithLabelValues("nats").Inc()
	}
	return nil
}

func (s *NATSSource) sourceRef(m jetstream.Msg) schemas.SourceRef {
	ref := schemas.SourceRef{Transport: "nats", Stream: s.cfg.Stream, Subject: m.Subject()}
	if md, err := m.Metadata(); err == nil {
		ref.Offset = int64(md.Sequence.Stream)
	}
	return ref
}

func (s *NATSSource) isLeaseSubject(subject string) bool {
	return s.cfg.LeaseSubject != "" && subjectMatches(s.cfg.LeaseSubject, subject)
}

// subjectMatches reports whether a NATS subject matches a pattern with
// '*' (one token) and '>' (the rest) wildcards.
func subjectMatches(pattern, subject string) bool {
	pt := strings.Split(pattern, ".")
	st := strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

// subjectOverlaps is a conservative check that two patterns could match a
// common subject.
func subjectOverlaps(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(at) && i < len(bt); i++ {
		if at[i] == ">" || bt[i] == ">" {
			return true
		}
		if at[i] != "*" && bt[i] != "*" && at[i] != bt[i] {
			return false
		}
	}
	return len(at) == len(bt)
}
