package revoker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Targets resolves a target database name to its pool.
type Targets interface {
	Pool(name string) (*pgxpool.Pool, bool)
}

// ServiceConfig configures the revocation consumer.
type ServiceConfig struct {
	Queue    QueueConfig
	Consumer string
	// DeadLetterSubject prefixes dead letters (<prefix>.revocation).
	DeadLetterSubject string
	AckWait           time.Duration
	// MaxDeliver bounds attempts; the last failure is recorded as failed
	// and the command dead-lettered.
	MaxDeliver int
	Backoff    []time.Duration
	// Batch is how many commands are dropped in one target transaction.
	Batch    int
	FillWait time.Duration
}

// DefaultServiceConfig returns the documented defaults.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{
		Queue:             DefaultQueueConfig(),
		Consumer:          "leaseguard-revoker",
		DeadLetterSubject: "leaseguard.deadletter",
		AckWait:           2 * time.Minute,
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
	}
	return nil
}

// ServiceDeps are the consumer's collaborators.
type ServiceDeps struct {
	JS       jetstream.JetStream
	Dropper  *Dropper
	Verifier *Verifier
	Limiter  *Limiter
	Targets  Targets
	// State is the state-store pool (search_path set to its schema).
	State    *pgxpool.Pool
	Evidence evidence.Builder
	Logger   *slog.Logger
	Metrics  *Metrics
	Clock    func() time.Time
}

// Service consumes revocation commands and drops users, recording each
// outcome and its evidence in one state-store transaction before it
// acknowledges the command.
type Service struct {
	cfg ServiceConfig
	ServiceDeps
}

// NewService builds the consumer.
func NewService(cfg ServiceConfig, d ServiceDeps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.JS == nil || d.Dropper == nil || d.Verifier == nil || d.Targets == nil || d.State == nil {
		return nil, errors.New("revoker: jetstream, dropper, verifier, targets and state store are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	return &Service{cfg: cfg, ServiceDeps: d}, nil
}

// EnsureConsumer creates the work-queue stream and the durable consumer.
func (s *Service) EnsureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	q, _ := NewQueue(s.cfg.Queue, s.JS)
	if err := q.EnsureStream(ctx); err != nil {
		return nil, err
	}
	if err := bus.EnsureDeadLetterStream(ctx, s.JS, "", s.cfg.DeadLetterSubject); err != nil {
		return nil, err
	}
	cons, err := s.JS.CreateOrUpdateConsumer(ctx, s.cfg.Queue.Stream, jetstream.ConsumerConfig{
		Durable:       s.cfg.Consumer,
		Description:   "leaseguard revoker: drops database users named by signed revocation commands",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    s.cfg.MaxDeliver,
		MaxAckPending: 4 * s.cfg.Batch,
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
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.Batch))
	if err != nil {
		return fmt.Errorf("consume %s: %w", s.cfg.Consumer, err)
	}
	defer iter.Stop()
	batch := make([]jetstream.Msg, 0, s.cfg.Batch)
	for {
		first, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("consume %s: %w", s.cfg.Consumer, err)
			}
			s.Logger.Warn("revoker pull", "err", err)
			continue
		}
		batch = append(batch[:0], first)
		for len(batch) < s.cfg.Batch {
			m, err := iter.Next(jetstream.NextMaxWait(s.cfg.FillWait))
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		s.handle(context.WithoutCancel(ctx), batch)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// pending is one command on its way through a batch.
type pending struct {
	msg       jetstream.Msg
	cmd       schemas.RevocationCommand
	claim     store.Claim
	delivered int
}

func (s *Service) handle(ctx context.Context, msgs []jetstream.Msg) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckWait)
	defer cancel()
	byDB := map[string][]*pending{}
	var order []string
	for _, m := range msgs {
		p, ok := s.admit(ctx, m)
		if !ok {
			continue
		}
		if _, seen := byDB[p.cmd.Database]; !seen {
			order = append(order, p.cmd.Database)
		}
		byDB[p.cmd.Database] = append(byDB[p.cmd.Database], p)
	}
	for _, db := range order {
		s.dropAndRecord(ctx, db, byDB[db])
	}
}

// admit decodes, authenticates and claims one message. Messages it settles
// itself (dead letters, refusals, already-done commands) return false.
func (s *Service) admit(ctx context.Context, m jetstream.Msg) (*pending, bool) {
	p := &pending{msg: m, delivered: 1}
	if md, err := m.Metadata(); err == nil {
		p.delivered = int(md.NumDelivered)
	}
	cmd, err := DecodeCommand(m.Data())
	if err != nil {
		s.deadLetter(ctx, m, err.Error())
		return nil, false
	}
	p.cmd = cmd
	if err := s.Verifier.Verify(cmd); err != nil {
		s.settle(ctx, p, s.refusal(cmd, err))
		return nil, false
	}
	if _, ok := s.Targets.Pool(cmd.Database); !ok {
		s.settle(ctx, p, s.refusal(cmd, &Refusal{Guard: "unknown_target", Reason: fmt.Sprintf("no target database named %q is configured", cmd.Database)}))
		return nil, false
	}
	claim, err := store.ClaimRevocation(ctx, s.State, cmd)
	if err != nil {
		s.Logger.Warn("cannot claim revocation; will retry", "command_id", cmd.ID, "err", err)
		s.nak(p)
		return nil, false
	}
	p.claim = claim
	if claim.Done {
		s.Metrics.duplicates.Inc()
		s.ack(m)
		return nil, false
	}
	if s.Limiter != nil {
		waited, err := s.Limiter.Wait(ctx, cmd.Emergency)
		if waited > 0 {
			s.Metrics.throttled.Add(waited.Seconds())
		}
		if err != nil {
			s.nak(p)
			return nil, false
		}
	}
	return p, true
}

func (s *Service) refusal(cmd schemas.RevocationCommand, err error) schemas.RevocationResult {
	now := s.Clock()
	res := schemas.RevocationResult{CommandID: cmd.ID, Database: cmd.Database, DBUser: cmd.DBUser,
		Outcome: schemas.OutcomeRefused, Reason: err.Error(), StartedAt: now, FinishedAt: now}
	var r *Refusal
	if errors.As(err, &r) {
		res.Guard, res.Reason = r.Guard, r.Reason
	}
	return res
}

func (s *Service) dropAndRecord(ctx context.Context, db string, ps []*pending) {
	pool, _ := s.Targets.Pool(db)
	cmds := make([]schemas.RevocationCommand, len(ps))
	for i, p := range ps {
		cmds[i] = p.cmd
	}
	hookCtx := WithBeforeCommit(ctx, func(ctx context.Context, xid int64, ids []string) error {
		return store.SetTargetXID(ctx, s.State, ids, xid)
	})
	start := time.Now()
	results := s.Dropper.DropBatch(hookCtx, pool, db, cmds)
	s.Metrics.batchSeconds.Observe(time.Since(start).Seconds())
	for i, p := range ps {
		res := results[i]
		if res.Outcome == schemas.OutcomeAlreadyAbsent && p.claim.TargetXID != 0 {
			if status, err := txidStatus(ctx, pool, p.claim.TargetXID); err == nil && status == "committed" {
				// An earlier delivery dropped the role and died before it
				// recorded the outcome: the drop is ours.
				res.Outcome = schemas.OutcomeDropped
				res.Reason = fmt.Sprintf("dropped by an earlier attempt (target transaction %d committed) that ended before recording", p.claim.TargetXID)
			}
		}
		if res.Outcome == schemas.OutcomeFailed && transient(res.SQLState) && p.delivered < s.cfg.MaxDeliver {
			s.Logger.Warn("revocation failed; will retry", "database", db, "db_user", res.DBUser, "sqlstate", res.SQLState, "reason", res.Reason)
			s.nak(p)
			continue
		}
		s.settle(ctx, p, res)
		if res.Outcome == schemas.OutcomeFailed {
			s.deadLetter(ctx, p.msg, "revocation failed after "+strconv.Itoa(p.delivered)+" attempts: "+res.Reason)
		}
	}
}

// settle records the outcome and its evidence in one transaction, then
// acknowledges the message. If recording fails the message is redelivered.
func (s *Service) settle(ctx context.Context, p *pending, res schemas.RevocationResult) {
	if err := s.record(ctx, p.cmd, res); err != nil {
		s.Logger.Warn("cannot record revocation outcome; will retry", "command_id", p.cmd.ID, "err", err)
		s.nak(p)
		return
	}
	s.Metrics.outcomes.WithLabelValues(string(res.Outcome), res.Guard).Inc()
	s.Logger.Info("revocation", "outcome", res.Outcome, "database", res.Database, "db_user", res.DBUser,
		"command_id", res.CommandID, "rule", p.cmd.Rule, "guard", res.Guard, "reason", res.Reason,
		"sessions_terminated", res.SessionsTerminated)
	s.ack(p.msg)
}

func (s *Service) record(ctx context.Context, cmd schemas.RevocationCommand, res schemas.RevocationResult) error {
	return pgx.BeginFunc(ctx, s.State, func(tx pgx.Tx) error {
		if res.Outcome == schemas.OutcomeRefused {
			// Refused commands may never have been claimed.
			if _, err := store.ClaimRevocation(ctx, tx, cmd); err != nil {
				return err
			}
		}
		var lc *evidence.LeaseContext
		if cmd.LeaseID != "" {
			lc = &evidence.LeaseContext{LeaseID: cmd.LeaseID}
			_ = tx.QueryRow(ctx, `SELECT coalesce(last_request_id, ''), coalesce(entity_id, ''), coalesce(remote_address, ''),
				coalesce(mount, ''), coalesce(role, '') FROM leases WHERE lease_id = $1`, cmd.LeaseID).
				Scan(&lc.VaultRequestID, &lc.EntityID, &lc.RemoteAddress, &lc.Mount, &lc.Role)
		}
		ev, err := s.Evidence.Revocation(cmd, res, lc)
		if err != nil {
			return fmt.Errorf("build evidence: %w", err)
		}
		fresh, err := store.FinishRevocation(ctx, tx, res, ev.ID, s.Clock())
		if err != nil || !fresh {
			return err // already recorded by another attempt: no second evidence
		}
		if _, err := evidence.Append(ctx, tx, ev); err != nil {
			return fmt.Errorf("append evidence: %w", err)
		}
		return nil
	})
}

func (s *Service) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		s.Logger.Warn("ack failed; the command will be redelivered and found done", "err", err)
	}
}

func (s *Service) nak(p *pending) {
	i := p.delivered - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s.cfg.Backoff) {
		i = len(s.cfg.Backoff) - 1
	}
	s.Metrics.retries.Inc()
	if err := p.msg.NakWithDelay(s.cfg.Backoff[i]); err != nil {
		s.Logger.Warn("nak failed; redelivery after ack wait", "err", err)
	}
}

func (s *Service) deadLetter(ctx context.Context, m jetstream.Msg, reason string) {
	out := nats.NewMsg(s.cfg.DeadLetterSubject + ".revocation")
	out.Data = m.Data()
	out.Header.Set("Leaseguard-Reason", reason)
	out.Header.Set("Leaseguard-Source-Subject", m.Subject())
	id := "revocation"
	if md, err := m.Metadata(); err == nil {
		out.Header.Set("Leaseguard-Source-Offset", strconv.FormatUint(md.Sequence.Stream, 10))
		id = fmt.Sprintf("%s:%d", s.cfg.Queue.Stream, md.Sequence.Stream)
	}
	if _, err := s.JS.PublishMsg(ctx, out, jetstream.WithMsgID(id)); err != nil {
		s.Logger.Error("dead-letter publish failed; command will be redelivered", "err", err, "reason", reason)
		_ = m.NakWithDelay(s.cfg.Backoff[0])
		return
	}
	s.Metrics.deadLetters.Inc()
	s.Logger.Warn("revocation command dead-lettered", "reason", reason)
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
	case "", "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300", "08000", "08003", "08006", "08001", "08004":
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
	Throttling   prometheus.Gauge
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
			Help:    "Duration of one drop batch in a target database.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		Throttling: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leaseguard_revocation_throttling",
			Help: "1 while automatic revocations wait on LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE (alert on it).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.outcomes, m.retries, m.deadLetters, m.duplicates, m.throttled, m.batchSeconds, m.Throttling)
	}
	return m
}
