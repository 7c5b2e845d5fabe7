package revoker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/schemas"
)

// Targets resolves a target database name to its pool and its identity.
type Targets interface {
	Pool(name string) (*pgxpool.Pool, bool)
	Identity(ctx context.Context, name string) (schemas.TargetIdentity, error)
}

// ServiceConfig configures the revocation consumer.
type ServiceConfig struct {
	Queue    QueueConfig
	Consumer string
	// DeadLetterSubject prefixes dead letters (<prefix>.revocation).
	DeadLetterSubject string
	// DeadLetterMaxAge bounds how long dead letters are kept (0: 7 days).
	DeadLetterMaxAge time.Duration
	// DeadLetterReplicas: replicas of the dead-letter stream (below 1: 1).
	DeadLetterReplicas int
	AckWait            time.Duration
	// MaxDeliver bounds attempts; the last failure is recorded as failed
	// and the command dead-lettered.
	MaxDeliver int
	Backoff    []time.Duration
	// Batch is how many commands are dropped in one target transaction.
	Batch    int
	FillWait time.Duration
	// Activity, when set, counts the batches being carried out.
	Activity *Activity
	// InFlight is how many batches are carried out at once (0: 2). A
	// batch waiting on a role another session holds does not hold back
	// the next, and one batch's claims and records overlap another's
	// drops instead of leaving the target idle. Drops in one database
	// still take turns on the target's drop lock.
	InFlight int
}

// DefaultInFlight is the batches a revoker carries out at once by default.
const DefaultInFlight = 2

// MaxInFlight bounds InFlight: each batch in flight holds a state-store
// and a target connection.
const MaxInFlight = 8

func (c ServiceConfig) inFlight() int {
	if c.InFlight <= 0 {
		return DefaultInFlight
	}
	return c.InFlight
}

// DefaultServiceConfig returns the documented defaults.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{
		Queue:             DefaultQueueConfig(),
		Consumer:          "leaseguard-revoker",
		DeadLetterSubject: "leaseguard.deadletter",
		AckWait:           30 * time.Second,
		MaxDeliver:        8,
		Backoff:           []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute},
		Batch:             100,
		FillWait:          20 * time.Millisecond,
	}
}

// Validate checks the configuration.
func (c ServiceConfig) Validate() error {
	if err := c.Queue.Validate(); err != nil {
		return err
	}
	switch {
	case c.Consumer == "" || c.DeadLetterSubject == "":
		return errors.New("revoker: consumer and dead-letter subject are required")
	case c.AckWait <= 0 || c.MaxDeliver < 1 || c.Batch < 1:
		return errors.New("revoker: ack wait, max deliver and batch must be positive")
	case len(c.Backoff) == 0:
		return errors.New("revoker: backoff is empty")
	case c.InFlight > MaxInFlight:
		return fmt.Errorf("revoker: %d batches in flight; at most %d", c.InFlight, MaxInFlight)
	}
	return nil
}

// Service consumes revocation commands from the JetStream work queue and
// carries them out through an Executor, which records each outcome and its
// evidence in one state-store transaction before the command is
// acknowledged.
type Service struct {
	cfg     ServiceConfig
	js      jetstream.JetStream
	exec    *Executor
	logger  *slog.Logger
	metrics *Metrics
}

// NewService builds the consumer.
func NewService(cfg ServiceConfig, js jetstream.JetStream, exec *Executor) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if js == nil || exec == nil {
		return nil, errors.New("revoker: jetstream and executor are required")
	}
	return &Service{cfg: cfg, js: js, exec: exec, logger: exec.Logger, metrics: exec.Metrics}, nil
}

// EnsureConsumer creates the work-queue stream and the durable consumer.
func (s *Service) EnsureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	q, _ := NewQueue(s.cfg.Queue, s.js)
	if err := q.EnsureStream(ctx); err != nil {
		return nil, err
	}
	if err := bus.EnsureDeadLetterStream(ctx, s.js, "", s.cfg.DeadLetterSubject, s.cfg.DeadLetterMaxAge, s.cfg.DeadLetterReplicas); err != nil {
		return nil, err
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Queue.Stream, jetstream.ConsumerConfig{
		Durable:     s.cfg.Consumer,
		Description: "leaseguard revoker: drops database users named by signed revocation commands",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     s.cfg.AckWait,
		MaxDeliver:  s.cfg.MaxDeliver,
		// The batches in hand and what the pull has fetched ahead (twice
		// a batch, see bus.PullBatches).
		MaxAckPending: (s.cfg.inFlight() + 2) * s.cfg.Batch,
		FilterSubject: s.cfg.Queue.Subject,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s: %w", s.cfg.Consumer, err)
	}
	return cons, nil
}

// Run consumes until ctx ends; the batch in hand is finished first.
func (s *Service) Run(ctx context.Context) error {
	cons, err := s.EnsureConsumer(ctx)
	if err != nil {
		return err
	}
	// One pull hands each batch to a free worker. handle gets the run's
	// own context: a batch in hand is finished, but commands still
	// waiting on the blast-radius limit at shutdown are handed back at
	// once (the Executor finishes work it started).
	pull := func(hand func([]jetstream.Msg)) error {
		return bus.PullBatches(ctx, cons, s.cfg.Batch, s.cfg.FillWait, s.logger,
			func(_ context.Context, msgs []jetstream.Msg) { hand(slices.Clone(msgs)) })
	}
	err = InFlight(s.cfg.inFlight(), pull, func(msgs []jetstream.Msg) { s.handle(ctx, msgs) })
	if err != nil {
		return fmt.Errorf("consumer %s: %w", s.cfg.Consumer, err)
	}
	return nil
}

func (s *Service) handle(ctx context.Context, msgs []jetstream.Msg) {
	// A batch may wait on the blast-radius limit for longer than the ack
	// wait: the messages are kept in progress meanwhile, and the batch is
	// bounded by the longest a command may live.
	ctx, cancel := context.WithTimeout(ctx, MaxCommandTTL)
	defer cancel()
	defer s.cfg.Activity.begin()()
	s.exec.Progress.Start()
	defer bus.KeepInProgress(ctx, msgs, s.cfg.AckWait/3)()
	// Dead letters are written even while shutting down.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer wcancel()
	var cmds []schemas.RevocationCommand
	var held []jetstream.Msg
	var delivered []int
	for _, m := range msgs {
		cmd, err := DecodeCommand(m.Data())
		if err != nil {
			s.deadLetter(wctx, m, err.Error())
			continue
		}
		n := 1
		if md, err := m.Metadata(); err == nil {
			n = int(md.NumDelivered)
		}
		cmds = append(cmds, cmd)
		held = append(held, m)
		delivered = append(delivered, n)
	}
	done := s.execute(ctx, cmds, func(i int) bool { return delivered[i] >= s.cfg.MaxDeliver })
	retried := 0
	for i, d := range done {
		switch {
		case d.Retry:
			retried++
			s.nak(held[i], delivered[i])
		case d.Result.Outcome == schemas.OutcomeFailed:
			s.deadLetter(wctx, held[i], "revocation failed after "+strconv.Itoa(delivered[i])+" attempts: "+d.Result.Reason)
		default:
			s.ack(held[i])
		}
	}
	s.exec.Progress.Finish(handedBack(retried, len(msgs)))
}

// execute carries out cmds. A panic the Executor did not contain (one in a
// drop or its record is contained there) hands the batch back for a retry
// instead of ending the process; on a command's last attempt it fails, and
// the command is dead-lettered with the panic as its reason.
func (s *Service) execute(ctx context.Context, cmds []schemas.RevocationCommand, final func(i int) bool) (done []Executed) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		reason, _ := schemas.RedactText(fmt.Sprintf("panic in revocation: %v", p))
		s.logger.Error("revocation batch panicked; handed back", "commands", len(cmds), "reason", reason, "stack", string(debug.Stack()))
		done = make([]Executed, len(cmds))
		for i, cmd := range cmds {
			done[i] = Executed{Command: cmd, Retry: !final(i), Err: errors.New(reason),
				Result: schemas.RevocationResult{CommandID: cmd.ID, Database: cmd.Database, DBUser: cmd.DBUser,
					Outcome: schemas.OutcomeFailed, Reason: reason}}
		}
	}()
	return s.exec.Execute(ctx, cmds, final)
}

// errHandedBack: every command of a batch went back for a retry.
var errHandedBack = errors.New("every command handed back for a retry")

// handedBack is what a batch tells the progress tracker: no progress when
// all its commands went back for a retry; any other batch settled some.
func handedBack(retried, msgs int) error {
	if retried > 0 && retried == msgs {
		return errHandedBack
	}
	return nil
}

func (s *Service) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		s.logger.Warn("ack failed; the command will be redelivered and found done", "err", err)
	}
}

func (s *Service) nak(m jetstream.Msg, delivered int) {
	i := delivered - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s.cfg.Backoff) {
		i = len(s.cfg.Backoff) - 1
	}
	s.metrics.retries.Inc()
	if err := m.NakWithDelay(s.cfg.Backoff[i]); err != nil {
		s.logger.Warn("nak failed; redelivery after ack wait", "err", err)
	}
}

// deadLetter stores a command that cannot be carried out, with its reason.
// Anything in it that looks like a secret (a forged message can carry
// one) is redacted first, body and reason.
func (s *Service) deadLetter(ctx context.Context, m jetstream.Msg, reason string) {
	out := nats.NewMsg(s.cfg.DeadLetterSubject + ".revocation")
	out.Data, _ = schemas.Redact(m.Data())
	reason, _ = schemas.RedactText(reason)
	out.Header.Set("Leaseguard-Reason", reason)
	out.Header.Set("Leaseguard-Source-Subject", m.Subject())
	id := "revocation"
	if md, err := m.Metadata(); err == nil {
		out.Header.Set("Leaseguard-Source-Offset", strconv.FormatUint(md.Sequence.Stream, 10))
		id = fmt.Sprintf("%s:%d", s.cfg.Queue.Stream, md.Sequence.Stream)
	}
	if _, err := s.js.PublishMsg(ctx, out, jetstream.WithMsgID(id)); err != nil {
		s.logger.Error("dead-letter publish failed; command will be redelivered", "err", err, "reason", reason)
		_ = m.NakWithDelay(s.cfg.Backoff[0])
		return
	}
	s.metrics.deadLetters.Inc()
	s.logger.Warn("revocation command dead-lettered", "reason", reason)
	_ = m.Ack()
}

// DecodeCommand strictly decodes a revocation command: unknown fields,
// a wrong type and missing fields are errors.
func DecodeCommand(b []byte) (schemas.RevocationCommand, error) {
	var cmd schemas.RevocationCommand
	if len(b) > 64<<10 {
		return cmd, fmt.Errorf("command is %d bytes, over the 65536 byte limit", len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cmd); err != nil {
		return cmd, fmt.Errorf("not a revocation command: %v", err)
	}
	if dec.More() {
		return cmd, errors.New("not a revocation command: trailing data")
	}
	switch {
	case cmd.Type != schemas.RevocationCommandType:
		return cmd, fmt.Errorf("type %q is not %q", cmd.Type, schemas.RevocationCommandType)
	case cmd.ID == "":
		return cmd, errors.New("missing id")
	case cmd.Database == "":
		return cmd, errors.New("missing database")
	case cmd.DBUser == "":
		return cmd, errors.New("missing db_user")
	case cmd.Rule == "":
		return cmd, errors.New("missing rule")
	}
	return cmd, nil
}

// transient reports whether a SQLSTATE (or its absence: a connection
// error) is worth retrying.
func transient(sqlstate string) bool {
	switch sqlstate {
	case "", "XX000", "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300", "08000", "08003", "08006", "08001", "08004":
		return true
	}
	return false
}

// txidStatus asks the target whether a transaction committed.
func txidStatus(ctx context.Context, pool *pgxpool.Pool, xid int64) (string, error) {
	var status *string
	if err := pool.QueryRow(ctx, `SELECT txid_status($1)`, xid).Scan(&status); err != nil {
		return "", err
	}
	if status == nil {
		return "unknown", nil
	}
	return *status, nil
}

// Metrics are the revoker's Prometheus metrics.
type Metrics struct {
	outcomes     *prometheus.CounterVec
	retries      prometheus.Counter
	deadLetters  prometheus.Counter
	duplicates   prometheus.Counter
	throttled    prometheus.Counter
	batchSeconds prometheus.Histogram
	dropLockWait prometheus.Histogram
	dropLockHeld prometheus.Histogram
	expiryToDrop prometheus.Histogram
	steps        *prometheus.HistogramVec
	Throttling   prometheus.Gauge
}

// BatchSteps are the steps of a batch in the Executor, in order, as
// leaseguard_revocation_step_seconds labels them.
var BatchSteps = []string{"admit", "claim", "triage", "carry_out", "record"}

// step observes the time since start as one batch's time in step, and
// returns now, the start of the next step.
func (m *Metrics) step(step string, start time.Time) time.Time {
	now := time.Now()
	m.steps.WithLabelValues(step).Observe(now.Sub(start).Seconds())
	return now
}

// NewMetrics creates and registers (when reg is not nil) revoker metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_revocations_total",
			Help: "Revocation outcomes (dropped, already_absent, refused, failed), by refusing guard.",
		}, []string{"outcome", "guard"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_revocation_retries_total",
			Help: "Revocation commands handed back for a later attempt.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_revocation_dead_letters_total",
			Help: "Malformed or finally failed revocation commands dead-lettered.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_revocation_duplicates_total",
			Help: "Redelivered commands that were already recorded.",
		}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_revocation_throttled_seconds_total",
			Help: "Time automatic revocations waited on the blast-radius limit.",
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "leaseguard_revocation_batch_seconds",
			Help:    "Duration of one drop batch in a target database, its wait for the drop lock included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		dropLockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leaseguard_revocation_drop_lock_wait_seconds",
			Help: "Time one drop batch in a PostgreSQL target waited for its drop lock while other batches dropped " +
				"(part of leaseguard_revocation_batch_seconds).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		dropLockHeld: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leaseguard_revocation_drop_lock_held_seconds",
			Help: "Time one drop batch in a PostgreSQL target held its drop lock, to its commit; batches in one " +
				"database hold it one at a time (part of leaseguard_revocation_batch_seconds).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		expiryToDrop: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "leaseguard_revocation_expiry_to_drop_seconds",
			Help:    "From a lease's expiry in the ledger to the drop of its database user, for users dropped after their lease expired.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "leaseguard_revocation_step_seconds",
			Help: "Time one batch of revocation commands spent in each step of the Executor: admit (signatures, " +
				"targets, approvals), claim, triage (duplicates, guards without a database, sibling leases), " +
				"carry_out (the target's drop transaction and after-checks, per target database) and record " +
				"(outcomes and evidence, per target database).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"step"}),
		Throttling: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leaseguard_revocation_throttling",
			Help: "1 while automatic revocations wait on LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE (alert on it).",
		}),
	}
	// Exported at 0 from the start (a Vec shows no series before its first
	// use): dashboards show them, and increase() sees the first failure.
	for _, o := range []schemas.Outcome{schemas.OutcomeDropped, schemas.OutcomeAlreadyAbsent, schemas.OutcomeFailed} {
		m.outcomes.WithLabelValues(string(o), "")
	}
	for _, step := range BatchSteps {
		m.steps.WithLabelValues(step)
	}
	if reg != nil {
		reg.MustRegister(m.outcomes, m.retries, m.deadLetters, m.duplicates, m.throttled, m.batchSeconds, m.dropLockWait, m.dropLockHeld, m.expiryToDrop, m.steps, m.Throttling)
	}
	return m
}
