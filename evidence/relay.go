package evidence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/backoff"
	"github.com/leaseguard/leaseguard/ops/progress"
)

// Publisher sends one event to the evidence bus. body is the event exactly
// as stored in the outbox (structured mode: the whole CloudEvent JSON).
// Publish returns nil only once the bus has durably accepted the event. It
// must be idempotent on ev.ID: the relay publishes an event again when it
// cannot tell whether the last attempt arrived.
type Publisher interface {
	Publish(ctx context.Context, ev Event, body []byte) error
}

// RelayMetrics receives what the relay does, for counters. Implementations
// must be safe for concurrent use.
type RelayMetrics interface {
	// Published: the bus accepted ev.
	Published(ev Event)
	// PublishFailed: publishing ev failed; it will be retried.
	PublishFailed(ev Event, err error)
}

// TxBeginner starts transactions: a pgxpool.Pool or a pgx.Conn.
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Relay defaults.
const (
	DefaultSubject         = "leaseguard.evidence"
	DefaultStream          = "LEASEGUARD_EVIDENCE"
	DefaultBatch           = 100
	DefaultInterval        = time.Second
	DefaultPublishTimeout  = 5 * time.Second
	DefaultStoreTimeout    = 10 * time.Second
	DefaultMaxBackoff      = 5 * time.Second
	DefaultDuplicateWindow = 10 * time.Minute
)

// RelayConfig configures a Relay and the evidence stream.
type RelayConfig struct {
	// Subject the events are published on; one subject, so the stream
	// holds them in chain order.
	Subject string
	// Stream that captures Subject.
	Stream string
	// Batch is how many events one pass publishes at most.
	Batch int
	// Interval between polls of the outbox when it is drained.
	Interval time.Duration
	// PublishTimeout bounds one publish, ack included.
	PublishTimeout time.Duration
	// StoreTimeout bounds each state-store step of a pass (begin, lock,
	// read, each mark, commit) and each probe of a store that was down.
	StoreTimeout time.Duration
	// MaxBackoff caps the wait between failed passes (it doubles from
	// Interval). While the state store is what failed, the relay probes it
	// every Interval during the wait and goes on as soon as it answers, so
	// the cap matters for a failing bus.
	MaxBackoff time.Duration
	// DuplicateWindow is the stream's de-duplication window on the message
	// id. The relay publishes an event again when it could not record the
	// last publish (ack lost, commit failed, crash): the next attempt comes
	// at most MaxBackoff + PublishTimeout later while the relay runs, so the
	// window must be at least twice that. A relay restarted after longer
	// than the window may publish an event twice; consumers de-duplicate on
	// the CloudEvents id, and VerifyFile skips an adjacent repeat.
	DuplicateWindow time.Duration
	// Replicas of the stream (EnsureStream).
	Replicas int
	// Logger; nil discards.
	Logger *slog.Logger
	// Metrics; nil counts nothing.
	Metrics RelayMetrics
	// Progress hears of each pass (nil: nobody).
	Progress *progress.Worker
	// Checkpoints makes the relay append signed checkpoints; nil: none.
	Checkpoints *Checkpointing
	// GiveWay, while it reports true, has the relay publish a backlog one
	// batch per Interval instead of one batch after another: revocations
	// are being carried out in this process (revoker.Activity). Their
	// outcomes and evidence are committed already; only publishing them
	// waits, and it shares the CPU with them: in a burst of 10,000 expired
	// leases, relaying at full speed took a fifth of it (bench/README.md).
	// nil: never.
	GiveWay func() bool
}

// Checkpointing is how a relay makes checkpoints (checkpoint.go).
type Checkpointing struct {
	// Signer signs them with the evidence key.
	Signer *CheckpointSigner
	// Builder gives the checkpoint events' source and version.
	Builder Builder
	// Interval is the cadence; zero means DefaultCheckpointInterval.
	Interval time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c RelayConfig) WithDefaults() RelayConfig {
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	if c.Checkpoints != nil && c.Checkpoints.Interval == 0 {
		cp := *c.Checkpoints
		cp.Interval = DefaultCheckpointInterval
		c.Checkpoints = &cp
	}
	return c
}

// Validate checks a configuration after WithDefaults.
func (c RelayConfig) Validate() error {
	switch {
	case c.Subject == "" || strings.ContainsAny(c.Subject, " \t\r\n*>") ||
		strings.HasPrefix(c.Subject, ".") || strings.HasSuffix(c.Subject, ".") || strings.Contains(c.Subject, ".."):
		return fmt.Errorf("evidence relay: subject %q must be a literal NATS subject", c.Subject)
	case c.Stream == "" || strings.ContainsAny(c.Stream, " \t\r\n.*>/\\"):
		return fmt.Errorf("evidence relay: stream name %q is invalid", c.Stream)
	case c.Batch <= 0:
		return fmt.Errorf("evidence relay: batch %d must be positive", c.Batch)
	case c.Interval <= 0 || c.PublishTimeout <= 0 || c.StoreTimeout <= 0 || c.MaxBackoff <= 0:
		return errors.New("evidence relay: interval, publish and store timeouts and max backoff must be positive")
	case c.MaxBackoff < c.Interval:
		return fmt.Errorf("evidence relay: max backoff %s is shorter than the interval %s", c.MaxBackoff, c.Interval)
	case c.DuplicateWindow < 2*(c.MaxBackoff+c.PublishTimeout):
		return fmt.Errorf("evidence relay: duplicate window %s must be at least twice max backoff + publish timeout (%s)",
			c.DuplicateWindow, 2*(c.MaxBackoff+c.PublishTimeout))
	case c.Replicas < 1:
		return fmt.Errorf("evidence relay: replicas %d must be at least 1", c.Replicas)
	}
	if cp := c.Checkpoints; cp != nil {
		switch {
		case cp.Signer == nil:
			return errors.New("evidence relay: checkpoints need the evidence signing key")
		case cp.Interval <= 0:
			return fmt.Errorf("evidence relay: checkpoint interval %s must be positive", cp.Interval)
		}
		return cp.Builder.validate()
	}
	return nil
}

type nopMetrics struct{}

func (nopMetrics) Published(Event)            {}
func (nopMetrics) PublishFailed(Event, error) {}

// Relay publishes the outbox to the evidence bus, in chain order, each event
// once it is committed: evidence can be delayed (bus down), never lost or
// reordered.
//
// Each pass is one transaction that first takes the evidence_relay_lock row
// with FOR UPDATE SKIP LOCKED: while one relay publishes, others find the
// row locked and wait for their next pass, so any number of relays may run
// and the events still leave in seq order. A pass publishes unpublished rows
// in seq order, awaiting each ack and marking the row, and stops at the
// first failure (later events wait: the order is the chain's). The marks
// commit at the end of the pass; if the relay dies before, the events are
// published again and the bus drops them as duplicates of their message id.
//
// An event that keeps failing (say, larger than the bus accepts) holds back
// every later one: its publish_attempts and last_error columns, the
// PublishFailed metric and the log say which.
type Relay struct {
	db  TxBeginner
	pub Publisher
	cfg RelayConfig
	log *slog.Logger
	// wake cuts a wait short (Wake).
	wake chan struct{}
}

// NewRelay makes a relay from the outbox in db to pub.
func NewRelay(db TxBeginner, pub Publisher, cfg RelayConfig) (*Relay, error) {
	if db == nil || pub == nil {
		return nil, errors.New("evidence relay: database and publisher are required")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Relay{db: db, pub: pub, cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1)}, nil
}

// Wake makes a waiting relay start its next pass now (the bus is back,
// events were appended); it never blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx is done, then returns nil. With Checkpoints it
// appends a checkpoint every Interval when events came after the last one,
// and once more when ctx ends, which a last pass, bounded by StoreTimeout
// plus PublishTimeout, then publishes. Failures (bus or database
// down) are logged and retried with a backoff doubling from Interval to
// MaxBackoff, with jitter (internal/backoff). A pass that published a
// whole batch is followed by the next at once, or after Interval while
// GiveWay says so. While the state store is down the relay probes it every Interval
// and starts the next pass as soon as it answers: a backlog leaves as soon
// as the store is back, not after the backoff.
func (r *Relay) Run(ctx context.Context) error {
	if r.cfg.Checkpoints == nil {
		r.relay(ctx)
		return nil
	}
	checkpointed := make(chan struct{})
	go func() {
		defer close(checkpointed)
		r.checkpoints(ctx)
	}()
	r.relay(ctx)
	<-checkpointed
	// Send the checkpoint made at shutdown, so the bus holds it too.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StoreTimeout+r.cfg.PublishTimeout)
	defer cancel()
	if _, err := r.PublishPending(fctx); err != nil {
		r.log.Warn("evidence relay: last pass at shutdown failed; the next relay publishes the rest", "err", err)
	}
	return nil
}

// relay is Run's loop of passes, until ctx is done.
func (r *Relay) relay(ctx context.Context) {
	failures := 0
	for {
		r.cfg.Progress.Start()
		n, err := r.PublishPending(ctx)
		r.cfg.Progress.Finish(err)
		if ctx.Err() != nil {
			return
		}
		wait, probe := r.next(n, err, &failures)
		if wait > 0 && !r.sleep(ctx, wait, probe) {
			return
		}
	}
}

// next is how long the relay waits after a pass that published n events
// and ended with err, and whether it probes the state store meanwhile;
// failures counts the passes in a row that failed without publishing.
func (r *Relay) next(n int, err error, failures *int) (wait time.Duration, probe bool) {
	switch {
	case err != nil && n == 0:
		*failures++
		wait, probe = r.backoff(*failures), !isPublishFailure(err)
		r.log.Warn("evidence relay: publishing failed, will retry", "err", err, "failures", *failures, "retry_in", wait)
	case err != nil || n >= r.cfg.Batch:
		*failures = 0 // the bus took events: more may go now
		if r.cfg.GiveWay != nil && r.cfg.GiveWay() {
			wait = r.cfg.Interval
		}
	default:
		if *failures > 0 {
			r.log.Info("evidence relay: publishing again", "after_failures", *failures)
		}
		*failures = 0
		wait = r.cfg.Interval
	}
	return wait, probe
}

// checkpoints appends a checkpoint every Interval, and one when ctx ends
// (bounded by StoreTimeout). A failure is logged; the next tick tries again.
func (r *Relay) checkpoints(ctx context.Context) {
	t := time.NewTicker(r.cfg.Checkpoints.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.checkpoint(ctx, "shutdown")
			return
		case <-t.C:
			if r.checkpoint(ctx, "cadence") {
				r.Wake() // publish it now
			}
		}
	}
}

// checkpoint appends one checkpoint if anything came after the last; it
// reports whether it did.
func (r *Relay) checkpoint(ctx context.Context, why string) bool {
	cctx, cancel := r.storeCtx(ctx)
	defer cancel()
	cp := r.cfg.Checkpoints
	ev, ok, err := AppendCheckpoint(cctx, r.db, cp.Builder, cp.Signer, cp.Builder.now())
	if err != nil {
		r.log.Warn("evidence relay: checkpoint failed, will retry", "err", err, "at", why)
		return false
	}
	if ok {
		r.log.Debug("evidence relay: checkpoint", "seq", ev.ChainSeq, "at", why)
	}
	return ok
}

// backoff is the wait after failures consecutive failed passes.
func (r *Relay) backoff(failures int) time.Duration {
	return backoff.Policy{Base: r.cfg.Interval, Max: r.cfg.MaxBackoff}.Wait(failures)
}

// sleep waits d, or until woken. With probe (the store failed) it asks the
// store every Interval whether it answers again and ends the wait when it
// does. It returns false when ctx ended.
func (r *Relay) sleep(ctx context.Context, d time.Duration, probe bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	var tick <-chan time.Time
	if probe && d > r.cfg.Interval {
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-r.wake:
			return true
		case <-tick:
			if r.storeAnswers(ctx) {
				r.log.Info("evidence relay: state store answers again")
				return true
			}
		}
	}
}

// storeAnswers makes one round trip to the state store, within
// StoreTimeout.
func (r *Relay) storeAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	tx, err := r.db.Begin(ctx)
	if err != nil {
		return false
	}
	return tx.Rollback(ctx) == nil
}

// publishFailure marks an error of the bus, as opposed to the store's.
type publishFailure struct{ err error }

func (e publishFailure) Error() string { return e.err.Error() }
func (e publishFailure) Unwrap() error { return e.err }

func isPublishFailure(err error) bool {
	var pf publishFailure
	return errors.As(err, &pf)
}

// storeCtx bounds one state-store step. The steps that record what was
// published are not cancelled with ctx (the marks save republishing after
// a shutdown), only bounded.
func (r *Relay) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StoreTimeout)
}

// PublishPending makes one pass: it publishes up to Batch unpublished events
// in seq order and returns how many it published. It returns 0, nil when
// another relay holds the relay lock. Every state-store step is bounded by
// StoreTimeout, every publish by PublishTimeout: a silent store or bus
// fails the pass, never wedges it.
func (r *Relay) PublishPending(ctx context.Context) (int, error) {
	bctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	tx, err := r.db.Begin(bctx)
	if err != nil {
		return 0, fmt.Errorf("evidence relay: begin: %w", err)
	}
	defer func() {
		rctx, cancel := r.storeCtx(ctx)
		defer cancel()
		_ = tx.Rollback(rctx) // after a commit, a no-op
	}()
	var one int
	err = tx.QueryRow(bctx, `SELECT id FROM evidence_relay_lock WHERE id = 1 FOR UPDATE SKIP LOCKED`).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil // another relay is publishing
	}
	if err != nil {
		return 0, fmt.Errorf("evidence relay: take relay lock: %w", err)
	}
	n, pubErr := r.publishBatch(ctx, tx)
	// Record what was published even if ctx is done: the marks save
	// republishing after a shutdown.
	cctx, cancel := r.storeCtx(ctx)
	defer cancel()
	if err := tx.Commit(cctx); err != nil {
		return 0, errors.Join(pubErr, fmt.Errorf("evidence relay: commit: %w", err))
	}
	return n, pubErr
}

type pendingEvent struct {
	seq  int64
	hash string
	raw  []byte
}

// readPending reads, in tx, the next unpublished events.
func (r *Relay) readPending(ctx context.Context, tx pgx.Tx) ([]pendingEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	rows, err := tx.Query(ctx, `
		SELECT seq, hash, event FROM evidence_outbox
		WHERE published_at IS NULL ORDER BY seq LIMIT $1`, r.cfg.Batch)
	if err != nil {
		return nil, fmt.Errorf("evidence relay: read outbox: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pendingEvent, error) {
		var p pendingEvent
		err := row.Scan(&p.seq, &p.hash, &p.raw)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("evidence relay: read outbox: %w", err)
	}
	return batch, nil
}

// publishBatch publishes, in tx (which holds the relay lock), the next
// unpublished events and marks each published after its ack.
func (r *Relay) publishBatch(ctx context.Context, tx pgx.Tx) (int, error) {
	batch, err := r.readPending(ctx, tx)
	if err != nil {
		return 0, err
	}
	// The rows published are marked together when the batch ends, however
	// it ends, in the same transaction as before: one statement, not one
	// per row.
	var published []int64
	markPublished := func(err error) error {
		if len(published) == 0 {
			return err
		}
		if merr := r.mark(ctx, tx, `
			UPDATE evidence_outbox SET published_at = now(), publish_attempts = publish_attempts + 1, last_error = NULL
			WHERE seq = ANY($1)`, published); merr != nil {
			return errors.Join(err, fmt.Errorf("evidence relay: mark %d events published: %w", len(published), merr))
		}
		return err
	}
	for _, p := range batch {
		if ctx.Err() != nil {
			return len(published), markPublished(nil)
		}
		ev, err := r.checkPending(p)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
			err = r.pub.Publish(pctx, ev, p.raw)
			cancel()
		}
		if err != nil && ctx.Err() != nil {
			// Shutting down: whether it arrived or not, the row stays
			// unpublished and the next relay sends it (again).
			return len(published), markPublished(nil)
		}
		if err != nil {
			r.cfg.Metrics.PublishFailed(ev, err)
			uerr := r.mark(ctx, tx, `
				UPDATE evidence_outbox SET publish_attempts = publish_attempts + 1, last_error = $2
				WHERE seq = $1`, p.seq, truncate(err.Error(), 1000))
			if uerr != nil {
				uerr = fmt.Errorf("evidence relay: record failure of seq %d: %w", p.seq, uerr)
			}
			return len(published), markPublished(errors.Join(publishFailure{fmt.Errorf("evidence relay: publish seq %d: %w", p.seq, err)}, uerr))
		}
		published = append(published, p.seq)
		r.cfg.Metrics.Published(ev)
		r.cfg.Progress.Advance() // a slow bus that answers is not stuck
	}
	return len(published), markPublished(nil)
}

// mark runs one marking statement in tx, written even if ctx ends.
func (r *Relay) mark(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	mctx, cancel := r.storeCtx(ctx)
	defer cancel()
	_, err := tx.Exec(mctx, sql, args...)
	return err
}

// ErrTampered: an outbox row does not verify; the relay will not publish it.
var ErrTampered = errors.New("evidence: outbox row does not match its hash")

// checkPending refuses to publish a row whose event does not hash to its
// recorded hash: a changed row is held back, loudly, rather than sent on.
func (r *Relay) checkPending(p pendingEvent) (Event, error) {
	ev, err := decodeEvent(p.raw)
	if err != nil {
		return Event{ChainSeq: p.seq}, fmt.Errorf("%w: %v", ErrTampered, err)
	}
	h, err := hashDecoded(p.raw)
	if err != nil || h != p.hash || ev.Hash != p.hash || ev.ChainSeq != p.seq {
		r.log.Error("evidence relay: outbox row does not verify; holding it back", "seq", p.seq, "id", ev.ID)
		return ev, fmt.Errorf("%w (seq %d)", ErrTampered, p.seq)
	}
	return ev, nil
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
