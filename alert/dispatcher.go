package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/internal/backoff"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/store"
)

// DB is the state store: a *pgxpool.Pool whose connections have the
// ledger schema as search_path (store.Store.Pool).
type DB interface {
	store.Querier
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Deps are what the dispatcher runs with.
type Deps struct {
	// Pool is the state store; required. The dispatcher holds one
	// connection per sink while that sink's delivery pass runs, and one for
	// an intake pass.
	Pool DB
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer gets the dispatcher's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// Clock stamps alerts and schedules deliveries; default time.Now.
	Clock func() time.Time
	// HTTPClient sends to the sinks (say, for a proxy or a private CA). The
	// dispatcher never follows redirects: nil gets a client that does not.
	HTTPClient *http.Client
	// Progress hears of each intake pass (child "intake") and each
	// delivery pass (one child per sink); nil: nobody.
	Progress *progress.Worker
}

// Dispatcher raises, delivers and resolves alerts. Any number of
// dispatchers may run on one state store; each alert is raised once and
// delivered once per sink (at least once: a delivery whose outcome could
// not be recorded is sent again).
type Dispatcher struct {
	cfg     Config
	db      DB
	log     *slog.Logger
	now     func() time.Time
	m       *metrics
	sinks   []sink
	names   []string
	workers []*worker
	running atomic.Bool
	// intakeProgress hears of intake passes.
	intakeProgress *progress.Worker
}

// New checks cfg and builds a dispatcher; Run starts it.
func New(cfg Config, d Deps) (*Dispatcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Pool == nil {
		return nil, errors.New("alert: the state store is required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	client := d.HTTPClient
	if client == nil {
		client = newHTTPClient()
	} else if client.CheckRedirect == nil {
		c := *client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		client = &c
	}
	var sinks []sink
	for _, raw := range cfg.AlertmanagerURLs {
		s, err := newAlertmanagerSink(raw, cfg, client)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	if cfg.PagerDutyRoutingKey != "" {
		sinks = append(sinks, newPagerDutySink(cfg, client))
	}
	if cfg.SlackWebhookURL != "" {
		sinks = append(sinks, newSlackSink(cfg, client))
	}
	return newDispatcher(cfg, d, sinks)
}

// newDispatcher builds a dispatcher over the given sinks (tests pass their
// own).
func newDispatcher(cfg Config, d Deps, sinks []sink) (*Dispatcher, error) {
	names := make([]string, len(sinks))
	for i, s := range sinks {
		names[i] = s.Name()
	}
	m, err := newMetrics(d.Registerer, names)
	if err != nil {
		return nil, err
	}
	x := &Dispatcher{cfg: cfg, db: d.Pool, log: d.Logger, now: d.Clock, m: m, sinks: sinks, names: names,
		intakeProgress: d.Progress.Child("intake")}
	for _, s := range sinks {
		x.workers = append(x.workers, &worker{x: x, sink: s, wake: make(chan struct{}, 1), progress: d.Progress.Child(s.Name())})
	}
	return x, nil
}

// Sinks names the configured sinks.
func (x *Dispatcher) Sinks() []string { return append([]string(nil), x.names...) }

// Run raises, delivers and resolves alerts until ctx is done, then returns
// nil once its goroutines have stopped. Failures (state store or sinks
// down) are logged and retried; Run returns an error only if the dispatcher
// is already running.
func (x *Dispatcher) Run(ctx context.Context) error {
	if !x.running.CompareAndSwap(false, true) {
		return errors.New("alert: dispatcher is already running")
	}
	defer x.running.Store(false)
	x.log.Info("alert dispatcher running", "config", x.cfg, "sinks", x.names)
	ready := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range x.workers {
		wg.Go(func() { w.run(ctx, ready) })
	}
	x.runIntake(ctx, ready)
	wg.Wait()
	return nil
}

// runIntake makes sure the sinks' rows exist, closes ready, and then takes
// in findings and resolves alerts every Interval.
func (x *Dispatcher) runIntake(ctx context.Context, ready chan struct{}) {
	prepared := false
	failures := 0
	for {
		var err error
		n, changed := 0, false
		x.intakeProgress.Start()
		if !prepared {
			if err = x.bounded(ctx, x.prepare); err == nil {
				prepared = true
				close(ready)
			}
		}
		if prepared {
			err = x.bounded(ctx, func(ctx context.Context) error {
				var err error
				n, changed, err = x.intake(ctx)
				return err
			})
			_ = x.bounded(ctx, func(ctx context.Context) error { x.updatePending(ctx); return nil })
		}
		x.intakeProgress.Finish(err)
		if ctx.Err() != nil {
			return
		}
		if changed {
			x.wakeAll()
		}
		var wait time.Duration
		switch {
		case err != nil:
			// Intake fails only on the state store: retry soon.
			failures++
			wait = retryWait(x.cfg.Interval, min(x.cfg.MaxBackoff, StoreBackoff), failures)
			x.log.Warn("alert intake failed, will retry", "err", err, "failures", failures, "retry_in", wait)
		case n >= x.cfg.Batch:
			failures = 0 // more may be waiting
		default:
			if failures > 0 {
				x.log.Info("alert intake working again", "after_failures", failures)
			}
			failures = 0
			wait = x.cfg.Interval
		}
		if wait > 0 && !pause.For(ctx, wait, nil) {
			return
		}
	}
}

func (x *Dispatcher) wakeAll() {
	for _, w := range x.workers {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// prepare records the configured sinks and gives each alert still open a
// delivery to every sink that has none (a sink added since it opened).
func (x *Dispatcher) prepare(ctx context.Context) error {
	if len(x.names) == 0 {
		return nil
	}
	if _, err := x.db.Exec(ctx, `INSERT INTO alert_sinks (sink) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, x.names); err != nil {
		return fmt.Errorf("alert: record sinks: %w", err)
	}
	_, err := x.db.Exec(ctx, `
		INSERT INTO alert_deliveries (alert_id, sink, next_attempt_at)
		SELECT a.id, s.sink, $2 FROM alerts a CROSS JOIN unnest($1::text[]) AS s(sink)
		WHERE a.resolved_at IS NULL
		ON CONFLICT DO NOTHING`, x.names, x.now())
	if err != nil {
		return fmt.Errorf("alert: deliveries for open alerts: %w", err)
	}
	return nil
}

// updatePending sets the pending gauge of every sink: deliveries whose
// sink has not acknowledged the alert's current state. It is counted here,
// not by the sink's worker, so that it rises while a sink hangs.
func (x *Dispatcher) updatePending(ctx context.Context) {
	if len(x.names) == 0 {
		return
	}
	rows, err := x.db.Query(ctx, `
		SELECT d.sink, count(*) FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
		WHERE d.sink = ANY($1) AND d.delivered <> 'resolve'
		  AND (d.delivered = 'none' OR a.resolved_at IS NOT NULL)
		GROUP BY d.sink`, x.names)
	if err != nil {
		if ctx.Err() == nil {
			x.log.Warn("alert: count pending deliveries", "err", err)
		}
		return
	}
	counts := map[string]int64{}
	var sink string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&sink, &n}, func() error {
		counts[sink] = n
		return nil
	}); err != nil {
		if ctx.Err() == nil {
			x.log.Warn("alert: count pending deliveries", "err", err)
		}
		return
	}
	for _, s := range x.names {
		x.m.pending.WithLabelValues(s).Set(float64(counts[s]))
	}
}

// retryWait is the wait after the given number of consecutive failures:
// it doubles from base up to ceiling, with jitter (internal/backoff), so
// that retries of many deliveries and processes spread out.
func retryWait(base, ceiling time.Duration, failures int) time.Duration {
	return backoff.Policy{Base: base, Max: ceiling}.Wait(failures)
}

// bounded runs step within StoreTimeout.
func (x *Dispatcher) bounded(ctx context.Context, step func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, x.cfg.StoreTimeout)
	defer cancel()
	return step(ctx)
}

// storeCtx bounds a state-store step that records what was sent: it is
// written even after ctx ended (so it is not sent again), within
// StoreTimeout.
func (x *Dispatcher) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), x.cfg.StoreTimeout)
}

// rollbackTimeout bounds a rollback.
const rollbackTimeout = 10 * time.Second

// rollback ends tx when it was not committed.
func rollback(ctx context.Context, tx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = tx.Rollback(rctx) // after a commit, a no-op
}
