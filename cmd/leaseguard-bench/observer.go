package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/leaseguard/leaseguard/store"
)

// observerOptions size the observer scenario.
type observerOptions struct {
	rolesFlag string
	roles     []int // a small and a large number of managed roles
	sessions  int
	// steady and churn are the passes measured of each kind.
	steady, churn int
	// interval of the measured passes: long enough for a churn to land
	// whole between two passes.
	interval time.Duration
}

func observerFlags(fs *flag.FlagSet, o *observerOptions) {
	fs.StringVar(&o.rolesFlag, "observer-roles", "", "managed roles of the observer scenario, small and large (default 10000,100000; -quick 1000,10000)")
	fs.IntVar(&o.sessions, "observer-sessions", 0, "sessions of managed roles held open in the observer scenario (default 5000; -quick 200)")
	fs.IntVar(&o.steady, "observer-passes", 3, "steady passes (no change) and churn passes (1% of roles) measured per size")
	fs.DurationVar(&o.interval, "observer-interval", 2*time.Second, "LEASEGUARD_OBSERVE_INTERVAL of the measured passes")
}

// finish fills in the defaults and checks the sizes.
func (o *observerOptions) finish(quick bool) error {
	if o.rolesFlag == "" {
		o.rolesFlag = "10000,100000"
		if quick {
			o.rolesFlag = "1000,10000"
		}
	}
	o.roles = nil
	for _, s := range strings.Split(o.rolesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 300 {
			return fmt.Errorf("-observer-roles: %q is not a number of at least 300", s)
		}
		o.roles = append(o.roles, n)
	}
	if len(o.roles) != 2 || o.roles[1] <= o.roles[0] {
		return errors.New("-observer-roles: want two increasing sizes")
	}
	if o.sessions <= 0 {
		o.sessions = 5000
		if quick {
			o.sessions = 200
		}
	}
	if o.sessions > o.roles[0]/2 {
		return errors.New("-observer-sessions: at most half the small number of roles (the churn drops roles without sessions)")
	}
	o.churn = max(o.steady, 1)
	return nil
}

// obsFigures are one size's figures.
type obsFigures struct {
	firstMS, steadyMS, churnMS float64
	drain                      time.Duration
	rss, hwm                   float64
	// peaks are the VmHWM of the three processes: first pass, backlog,
	// steady and churn passes.
	peaks       [3]float64
	churnEvents float64
}

// observerScenario: `leaseguard run` with only the observer role, against
// a target holding 10,000 and then 100,000 managed roles (LOGIN, VALID
// UNTIL, as Vault makes them) and 5,000 open sessions of them. Per size,
// on a fresh state store: the first pass (everything new), steady passes
// (nothing changed) and passes after a 1% churn (a third of it roles
// dropped, a third created, a third with VALID UNTIL moved, as renewals
// do); the time of each pass from leaseguard_observer_pass_seconds, and
// VmRSS and VmHWM of the process.
//
// The target is a PostgreSQL cluster of the run's own (pgServer), as the
// shared one allows 100 connections.
func (b *Bench) observerScenario(ctx context.Context) error {
	o := b.opt.obs
	srv, err := b.startPGServer(ctx, o.sessions+50)
	if err != nil {
		return err
	}
	defer srv.stop()
	cfg, err := pgxpool.ParseConfig(srv.url())
	if err != nil {
		return err
	}
	cfg.MaxConns = 2
	tgt, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer tgt.Close()
	w := &obsWorld{tgt: tgt, prefix: b.rolePrefix() + "obs-", base: o.sessions, lo: o.sessions}
	defer w.closeSessions()
	var figs [2]obsFigures
	for i, size := range o.roles {
		t0 := time.Now()
		if err := w.createRoles(ctx, w.hi, size-w.present()); err != nil {
			return err
		}
		if i == 0 {
			if err := w.openSessions(ctx, b, srv, o.sessions); err != nil {
				return err
			}
		}
		b.logf("observer: target holds %s managed roles, %d sessions (made in %s)", thousands(int64(size)), len(w.conns),
			time.Since(t0).Round(100*time.Millisecond))
		if figs[i], err = b.observeSize(ctx, srv, w, size); err != nil {
			return err
		}
	}
	b.observerResults(figs)
	return nil
}

func (b *Bench) observerResults(figs [2]obsFigures) {
	o := b.opt.obs
	for i, size := range o.roles {
		k := obsSizeKey(size)
		f := figs[i]
		base := nanF
		if i == 1 {
			base = figs[0].steadyMS
		}
		name := thousands(int64(size)) + " roles, " + thousands(int64(o.sessions)) + " sessions"
		b.results.add(row{figure: "observer first pass, " + name, value: f.firstMS, baseline: nanF, unit: "ms"})
		b.results.add(row{figure: "  steady pass (no change)", value: f.steadyMS, baseline: base, unit: "ms",
			target: "<1,000 ms", verdict: verdict(f.steadyMS < 1000)})
		b.results.add(row{figure: "  pass after 1% churn", value: f.churnMS, baseline: nanF, unit: "ms",
			target: "<1,000 ms", verdict: verdict(f.churnMS < 1000)})
		b.results.add(row{figure: "  RSS peak (VmHWM)", value: f.hwm, baseline: nanF, unit: "MB",
			target: "<150 MB", verdict: verdict(f.hwm < 150)})
		b.results.set("observer_pass_ms_"+k+"_roles", f.steadyMS)
		b.results.set("observer_first_pass_ms_"+k+"_roles", f.firstMS)
		b.results.set("observer_churn_pass_ms_"+k+"_roles", f.churnMS)
		b.results.set("observer_rss_mb_"+k+"_roles", f.hwm)
		b.results.set("observer_steady_rss_mb_"+k+"_roles", f.rss)
		b.results.set("observer_backlog_s_"+k+"_roles", f.drain.Seconds())
		b.results.note("observer %s roles: first pass %.0f ms, then its %s baseline events published in %s (1,000 a pass); steady VmRSS %.1f MB; VmHWM of the first-pass, backlog and steady processes %.1f / %.1f / %.1f MB; %.0f role events per churn pass",
			thousands(int64(size)), f.firstMS, thousands(int64(size+o.sessions)), f.drain.Round(100*time.Millisecond), f.rss,
			f.peaks[0], f.peaks[1], f.peaks[2], f.churnEvents)
	}
	b.results.set("observer_sessions", float64(o.sessions))
	b.results.set("observer_failed_passes", float64(b.obsFailed))
	b.results.note("observer: `leaseguard run` with LEASEGUARD_ROLES=observer (embedded JetStream) against a PostgreSQL cluster of the harness's own (max_connections %d); "+
		"LEASEGUARD_PASS_TIMEOUT=60s; pass = leaseguard_observer_pass_seconds (read, diff, rules, commit, publish); %d passes failed (not measured); steady and churn: medians of %d passes at a %s interval; RSS: VmHWM over the whole size",
		o.sessions+50, b.obsFailed, o.steady, o.interval)
}

// obsSizeKey names a size in results.json: 10000 → 10k.
func obsSizeKey(n int) string {
	if n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// obsWorld is the target's managed roles: prefix + a 7-digit number in
// [0, base) with a session each, then [lo, hi) without (the churn drops
// from lo and creates at hi).
type obsWorld struct {
	tgt          *pgxpool.Pool
	prefix       string
	base, lo, hi int
	conns        []*pgx.Conn
}

func (w *obsWorld) present() int { return w.base + w.hi - w.lo }

// createRoles creates roles [from, from+n) in blocks of 10,000, one
// statement each.
func (w *obsWorld) createRoles(ctx context.Context, from, n int) error {
	for lo := from; lo < from+n; lo += 10000 {
		hi := min(lo+10000, from+n)
		if _, err := w.tgt.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP
			EXECUTE format('CREATE ROLE %%I LOGIN VALID UNTIL %%L', '%s' || lpad(i::text, 7, '0'), now() + interval '30 days');
			END LOOP; END $$`, lo, hi-1, w.prefix)); err != nil {
			return fmt.Errorf("create roles: %w", err)
		}
	}
	w.hi = max(w.hi, from+n)
	return nil
}

// churn changes n roles: a third dropped, a third with VALID UNTIL moved,
// a third created, in one statement (one commit, seen by one pass).
func (w *obsWorld) churn(ctx context.Context, n int) error {
	k := n / 3
	sql := fmt.Sprintf(`DO $$ BEGIN
		FOR i IN %[1]d..%[2]d LOOP EXECUTE format('DROP ROLE %%I', '%[5]s' || lpad(i::text, 7, '0')); END LOOP;
		FOR i IN %[3]d..%[4]d LOOP EXECUTE format('ALTER ROLE %%I VALID UNTIL %%L', '%[5]s' || lpad(i::text, 7, '0'), now() + interval '31 days'); END LOOP;
		FOR i IN %[6]d..%[7]d LOOP EXECUTE format('CREATE ROLE %%I LOGIN VALID UNTIL %%L', '%[5]s' || lpad(i::text, 7, '0'), now() + interval '30 days'); END LOOP;
		END $$`, w.lo, w.lo+k-1, w.lo+k, w.lo+2*k-1, w.prefix, w.hi, w.hi+k-1)
	if _, err := w.tgt.Exec(ctx, sql); err != nil {
		return fmt.Errorf("churn: %w", err)
	}
	w.lo += k
	w.hi += k
	return nil
}

// sessionsAtOnce bounds the logins in flight (each a fork of the postmaster
// and a backend's start). On a busy 2-core machine, 5,000 sessions took
// 11.6 min 16 at a time, and about 3.5 min 128 at a time, each thousand
// slower than the one before (a backend's start grows with the backends
// there).
const sessionsAtOnce = 128

// openSessions logs in as roles [0, n), sessionsAtOnce at a time, and
// keeps the connections open.
func (w *obsWorld) openSessions(ctx context.Context, b *Bench, srv *pgServer, n int) error {
	conns := make([]*pgx.Conn, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(sessionsAtOnce)
	start := time.Now()
	var opened atomic.Int64
	for i := range n {
		g.Go(func() error {
			cfg, err := pgx.ParseConfig(srv.url())
			if err != nil {
				return err
			}
			cfg.User = fmt.Sprintf("%s%07d", w.prefix, i)
			cfg.RuntimeParams["application_name"] = "leaseguard-bench-client"
			cctx, cancel := context.WithTimeout(gctx, 2*time.Minute)
			defer cancel()
			c, err := pgx.ConnectConfig(cctx, cfg)
			if err != nil {
				return fmt.Errorf("session %d: %w", i, err)
			}
			conns[i] = c
			if k := opened.Add(1); k%1000 == 0 {
				b.logf("observer: %s sessions open after %s", thousands(k), time.Since(start).Round(100*time.Millisecond))
			}
			return nil
		})
	}
	err := g.Wait()
	for _, c := range conns {
		if c != nil {
			w.conns = append(w.conns, c)
		}
	}
	return err
}

func (w *obsWorld) closeSessions() {
	g := errgroup.Group{}
	g.SetLimit(sessionsAtOnce)
	for _, c := range w.conns {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return c.Close(ctx)
		})
	}
	_ = g.Wait()
	w.conns = nil
}

// observeSize measures one size on a fresh state store, with three
// processes in turn: the first makes the first pass; the second, at a
// short interval, publishes its backlog (1,000 events a pass), which
// would otherwise ride on the passes measured next; the third makes the
// steady and churn passes. RSS is the largest peak of the three.
func (b *Bench) observeSize(ctx context.Context, srv *pgServer, w *obsWorld, size int) (f obsFigures, err error) {
	o := b.opt.obs
	schema := b.schemaName("obs" + obsSizeKey(size))
	defer b.dropSchema(context.WithoutCancel(ctx), schema)
	st, err := store.Open(ctx, store.Config{URL: b.opt.dbURL, Schema: schema})
	if err != nil {
		return f, err
	}
	err = st.Migrate(ctx)
	st.Close()
	if err != nil {
		return f, err
	}
	dir, err := os.MkdirTemp("", "leaseguard-bench-observer-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	env := map[string]string{
		"LEASEGUARD_DATABASE_SCHEMA":  schema,
		"LEASEGUARD_NATS_URL":         "",
		"LEASEGUARD_DATA_DIR":         filepath.Join(dir, "data"),
		"LEASEGUARD_ROLES":            "observer",
		"LEASEGUARD_TARGETS":          "obs=" + srv.url(),
		"LEASEGUARD_OBSERVE_INTERVAL": o.interval.String(),
		// The first pass at 100,000 roles writes 100,000 rows and events:
		// on a busy machine more than the default 10 s.
		"LEASEGUARD_PASS_TIMEOUT":                   "60s",
		"LEASEGUARD_DB_IDLE_IN_TRANSACTION_TIMEOUT": "120s",
	}
	if err := b.withObserver(ctx, env, &f.peaks[0], func(p *passWatch) (err error) {
		f.firstMS, _, err = p.next(ctx)
		return err
	}); err != nil {
		return f, err
	}
	env["LEASEGUARD_OBSERVE_INTERVAL"] = "200ms"
	if err := b.withObserver(ctx, env, &f.peaks[1], func(p *passWatch) (err error) {
		f.drain, err = b.published(ctx, schema)
		return err
	}); err != nil {
		return f, err
	}
	env["LEASEGUARD_OBSERVE_INTERVAL"] = o.interval.String()
	var steady, churn []float64
	err = b.withObserver(ctx, env, &f.peaks[2], func(p *passWatch) error {
		if _, _, err := p.next(ctx); err != nil { // the process's first pass: warm-up
			return err
		}
		for range o.steady {
			ms, ev, err := p.next(ctx)
			if err != nil {
				return err
			}
			if ev == 0 {
				steady = append(steady, ms)
			}
		}
		for range o.churn {
			if err := w.churn(ctx, size/100); err != nil {
				return err
			}
			ms, ev, err := p.next(ctx)
			if err != nil {
				return err
			}
			churn, f.churnEvents = append(churn, ms), ev
		}
		f.rss, _, err = p.lg.rss()
		return err
	})
	if err != nil {
		return f, err
	}
	f.steadyMS, f.churnMS = median(steady), median(churn)
	f.hwm = max(f.peaks[0], f.peaks[1], f.peaks[2])
	b.logf("observer: %s roles: first pass %.0f ms, backlog published in %s, steady %s ms, after churn %s ms, RSS %.1f MB, peaks %.1f/%.1f/%.1f MB (first/backlog/steady)",
		thousands(int64(size)), f.firstMS, f.drain.Round(100*time.Millisecond), msList(steady), msList(churn), f.rss,
		f.peaks[0], f.peaks[1], f.peaks[2])
	return f, nil
}

// withObserver runs `leaseguard run` with env, calls fn with a watch on
// its passes, stops it and raises *hwm to its peak RSS.
func (b *Bench) withObserver(ctx context.Context, env map[string]string, hwm *float64, fn func(*passWatch) error) (err error) {
	lg, err := b.startLeaseguard(ctx, env)
	if err != nil {
		return err
	}
	defer func() {
		if serr := lg.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if err := fn(&passWatch{lg: lg, failed: &b.obsFailed}); err != nil {
		return err
	}
	_, h, err := lg.rss()
	*hwm = max(*hwm, h)
	return err
}

// published waits until the state store holds no unpublished observer
// event and returns how long that took from the call.
func (b *Bench) published(ctx context.Context, schema string) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(10 * time.Minute)
	for {
		var left int
		if err := b.admin.QueryRow(ctx, "SELECT count(*) FROM "+ident(schema)+".db_events WHERE published_at IS NULL").Scan(&left); err != nil {
			return 0, err
		}
		if left == 0 {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d observer events still unpublished after 10 min", left)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// passWatch follows the child's passes through its metrics.
type passWatch struct {
	lg                         *child
	count, sum, changes, fails float64
	failed                     *int
}

// next waits for the next pass to end and returns its time in ms and the
// changes it saw (a pass that failed is an error).
func (p *passWatch) next(ctx context.Context) (ms, changes float64, err error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		count, err := p.lg.metric(ctx, "leaseguard_observer_pass_seconds_count")
		if err != nil {
			return 0, 0, err
		}
		fails, err := p.lg.metric(ctx, "leaseguard_observer_pass_failures_total")
		if err != nil {
			return 0, 0, err
		}
		if count > p.count && fails > p.fails {
			// A failed pass (it ran out of time on a busy machine) is
			// tried again at the next interval: counted, not measured.
			sum, _ := p.lg.metric(ctx, "leaseguard_observer_pass_seconds_sum")
			ch, _ := p.lg.metric(ctx, "leaseguard_observer_changes_total")
			p.count, p.sum, p.changes, p.fails = count, sum, ch, fails
			*p.failed++
			continue
		}
		if count > p.count {
			sum, err := p.lg.metric(ctx, "leaseguard_observer_pass_seconds_sum")
			if err != nil {
				return 0, 0, err
			}
			ch, err := p.lg.metric(ctx, "leaseguard_observer_changes_total")
			if err != nil {
				return 0, 0, err
			}
			if count > p.count+1 {
				return 0, 0, errors.New("missed an observer pass: the harness polls too slowly")
			}
			ms, changes = (sum-p.sum)*1000, ch-p.changes
			p.count, p.sum, p.changes = count, sum, ch
			return ms, changes, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("no observer pass in 2 min: %s", p.lg.lastLines())
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return 0, 0, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func msList(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(s, "/")
}
