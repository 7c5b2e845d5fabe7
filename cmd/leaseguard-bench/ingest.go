package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/promtest"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// ingestRig is the ingest half of startPipeline, driven in process: the
// ledger in its own schema, the target set, the expiry resolver kicked
// after issues, and a Processor whose metrics count processed entries.
type ingestRig struct {
	st      *store.Store
	targets *target.Set
	reg     *prometheus.Registry
	metrics *ingest.Metrics
	proc    *ingest.Processor
	ledger  *lagLedger
	// resolves counts the expiry resolver's passes (nil: no resolver).
	resolves *countingResolver
	stop     func()
}

// countingResolver is the ledger as the expiry resolver sees it, counting
// passes, their time and the leases they resolved.
type countingResolver struct {
	st       *store.Store
	mu       sync.Mutex
	passes   int
	seconds  float64
	resolved int
}

func (c *countingResolver) ResolveExpiry(ctx context.Context, r store.ValidUntilReader, ttls store.RoleTTLs, now time.Time, limit int) (int, error) {
	start := time.Now()
	n, err := c.st.ResolveExpiry(ctx, r, ttls, now, limit)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.passes++
	c.seconds += time.Since(start).Seconds()
	c.resolved += n
	return n, err
}

func (c *countingResolver) read() (passes int, seconds float64, resolved int) {
	if c == nil {
		return 0, 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.passes, c.seconds, c.resolved
}

// newIngestRig builds the rig on a fresh schema; close removes it.
func (b *Bench) newIngestRig(ctx context.Context, schema string, ttls store.RoleTTLs) (*ingestRig, error) {
	st, err := store.Open(ctx, store.Config{URL: b.appURL("leaseguard-bench-ledger"), Schema: schema})
	if err != nil {
		return nil, err
	}
	r := &ingestRig{st: st, reg: prometheus.NewRegistry()}
	if err := st.Migrate(ctx); err != nil {
		r.close(b)
		return nil, fmt.Errorf("migrate %s: %w", schema, err)
	}
	if r.targets, err = target.Open(ctx, target.Config{Targets: []target.Target{{Name: target.DefaultName(b.opt.dbURL), URL: b.opt.dbURL}}}); err != nil {
		r.close(b)
		return nil, err
	}
	logger := slog.New(slog.DiscardHandler)
	var kick func()
	if b.opt.resolver {
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		var wg sync.WaitGroup
		r.resolves = &countingResolver{st: st}
		resolver := ingest.NewExpiryResolver(r.resolves, r.targets, ttls, logger)
		wg.Go(func() { _ = resolver.Run(rctx) })
		r.stop = func() { cancel(); wg.Wait() }
		kick = resolver.Kick
	}
	r.metrics = ingest.NewMetrics(r.reg)
	r.ledger = &lagLedger{st: st}
	r.proc, err = ingest.NewProcessor(ingest.ProcessorConfig{
		Ledger: r.ledger, Router: r.targets, MaxEntryBytes: ingest.DefaultMaxEntryBytes,
		Metrics: r.metrics, Logger: logger, OnIssued: kick,
	})
	if err != nil {
		r.close(b)
		return nil, err
	}
	return r, nil
}

// benchRoleTTLs gives database roles of the corpus a default TTL
// (LEASEGUARD_ROLE_TTLS), so each of their leases gets an expiry on its
// first resolver pass, as it would from pg_roles in production where the
// users exist (the corpus's users do not). With hmacMounts false, the
// mount that logs usernames HMAC'd gets none, as with the default
// configuration: its leases never get an expiry and are read again on
// every resolver pass.
func benchRoleTTLs(hmacMounts bool) store.RoleTTLs {
	ttls := store.RoleTTLs{}
	for _, m := range dbMounts {
		if !m.plain && !hmacMounts {
			continue
		}
		for _, r := range m.roles {
			ttls[m.mount+"/"+r] = time.Hour
		}
	}
	return ttls
}

func (r *ingestRig) close(b *Bench) {
	if r.stop != nil {
		r.stop()
	}
	if r.targets != nil {
		r.targets.Close()
	}
	schema := r.st.Schema()
	r.st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.dropSchema(ctx, schema); err != nil {
		b.logf("cleanup: drop schema %s: %v", schema, err)
	}
}

// processed is the number of entries the Processor has finished: counted
// after their batch's ledger transaction committed (or after a batch
// that needed no write).
func (r *ingestRig) processed() (int, error) {
	mfs, err := r.reg.Gather()
	if err != nil {
		return 0, err
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "leaseguard_ingest_entries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return int(n), nil
}

// applyTime returns the count and total seconds of ledger transactions
// (leaseguard_ingest_apply_seconds).
func (r *ingestRig) applyTime() (int, float64) {
	return histogram(r.reg, "leaseguard_ingest_apply_seconds")
}

// histogram returns the sample count and sum of a histogram without
// labels in reg (zeros if absent).
func histogram(reg prometheus.Gatherer, name string) (int, float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				return int(h.GetSampleCount()), h.GetSampleSum()
			}
		}
	}
	return 0, 0
}

// histogramSums is the sum of each series of a histogram, by the value of
// its label.
func histogramSums(reg prometheus.Gatherer, name, label string) map[string]float64 {
	out := map[string]float64{}
	hs, err := promtest.Histograms(reg, name, label)
	if err != nil {
		return out
	}
	for v, h := range hs {
		out[v] = h.GetSampleSum()
	}
	return out
}

// histogramSum is the sum of a histogram, and whether it has samples.
func histogramSum(reg prometheus.Gatherer, name string) (float64, bool) {
	n, sum := histogram(reg, name)
	return sum, n > 0
}

// waitProcessed polls until n entries are processed and returns when that
// was seen (within the 2 ms poll interval).
func (r *ingestRig) waitProcessed(ctx context.Context, n int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, err := r.processed()
		if err != nil {
			return time.Time{}, err
		}
		if got >= n {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d entries processed after %s", got, n, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// lagLedger is the store seen through the Processor's Ledger interface; it
// records, for every lease event and creds record of a committed batch,
// the time from the entry's timestamp (stamped at publish) to the commit.
type lagLedger struct {
	st *store.Store
	mu sync.Mutex
	// lags in milliseconds since the last take.
	lags []float64
}

func (l *lagLedger) Apply(ctx context.Context, b store.Batch) (store.ApplyStats, error) {
	st, err := l.st.Apply(ctx, b)
	if err != nil {
		return st, err
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range b.Leases {
		l.lags = append(l.lags, ms(now.Sub(b.Leases[i].EventTime)))
	}
	for i := range b.Creds {
		l.lags = append(l.lags, ms(now.Sub(b.Creds[i].Time)))
	}
	return st, nil
}

// take returns the lags recorded since the last take.
func (l *lagLedger) take() []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lags
	l.lags = nil
	return out
}

// e2eRun is the outcome of one end-to-end run.
type e2eRun struct {
	rate    float64 // entries/s, first publish to last entry processed
	pubRate float64 // entries/s the publisher managed
	lag     dist    // publish → commit, burst
	paced   dist    // publish → commit at the paced rate
	rows    int     // ledger rows written (leases + creds requests)
	// batches and applyMS: ledger transactions of the burst and their
	// mean duration.
	batches int
	applyMS float64
	cpu     string // CPU use during the burst
	// Expiry resolver passes during the burst, their total time and the
	// leases they resolved.
	resolverPasses   int
	resolverSeconds  float64
	resolverResolved int
}

// publisher sends corpus entries [lo, hi) with their time stamped now.
type publisher func(ctx context.Context, c *corpus, lo, hi int) error

// e2eRunOnce measures one run: a burst of the whole corpus published as
// fast as the publisher goes, then (if set) a paced phase of the paced
// corpus at opt.pacedRate entries/s.
func (b *Bench) e2eRunOnce(ctx context.Context, rig *ingestRig, burst, paced *corpus, publish publisher) (e2eRun, error) {
	var out e2eRun
	base, err := rig.processed()
	if err != nil {
		return out, err
	}
	rig.ledger.take()
	c0, s0 := rig.applyTime()
	p0, rs0, rn0 := rig.resolves.read()
	n := len(burst.lines)
	cs := sampleCPU()
	start := time.Now()
	pubErr := make(chan error, 1)
	var pubDone time.Time
	wctx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	go func() {
		err := publish(ctx, burst, 0, n)
		pubDone = time.Now()
		if err != nil {
			stopWait()
		}
		pubErr <- err
	}()
	// Generous: a tenth of the target rate.
	done, err := rig.waitProcessed(wctx, base+n, time.Duration(n/2000+30)*time.Second)
	if perr := <-pubErr; perr != nil {
		return out, fmt.Errorf("publish: %w", perr)
	}
	if err != nil {
		return out, err
	}
	out.cpu = b.cpuSince(cs)
	out.rate = float64(n) / done.Sub(start).Seconds()
	out.pubRate = float64(n) / pubDone.Sub(start).Seconds()
	lags := rig.ledger.take()
	out.rows = len(lags)
	out.lag = distOf(lags)
	p1, rs1, rn1 := rig.resolves.read()
	out.resolverPasses, out.resolverSeconds, out.resolverResolved = p1-p0, rs1-rs0, rn1-rn0
	c1, s1 := rig.applyTime()
	if out.batches = c1 - c0; out.batches > 0 {
		out.applyMS = (s1 - s0) * 1000 / float64(out.batches)
	}

	if paced != nil && b.opt.pacedRate > 0 {
		base += n
		m := len(paced.lines)
		if err := pace(ctx, paced, m, b.opt.pacedRate, publish); err != nil {
			return out, fmt.Errorf("paced publish: %w", err)
		}
		if _, err := rig.waitProcessed(ctx, base+m, time.Duration(m/2000+30)*time.Second); err != nil {
			return out, fmt.Errorf("paced phase: %w", err)
		}
		out.paced = distOf(rig.ledger.take())
	}
	return out, nil
}

// pace publishes m entries at rate entries/s, in 5 ms slices.
func pace(ctx context.Context, c *corpus, m, rate int, publish publisher) error {
	const tick = 5 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	sent := 0
	for sent < m {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		due := min(m, int(time.Since(start).Seconds()*float64(rate)))
		if due > sent {
			if err := publish(ctx, c, sent, due); err != nil {
				return err
			}
			sent = due
		}
	}
	return nil
}

// e2eScenario runs an end-to-end scenario for one transport: runs
// interleaved with nothing else, the median of their rates and lags.
func (b *Bench) e2eScenario(ctx context.Context, transport string, runOnce func(ctx context.Context, r int, burst, paced *corpus) (e2eRun, error)) error {
	t0 := time.Now()
	burst := generateCorpus(b.opt.e2eEntries, 2)
	var paced *corpus
	if b.opt.pacedRate > 0 {
		paced = generateCorpus(int(float64(b.opt.pacedRate)*b.opt.pacedFor.Seconds()), 3)
	}
	b.logf("%s: corpus of %d entries (%.0f MB) generated in %s", transport, len(burst.lines), float64(burst.bytes())/1e6, time.Since(t0).Round(time.Millisecond))
	stop, err := b.startProfile(transport)
	if err != nil {
		return err
	}
	defer stop()

	var rates, pubRates, p50, p99, pacedP50, pacedP99, maxLag []float64
	rows := 0
	for r := range b.opt.runsFor(transport) {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := runOnce(ctx, r, burst, paced)
		if err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
		rates, pubRates = append(rates, res.rate), append(pubRates, res.pubRate)
		p50, p99, maxLag = append(p50, res.lag.p50), append(p99, res.lag.p99), append(maxLag, res.lag.max)
		rows = res.rows
		msg := fmt.Sprintf("%s: run %d: %s/s (publisher %s/s; %d ledger transactions of %.1f ms mean; expiry resolver: %d passes, %.1f s, %d leases resolved), burst lag %s",
			transport, r+1, thousands(int64(res.rate)), thousands(int64(res.pubRate)), res.batches, res.applyMS,
			res.resolverPasses, res.resolverSeconds, res.resolverResolved, res.lag)
		if paced != nil {
			pacedP50, pacedP99 = append(pacedP50, res.paced.p50), append(pacedP99, res.paced.p99)
			msg += fmt.Sprintf("; at %s/s: %s", thousands(int64(b.opt.pacedRate)), res.paced)
		}
		b.logf("%s (burst: %s)", msg, res.cpu)
	}
	rate := median(rates)
	name := map[string]string{"nats": "NATS JetStream", "kafka": "Kafka (kfake)"}[transport]
	b.results.add(row{figure: "e2e ingest, " + name, value: rate, baseline: nanF, unit: "/s", target: "≥20,000/s", verdict: verdict(rate >= 20000)})
	b.results.add(row{figure: "  lag p99, burst of " + thousands(int64(b.opt.e2eEntries)), value: median(p99), baseline: nanF, unit: "ms"})
	b.results.set("e2e_"+transport+"_entries_per_sec", rate)
	b.results.set("e2e_"+transport+"_publisher_entries_per_sec", median(pubRates))
	b.results.set("e2e_"+transport+"_p50_lag_ms", median(p50))
	b.results.set("e2e_"+transport+"_p99_lag_ms", median(p99))
	b.results.set("e2e_"+transport+"_max_lag_ms", median(maxLag))
	if paced != nil {
		b.results.add(row{figure: fmt.Sprintf("  lag p99 at %s/s", thousands(int64(b.opt.pacedRate))), value: median(pacedP99), baseline: nanF, unit: "ms"})
		b.results.set("e2e_"+transport+"_paced_p50_lag_ms", median(pacedP50))
		b.results.set("e2e_"+transport+"_paced_p99_lag_ms", median(pacedP99))
		b.results.set("e2e_paced_entries_per_sec", float64(b.opt.pacedRate))
	}
	b.results.set("e2e_entries", float64(b.opt.e2eEntries))
	b.results.note("e2e %s: %d entries per run published as fast as the publisher goes, %d of them write the ledger (lease events, creds records); lag is publish → commit of those; "+
		"LEASEGUARD_ROLE_TTLS covers the corpus's roles, standing in for users that would exist in pg_roles", transport, b.opt.e2eEntries, rows)
	return nil
}

// nanF marks a row without baseline.
var nanF = math.NaN()
