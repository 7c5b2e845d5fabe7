package observer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target/engine"
)

// ErrNotHolder: another process holds the duty of observing the target;
// this one stands by.
var ErrNotHolder = errors.New("another process observes this target")

// Rules judge each pass inside its transaction (the database rules of
// detectors fit; they meet the observer only in package observed).
type Rules interface {
	Evaluate(ctx context.Context, tx pgx.Tx, p *observed.Pass) (observed.Report, error)
}

// Deps are the observer's collaborators.
type Deps struct {
	// Store is the state store.
	Store   *store.Store
	Targets Targets
	// Rules may be nil: the observer then records and publishes only.
	Rules Rules
	// Publisher may be nil: events are recorded in the state store and
	// pruned after Config.Retention, never published.
	Publisher Publisher
	Clock     func() time.Time
	Logger    *slog.Logger
	Metrics   *Metrics
	// Progress hears of each pass, through one child per target (nil:
	// nobody).
	Progress *progress.Worker
}

// Observer observes the target databases (see the package comment).
type Observer struct {
	cfg Config
	Deps

	mu sync.Mutex
	// passing serialises passes over one database.
	passing   map[string]*sync.Mutex
	duties    map[string]*Duty
	lastPrune map[string]time.Time
	hiddenLog map[string]bool

	// sessMu guards sess, the state-store session every duty of this
	// observer holds its lock on (opened when a duty is first tried).
	sessMu sync.Mutex
	sess   *lockSession
	// known: per database, the roles its last committed pass recorded,
	// under the duty that pass held (knownRoles).
	known map[string]heldRoles
	// keys: the server each configured target is on (server.go).
	keys serverKeys
	// hints: per database, the size of its last read.
	hints map[string]readHint
}

// heldRoles are known roles and the duty under which they were recorded.
type heldRoles struct {
	duty  *Duty
	roles *knownRoles
}

// New builds an observer; cfg's unset fields get the defaults.
func New(cfg Config, d Deps) (*Observer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Targets == nil {
		return nil, errors.New("observer: state store and targets are required")
	}
	o := &Observer{cfg: cfg, Deps: d, duties: map[string]*Duty{}, passing: map[string]*sync.Mutex{},
		lastPrune: map[string]time.Time{}, hiddenLog: map[string]bool{}, known: map[string]heldRoles{},
		hints: map[string]readHint{}}
	for _, db := range cfg.Databases {
		if _, _, ok := o.reader(db); !ok {
			return nil, fmt.Errorf("observer: unknown target %q", db)
		}
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	o.Deps = d
	return o, nil
}

// Databases lists the targets this observer observes.
func (o *Observer) Databases() []string {
	if len(o.cfg.Databases) > 0 {
		return slices.Clone(o.cfg.Databases)
	}
	if mt, ok := o.Targets.(mysqlTargets); ok {
		return mt.AllNames()
	}
	return o.Targets.Names()
}

// Run observes every target until ctx ends: one loop per target, a pass
// every Interval while this process holds the target's duty, and an attempt
// to take the duty every Interval while another process holds it. Losing
// the duty stops the observing of that target until the duty can be taken
// again. Run releases its duties before it returns.
func (o *Observer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, db := range o.Databases() {
		wg.Go(func() { o.loop(ctx, db) })
	}
	wg.Wait()
	o.Release(ctx)
	return nil
}

func (o *Observer) loop(ctx context.Context, db string) {
	w := o.Progress.Child(db)
	pause.Repeat(ctx, o.cfg.Interval, func() bool {
		w.Start()
		w.Finish(o.step(ctx, db))
		return false
	})
}

// step makes one pass within ReadTimeout + PassTimeout (a pass that runs
// out, on a silent state store or target, is logged and tried again) and
// returns its error if it failed (standing by while another process
// observes is not a failure).
func (o *Observer) step(ctx context.Context, db string) error {
	pctx, cancel := context.WithTimeout(ctx, o.cfg.ReadTimeout+o.cfg.PassTimeout)
	rep, err := o.Pass(pctx, db)
	cancel()
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, ErrNotHolder):
		o.Logger.Debug("another process observes the target; standing by", "database", db)
	case errors.Is(err, ErrDutyLost):
		o.Logger.Warn("observer duty lost; observing stops until it can be taken again", "database", db, "err", err)
	case err != nil:
		o.Logger.Warn("observer pass failed; will retry", "database", db, "err", err)
		return err
	default:
		if n := len(rep.Rules.Findings); n > 0 || rep.RoleEvents+rep.SessionEvents > 0 {
			o.Logger.Info("observer pass", "database", db, "baseline", rep.Baseline, "role_events", rep.RoleEvents,
				"session_events", rep.SessionEvents, "findings", n, "commands", rep.Rules.Commands,
				"published", rep.Published)
		}
	}
	return nil
}

// PassReport is what one pass saw and did.
type PassReport struct {
	Database   string
	ObservedAt time.Time
	Baseline   bool
	// Roles are the managed roles present, Sessions the tracked sessions
	// (of managed roles, and ghosts).
	Roles, Sessions           int
	RoleEvents, SessionEvents int
	// Hidden sessions could not be read (see Targets).
	Hidden    int
	Rules     observed.Report
	Published int
}

// Pass makes one pass over the target database, taking its duty first if
// this process does not hold it: read the target, diff, record, judge and
// commit in one state-store transaction, then publish. It returns
// ErrNotHolder when another process holds the duty, and an error wrapping
// ErrDutyLost (the duty is then released) when this one lost it.
func (o *Observer) Pass(ctx context.Context, db string) (PassReport, error) {
	rep := PassReport{Database: db}
	read, kind, ok := o.reader(db)
	if !ok {
		return rep, fmt.Errorf("unknown target %q", db)
	}
	pm := o.passLock(db)
	pm.Lock()
	defer pm.Unlock()
	duty, err := o.duty(ctx, db)
	if err != nil {
		return rep, err
	}
	start := time.Now()
	defer func() { o.Metrics.pass.Observe(time.Since(start).Seconds()) }()

	// Which targets share the server, before the reads: nothing slows the
	// pass between its reads and its judgement.
	srv, err := o.server(ctx, db)
	if err != nil {
		o.Metrics.failures.WithLabelValues(db).Inc()
		return rep, err
	}

	// The pass's time is taken before the reads: a role absent from them
	// did not exist at that time (observed.Role.CreatedAfter).
	now := o.Clock().UTC().Truncate(time.Microsecond)
	rctx, cancel := context.WithTimeout(ctx, o.cfg.ReadTimeout)
	sessions, roles, err := read(rctx)
	cancel()
	if err != nil {
		o.Metrics.failures.WithLabelValues(db).Inc()
		return rep, fmt.Errorf("target %s: %w", db, err)
	}
	o.noteRead(db, readHint{roles: len(roles), sessions: len(sessions)})

	var p *observed.Pass
	known, next := o.takeKnown(db, duty), (*knownRoles)(nil)
	err = pgx.BeginFunc(ctx, o.Store.Pool(), func(tx pgx.Tx) error {
		if err := duty.Check(ctx, tx); err != nil {
			return err
		}
		var err error
		p, next, err = applySnapshotKnown(ctx, tx, Snapshot{Database: db, ObservedAt: now, Sessions: sessions, Roles: roles,
			Managed: o.cfg.ManagedPattern.MatchString}, known)
		if err != nil {
			return err
		}
		p.Engine = string(kind)
		p.Server, p.ServerTargets, p.UnknownServerTargets = srv.key, srv.targets, srv.unknown
		if o.Rules != nil {
			rep.Rules, err = o.Rules.Evaluate(ctx, tx, p)
		}
		return err
	})
	if err != nil {
		o.Metrics.failures.WithLabelValues(db).Inc()
		if errors.Is(err, ErrDutyLost) {
			o.dropDuty(ctx, db)
		}
		return rep, err
	}
	o.keepKnown(db, duty, next)
	rep.ObservedAt, rep.Baseline, rep.Hidden = p.ObservedAt, p.Baseline(), p.Hidden
	rep.Roles, rep.Sessions = len(p.Roles), len(p.Sessions)
	rep.RoleEvents, rep.SessionEvents = len(p.RoleEvents), len(p.SessionEvents)
	for _, e := range p.RoleEvents {
		o.Metrics.changes.WithLabelValues(db, "role_"+string(e.Kind)).Inc()
	}
	for _, e := range p.SessionEvents {
		o.Metrics.changes.WithLabelValues(db, "session_"+string(e.Kind)).Inc()
	}
	if p.Hidden > 0 {
		o.warnHidden(db, kind, p.Hidden)
	}

	// After the commit: what a failure here leaves is published after the
	// next pass.
	if rep.Published, err = o.publish(ctx, db); err != nil {
		o.Logger.Warn("cannot publish observer events; will retry", "database", db, "err", err)
	}
	o.prune(ctx, db, now)
	return rep, nil
}

func (o *Observer) passLock(db string) *sync.Mutex {
	o.mu.Lock()
	defer o.mu.Unlock()
	pm := o.passing[db]
	if pm == nil {
		pm = &sync.Mutex{}
		o.passing[db] = pm
	}
	return pm
}

// duty returns this process's duty for db, taking it if free.
func (o *Observer) duty(ctx context.Context, db string) (*Duty, error) {
	o.mu.Lock()
	d := o.duties[db]
	o.mu.Unlock()
	if d != nil {
		return d, nil
	}
	sess, err := o.lockSession(ctx)
	if err != nil {
		return nil, fmt.Errorf("observer duty of %s: %w", db, err)
	}
	d, err = sess.tryDuty(ctx, o.Store.Schema(), db, o.cfg.Holder, o.Clock())
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, ErrNotHolder
	}
	o.mu.Lock()
	o.duties[db] = d
	o.mu.Unlock()
	o.Metrics.duty.WithLabelValues(db).Set(1)
	o.Logger.Info("observer duty taken", "database", db, "epoch", d.Epoch(), "holder", o.cfg.Holder)
	return d, nil
}

// lockSession is the observer's lock session, opened again if the last one
// ended (the duties held on it are lost then, and taken again on the new
// one).
func (o *Observer) lockSession(ctx context.Context) (*lockSession, error) {
	o.sessMu.Lock()
	defer o.sessMu.Unlock()
	if o.sess != nil && o.sess.alive() {
		return o.sess, nil
	}
	s, err := openLockSession(ctx, o.Store)
	if err != nil {
		return nil, err
	}
	o.sess = s
	return s, nil
}

// takeKnown hands the roles the last pass of db recorded to this pass, if
// recorded under duty; whatever happens to this pass, they are no longer
// kept (the pass changes them in place).
func (o *Observer) takeKnown(db string, duty *Duty) *knownRoles {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.known[db]
	delete(o.known, db)
	if h.duty != duty {
		return nil
	}
	return h.roles
}

// readHint is the size of the last read of db.
func (o *Observer) readHint(db string) readHint {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hints[db]
}

func (o *Observer) noteRead(db string, h readHint) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hints[db] = h
}

// keepKnown keeps the roles a committed pass recorded for the next pass.
func (o *Observer) keepKnown(db string, duty *Duty, k *knownRoles) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.known[db] = heldRoles{duty: duty, roles: k}
}

func (o *Observer) dropDuty(ctx context.Context, db string) {
	o.mu.Lock()
	d := o.duties[db]
	delete(o.duties, db)
	delete(o.known, db)
	o.mu.Unlock()
	if d != nil {
		d.Release(ctx)
	}
	o.Metrics.duty.WithLabelValues(db).Set(0)
}

// Holds reports whether this process holds the duty of observing db.
func (o *Observer) Holds(db string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.duties[db] != nil
}

// Release gives up every duty held. It is safe to call more than once.
func (o *Observer) Release(ctx context.Context) {
	o.mu.Lock()
	dbs := make([]string, 0, len(o.duties))
	for db := range o.duties {
		dbs = append(dbs, db)
	}
	o.mu.Unlock()
	for _, db := range dbs {
		pm := o.passLock(db)
		pm.Lock()
		o.dropDuty(ctx, db)
		pm.Unlock()
	}
	o.sessMu.Lock()
	if o.sess != nil {
		o.sess.close(ctx)
		o.sess = nil
	}
	o.sessMu.Unlock()
}

// publish sends the target's unpublished events, in order, and marks what
// was stored.
func (o *Observer) publish(ctx context.Context, db string) (int, error) {
	if o.Publisher == nil {
		return 0, nil
	}
	evs, err := unpublishedEvents(ctx, o.Store.Pool(), db, o.cfg.PublishBatch)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	msgs := make([]Message, len(evs))
	for i, e := range evs {
		msgs[i] = Message{Subject: o.cfg.Subject(db, e.Kind), ID: e.ID, Body: e.Event}
	}
	n, perr := o.Publisher.Publish(ctx, msgs)
	ids := make([]string, n)
	for i := range n {
		ids[i] = evs[i].ID
	}
	if err := markEventsPublished(context.WithoutCancel(ctx), o.Store.Pool(), ids, o.Clock()); err != nil {
		return n, err
	}
	o.Metrics.published.WithLabelValues(db).Add(float64(n))
	return n, perr
}

// prune deletes old ended sessions and published events, at most once per
// Interval*12 (a minute by default).
func (o *Observer) prune(ctx context.Context, db string, now time.Time) {
	o.mu.Lock()
	due := now.Sub(o.lastPrune[db]) >= 12*o.cfg.Interval
	if due {
		o.lastPrune[db] = now
	}
	o.mu.Unlock()
	if !due {
		return
	}
	if err := pruneHistory(ctx, o.Store.Pool(), db, now.Add(-o.cfg.Retention), o.Publisher == nil); err != nil {
		o.Logger.Warn("cannot prune observer state", "database", db, "err", err)
	}
}

func (o *Observer) warnHidden(db string, kind engine.Kind, n int) {
	o.mu.Lock()
	seen := o.hiddenLog[db]
	o.hiddenLog[db] = true
	o.mu.Unlock()
	switch {
	case seen:
	case kind == engine.KindMySQL:
		o.Logger.Warn("some sessions are not tracked: their connection ids are past a pid's range", "database", db, "hidden", n)
	default:
		o.Logger.Warn("some sessions are hidden from the observer: grant its role pg_read_all_stats", "database", db, "hidden", n)
	}
}
