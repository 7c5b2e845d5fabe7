package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/revoker"
)

// directGrantsMax is the most users the expiry scenario grants directly
// on its tables under -expiry-grants=auto: at 10,000 PostgreSQL refuses
// the GRANT ("row is too big: size 8168, maximum size 8160"), as a
// table's ACL lives in its pg_class row.
const directGrantsMax = 2000

// parseExpiry reads -expiry-leases (sizes) and checks -expiry-grants.
func parseExpiry(sizes, grants string, quick bool) ([]int, error) {
	switch grants {
	case "auto", "both", grantDirect, grantGroup:
	default:
		return nil, fmt.Errorf("-expiry-grants: %q is not direct, group, both or auto", grants)
	}
	if sizes == "" {
		sizes = "1000,10000"
		if quick {
			sizes = "100"
		}
	}
	var out []int
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-expiry-leases: %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// grantModes are the ways the users of an n-user wave are granted.
func (o options) grantModes(n int) []string {
	switch o.expiryGrants {
	case grantDirect, grantGroup:
		return []string{o.expiryGrants}
	case "both":
		return []string{grantDirect, grantGroup}
	}
	if n <= directGrantsMax {
		return []string{grantDirect, grantGroup}
	}
	return []string{grantGroup}
}

// expiryCase is one size and grant mode of the expiry scenario, and the
// suffix of its keys in results.json: none for the first size's first
// mode (the figures tracked since the first landing), "_10k" for 10,000,
// "_group" for group grants at a size also measured with direct ones.
type expiryCase struct {
	n    int
	mode string
	key  string
}

func (o options) expiryCases() []expiryCase {
	var out []expiryCase
	for k, n := range o.expirySizes {
		modes := o.grantModes(n)
		for m, mode := range modes {
			key := ""
			if k > 0 {
				key = sizeKey(n)
			}
			if m > 0 {
				key += "_" + mode
			}
			out = append(out, expiryCase{n: n, mode: mode, key: key})
		}
	}
	return out
}

// sizeKey is "_10k" for 10,000, "_2500" for 2,500.
func sizeKey(n int) string {
	if n%1000 == 0 {
		return fmt.Sprintf("_%dk", n/1000)
	}
	return fmt.Sprintf("_%d", n)
}

// expiryScenario: leases that expire in the same second, with the real
// pipeline (`leaseguard run` as a child process: ingest, expiry resolver,
// detector, revocation queue, revoker, relay), measured from each lease's
// expiry plus grace to its user being gone from pg_roles; for each size of
// -expiry-leases and each grant mode.
func (b *Bench) expiryScenario(ctx context.Context) error {
	for _, c := range b.opt.expiryCases() {
		if err := b.expiryRuns(ctx, c); err != nil {
			return fmt.Errorf("%d leases, %s grants: %w", c.n, c.mode, err)
		}
	}
	return nil
}

// expiryRuns measures one case over its runs and records its figures.
func (b *Bench) expiryRuns(ctx context.Context, c expiryCase) error {
	var p50, p95, p99, mx, rec99 []float64
	var all []float64
	var cpu []expiryCPU
	for r := range b.opt.runsFor("expiry") {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.vacuumCatalogs(ctx, b.admin, "expiry")
		lat, rec, used, err := b.expiryRun(ctx, r, c)
		if err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
		d, dr := distOf(lat), distOf(rec)
		b.logf("expiry: %d leases, %s grants: run %d: expiry+grace → gone from pg_roles: %s; → outcome and evidence recorded: %s", c.n, c.mode, r+1, d, dr)
		p50, p95, p99, mx = append(p50, d.p50), append(p95, d.p95), append(p99, d.p99), append(mx, d.max)
		rec99 = append(rec99, dr.p99)
		all = append(all, lat...)
		cpu = append(cpu, used)
	}
	b.recordExpiry(c, p50, p95, p99, mx, rec99)
	b.recordCPU(c, cpu)
	b.results.note("expiry, %d leases, %s grants: users created as Vault's plugin does (VALID UNTIL spread over one second, 1%% with a live session, at most %d), their audit entries ingested by `leaseguard run` "+
		"(grace %s, detect interval %s, revocation batch %d, blast-radius limit %d/min); latency from VALID UNTIL (the ledger's expire_at; Vault sets it 5 s after the lease's own expiry) "+
		"plus grace to the role missing from pg_roles, polled every %s; all runs pooled: %s",
		c.n, c.mode, maxLiveSessions, b.opt.expiryGrace, b.opt.detectInterval, b.opt.revokeBatch, b.opt.expiryRateLimit, goneEvery(c.n), distOf(all))
	return nil
}

// recordExpiry adds a case's latency rows and figures.
func (b *Bench) recordExpiry(c expiryCase, p50, p95, p99, mx, rec99 []float64) {
	goal := 1000.0
	if c.n > directGrantsMax {
		goal = 5000
	}
	b.results.add(row{figure: fmt.Sprintf("expiry→drop p50, %d leases, %s grants", c.n, c.mode), value: median(p50), baseline: nanF, unit: "ms"})
	b.results.add(row{figure: "  p95", value: median(p95), baseline: nanF, unit: "ms"})
	b.results.add(row{figure: "  p99", value: median(p99), baseline: nanF, unit: "ms", target: "<" + thousands(int64(goal)) + " ms", verdict: verdict(median(p99) < goal)})
	b.results.add(row{figure: "  max", value: median(mx), baseline: nanF, unit: "ms"})
	b.results.set("expiry_to_drop_p50_ms"+c.key, median(p50))
	b.results.set("expiry_to_drop_p95_ms"+c.key, median(p95))
	b.results.set("expiry_to_drop_p99_ms"+c.key, median(p99))
	b.results.set("expiry_to_drop_max_ms"+c.key, median(mx))
	b.results.set("expiry_to_recorded_p99_ms"+c.key, median(rec99))
	b.results.set("expiry_leases"+c.key, float64(c.n))
}

// expiryRun runs one expiry wave and returns, in ms, each user's latency
// to being gone from pg_roles and to its outcome being recorded (with its
// evidence) in the state store, and the CPU leaseguard used.
func (b *Bench) expiryRun(ctx context.Context, r int, c expiryCase) (gone, recorded []float64, used expiryCPU, err error) {
	n := c.n
	dir, err := os.MkdirTemp("", "leaseguard-bench-expiry-")
	if err != nil {
		return nil, nil, used, err
	}
	defer os.RemoveAll(dir)
	srv, err := startBenchNATS(filepath.Join(dir, "nats"))
	if err != nil {
		return nil, nil, used, err
	}
	defer srv.Shutdown()

	stateSchema := b.schemaName(fmt.Sprintf("exstate%d", r+1))
	appWhat := fmt.Sprintf("exapp%d", r+1)
	defer b.dropSchema(context.WithoutCancel(ctx), stateSchema)
	// Deferred calls run last first: the schema, then its group role.
	defer b.dropGroup(context.WithoutCancel(ctx), appWhat)
	defer b.dropSchema(context.WithoutCancel(ctx), b.schemaName(appWhat))
	grants, err := b.appSchema(ctx, appWhat, 2)
	if err != nil {
		return nil, nil, used, err
	}
	if grants, err = b.userGrants(ctx, b.admin, appWhat, c.mode, grants); err != nil {
		return nil, nil, used, err
	}

	lg, err := b.startLeaseguard(ctx, map[string]string{
		"LEASEGUARD_DATABASE_SCHEMA":            stateSchema,
		"LEASEGUARD_NATS_URL":                   srv.URL(),
		"LEASEGUARD_NATS_NKEY_FILE":             srv.seedFile(bus.UserLeaseguard),
		"LEASEGUARD_DATA_DIR":                   filepath.Join(dir, "data"),
		"LEASEGUARD_EXPIRY_GRACE":               b.opt.expiryGrace.String(),
		"LEASEGUARD_DETECT_INTERVAL":            b.opt.detectInterval.String(),
		"LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE": strconv.Itoa(b.opt.expiryRateLimit),
		"LEASEGUARD_REVOCATION_BATCH":           strconv.Itoa(b.opt.revokeBatch),
		// Nothing is enforced without a scope; this run's ledger holds only
		// the scenario's own leases, so everywhere is what it measures.
		"LEASEGUARD_ENFORCE_SCOPE": "*",
	})
	if err != nil {
		return nil, nil, used, err
	}
	defer func() {
		if err := lg.stop(); err != nil {
			b.logf("expiry: %v", err)
		}
	}()

	w, err := b.expiryUsers(ctx, n, grants, c.mode)
	if err != nil {
		return nil, nil, used, err
	}
	sess, err := b.liveSessions(ctx, w)
	if err != nil {
		return nil, nil, used, err
	}
	defer sess.close()
	ingest := b.readLeaseguardCPU(lg.pid())
	if err := publishAudit(srv, w.lines); err != nil {
		return nil, nil, used, err
	}
	resolved, err := b.waitResolved(ctx, stateSchema, n, w.first)
	if err != nil {
		return nil, nil, used, err
	}
	used.ingest = b.leaseguardCPUSince(lg.pid(), ingest)
	used.entries = 2 * n
	b.logf("expiry: run %d: %d users created and their leases resolved %.1f s before the first expiry; ingest of %d entries: %s", r+1, n, time.Until(w.first).Seconds(), used.entries, used.ingest)
	if resolved < n {
		return nil, nil, used, fmt.Errorf("only %d of %d leases had an expiry when the first was due: setup too slow, rerun with fewer -expiry-leases; leaseguard log: %s", resolved, n, lg.lastLines())
	}
	gone, recorded, err = b.measureWave(ctx, r, w, lg, stateSchema, &used)
	return gone, recorded, used, err
}

// measureWave measures a wave from just before its first expiry: when each
// user is gone from pg_roles and when its outcome was recorded, and (in
// used) the CPU and lock waits of leaseguard and its backends meanwhile.
// The CPU figures are of the wave, not of the set-up, which may end
// minutes earlier.
func (b *Bench) measureWave(ctx context.Context, r int, w expiryWave, lg *child, stateSchema string, used *expiryCPU) (gone, recorded []float64, err error) {
	n := len(w.names)
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-time.After(time.Until(w.first.Add(b.opt.expiryGrace).Add(-goneLead))):
	}
	cs := sampleCPU(lg.pid())
	revoke := b.readLeaseguardCPU(lg.pid())
	locks := b.sampleWaits(ctx, 100*time.Millisecond)
	gone, err = b.measureGone(ctx, w, lg)
	if err != nil {
		locks.stop()
		return nil, nil, err
	}
	finished, err := b.waitRecorded(ctx, stateSchema, n, 60*time.Second+time.Duration(n)*10*time.Millisecond)
	if err == nil {
		// The relay publishes a wave's evidence after it (it gives way to
		// the revoker): its CPU is the wave's too.
		err = b.waitPublished(ctx, r, stateSchema, time.Now().Add(60*time.Second))
	}
	used.waits = locks.stop()
	if err != nil {
		return nil, nil, err
	}
	used.revoke = b.leaseguardCPUSince(lg.pid(), revoke)
	used.revocations = len(finished)
	b.logf("expiry: run %d: from the first expiry to the last outcome recorded and its evidence published: %s; leaseguard and its backends: %s; %s", r+1, b.cpuSince(cs), used.revoke, used.waits)
	for i, u := range w.names {
		if t, ok := finished[u]; ok {
			recorded = append(recorded, ms(t.Sub(w.validUntil[i].Add(b.opt.expiryGrace))))
		}
	}
	if len(finished) < n {
		b.logf("expiry: run %d: only %d of %d revocations recorded as dropped after 60 s", r+1, len(finished), n)
	}
	b.logTimeSpent(ctx, r, lg)
	b.logStages(ctx, r, stateSchema)
	return gone, recorded, nil
}

// expiryWave is the users of one expiry run.
type expiryWave struct {
	// first is the earliest VALID UNTIL; validUntil[i] is names[i]'s, as
	// the database holds it.
	first      time.Time
	names      []string
	validUntil []time.Time
	// lines are each user's audit entries; pw their passwords.
	lines [][][]byte
	pw    map[string]string
}

// expiryUsers creates n users as Vault's plugin does, with VALID UNTIL
// spread over one whole second far enough ahead for the setup (about 2 ms
// a user on an idle machine, ten times that when it is busy with other
// work; -expiry-setup a user is allowed) and ingest to finish.
func (b *Bench) expiryUsers(ctx context.Context, n int, grants []string, mode string) (expiryWave, error) {
	sim := &vaultsim.Sim{Pool: b.admin, Mount: "postgres", DisplayName: b.displayName(),
		EntityID: "2f6e0c1a-bench-" + b.sfx, RemoteAddress: "10.20.30.40"}
	sim.HMAC("") // sets the salt before the workers share the Sim
	issued := time.Now()
	sim.Clock = func() time.Time { return issued }
	w := expiryWave{first: issued.Add(5*time.Second + time.Duration(n)*b.opt.expirySetup).Truncate(time.Second).Add(time.Second),
		names: make([]string, n), validUntil: make([]time.Time, n), lines: make([][][]byte, n), pw: map[string]string{}}
	creds := make([]vaultsim.Cred, n)
	// Direct grants one at a time: concurrent GRANTs on one table fail
	// with "tuple concurrently updated". Memberships do not share a row;
	// four at a time keep the server's password hashing busy.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(1)
	if mode == grantGroup {
		g.SetLimit(4)
	}
	for i := range n {
		w.validUntil[i] = w.first.Add(time.Duration(i) * time.Second / time.Duration(n))
		g.Go(func() error {
			// vaultsim sets VALID UNTIL to the lease's expiry + 5 s, as
			// Vault's plugin does.
			c, l, err := sim.Issue(gctx, "expiry", w.validUntil[i].Add(-5*time.Second).Sub(issued), grants...)
			creds[i], w.lines[i] = c, l
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return w, err
	}
	for i, c := range creds {
		w.names[i] = c.Username
		w.pw[c.Username] = c.Password
		// Read back what the database holds (microseconds).
		w.validUntil[i] = c.Expire.Add(5 * time.Second).Truncate(time.Microsecond)
	}
	return w, nil
}

// maxLiveSessions bounds the wave's live sessions: one user in a hundred
// of 10,000 took the server's last connection slots (max_connections
// 100, shared with other clients).
const maxLiveSessions = 20

// liveSessions opens a session as one user in a hundred, at most
// maxLiveSessions, spread over the wave.
func (b *Bench) liveSessions(ctx context.Context, w expiryWave) (*sessions, error) {
	sess := &sessions{}
	step := max(100, len(w.names)/maxLiveSessions)
	for i := 0; i < len(w.names); i += step {
		u := w.names[i]
		s, err := b.openSessions(ctx, []string{u}, w.pw[u])
		if err != nil {
			sess.close()
			return nil, err
		}
		sess.conns = append(sess.conns, s.conns...)
	}
	return sess, nil
}

// publishAudit publishes Vault's audit entries as a shipper would.
func publishAudit(srv *benchNATS, lines [][][]byte) error {
	nc, err := srv.connectAs(bus.UserShipper, nats.Name("bench-publisher"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// In chunks: the client stalls beyond 4,000 unacknowledged messages,
	// and 10,000 leases are 20,000 entries.
	const chunk = 1000
	for lo := 0; lo < len(lines); lo += chunk {
		for _, pair := range lines[lo:min(lo+chunk, len(lines))] {
			for _, l := range pair {
				if _, err := js.PublishAsync(benchAuditSubject, l); err != nil {
					return err
				}
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			return fmt.Errorf("audit entries not acknowledged by JetStream")
		}
	}
	return nil
}

// measureGone polls pg_roles until every user of w is gone and returns,
// in ms, each one's latency from its VALID UNTIL plus grace.
func (b *Bench) measureGone(ctx context.Context, w expiryWave, lg *child) ([]float64, error) {
	goneAt, err := b.pollGone(ctx, w.names, w.first.Add(b.opt.expiryGrace).Add(-goneLead),
		w.first.Add(time.Second+b.opt.expiryGrace+waitGone(len(w.names))), goneEvery(len(w.names)))
	if err != nil {
		return nil, err
	}
	var gone []float64
	missing := 0
	for i, u := range w.names {
		t, ok := goneAt[u]
		if !ok {
			missing++
			continue
		}
		gone = append(gone, ms(t.Sub(w.validUntil[i].Add(b.opt.expiryGrace))))
	}
	if missing > 0 {
		return nil, fmt.Errorf("%d of %d users still in pg_roles %s after expiry; leaseguard log: %s", missing, len(w.names), waitGone(len(w.names)), lg.lastLines())
	}
	return gone, nil
}

// goneLead is how long before the first expiry the polls start.
const goneLead = 200 * time.Millisecond

// waitGone is how long after the first expiry measureGone waits for n
// users to go: 90 s, and 30 ms more a user (10,000 users take about 10 s
// on an idle machine; 1,000 took 39 s with 1.5 cores busy elsewhere).
func waitGone(n int) time.Duration { return 90*time.Second + time.Duration(n)*30*time.Millisecond }

// logTimeSpent logs where the time went, from leaseguard's own metrics.
func (b *Bench) logTimeSpent(ctx context.Context, r int, lg *child) {
	dc, _ := lg.metric(ctx, "leaseguard_detector_pass_seconds_count")
	ds, _ := lg.metric(ctx, "leaseguard_detector_pass_seconds_sum")
	bc, _ := lg.metric(ctx, "leaseguard_revocation_batch_seconds_count")
	bs, _ := lg.metric(ctx, "leaseguard_revocation_batch_seconds_sum")
	b.logf("expiry: run %d: leaseguard spent %.2f s in %.0f detector passes and %.2f s in %.0f drop transactions (DropBatch)", r+1, ds, dc, bs, bc)
	b.logf("expiry: run %d: the revoker's batches by step: %s", r+1,
		stepSums(ctx, lg, "leaseguard_revocation_step_seconds", revoker.BatchSteps))
	b.logf("expiry: run %d: the detector's passes by step: %s", r+1,
		stepSums(ctx, lg, "leaseguard_detector_pass_step_seconds", detectors.PassSteps))
}

// stepSums reads the sum of each step's series of the histogram name
// from lg's metrics, as "step 1.23 s, …".
func stepSums(ctx context.Context, lg *child, name string, steps []string) string {
	out := make([]string, len(steps))
	for i, step := range steps {
		v, _ := lg.metric(ctx, name+`_sum{step="`+step+`"}`)
		out[i] = fmt.Sprintf("%s %.2f s", step, v)
	}
	return strings.Join(out, ", ")
}

// logStages logs, from the ledger, how long after their expiry the
// leases' findings were recorded (the detector), their commands claimed
// (the detector, the bus and the revoker's queue) and their outcomes
// recorded (the revoker): which stage a slow wave waits on.
func (b *Bench) logStages(ctx context.Context, r int, schema string) {
	var p [6]float64
	err := b.admin.QueryRow(ctx, `SELECT
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM f.detected_at - l.expire_at)),
		percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM f.detected_at - l.expire_at)),
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.received_at - l.expire_at)),
		percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM v.received_at - l.expire_at)),
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.finished_at - l.expire_at)),
		percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM v.finished_at - l.expire_at))
		FROM `+ident(schema, "findings")+` AS f JOIN `+ident(schema, "leases")+` AS l USING (lease_id)
		JOIN `+ident(schema, "revocations")+` AS v ON v.command_id = f.command_id
		WHERE v.outcome = 'dropped'`).Scan(&p[0], &p[1], &p[2], &p[3], &p[4], &p[5])
	if err != nil {
		b.logf("expiry: run %d: stages: %v", r+1, err)
		return
	}
	b.logf("expiry: run %d: after the ledger's expiry, p50 / p99: finding recorded %.2f / %.2f s, command claimed %.2f / %.2f s, outcome recorded %.2f / %.2f s",
		r+1, p[0], p[1], p[2], p[3], p[4], p[5])
}

// waitRecorded waits until n revocations are recorded as dropped, or for
// timeout, and returns when each user's outcome was recorded.
func (b *Bench) waitRecorded(ctx context.Context, schema string, n int, timeout time.Duration) (map[string]time.Time, error) {
	q := "SELECT db_user, finished_at FROM " + ident(schema, "revocations") + " WHERE state = 'done' AND outcome = 'dropped'"
	deadline := time.Now().Add(timeout)
	for {
		qctx, cancel := context.WithDeadline(ctx, deadline.Add(pollGrace))
		rows, err := b.admin.Query(qctx, q)
		if err != nil {
			cancel()
			return nil, err
		}
		out := map[string]time.Time{}
		var u string
		var t time.Time
		_, err = pgx.ForEachRow(rows, []any{&u, &t}, func() error { out[u] = t; return nil })
		cancel()
		if err != nil {
			return nil, err
		}
		if len(out) >= n || time.Now().After(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitResolved waits until n leases of the ledger have an expire time, or
// until deadline; it returns how many have one.
func (b *Bench) waitResolved(ctx context.Context, schema string, n int, deadline time.Time) (int, error) {
	q := "SELECT count(*) FROM " + ident(schema, "leases") + " WHERE expire_at IS NOT NULL"
	return b.pollCount(ctx, q, 50*time.Millisecond, deadline, func(got int) bool { return got >= n })
}

// waitPublished waits until the outbox of schema holds no unpublished
// event, and logs how long that took.
func (b *Bench) waitPublished(ctx context.Context, r int, schema string, deadline time.Time) error {
	start := time.Now()
	q := "SELECT count(*) FROM " + ident(schema, "evidence_outbox") + " WHERE published_at IS NULL"
	left, err := b.pollCount(ctx, q, 50*time.Millisecond, deadline, func(left int) bool { return left == 0 })
	if err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("%d evidence events still unpublished %s after the last outcome", left, time.Since(start).Round(time.Second))
	}
	b.logf("expiry: run %d: the wave's evidence published %.1f s after its last outcome was recorded", r+1, time.Since(start).Seconds())
	return nil
}

// pollCount runs the count query q every interval until done says so of
// its count, or deadline passes; it returns the last count. Each query is
// bounded by the deadline plus pollGrace: a server that stops answering
// ends the wait soon after its deadline, not at the run's -timeout.
func (b *Bench) pollCount(ctx context.Context, q string, every time.Duration, deadline time.Time, done func(int) bool) (int, error) {
	for {
		qctx, cancel := context.WithDeadline(ctx, deadline.Add(pollGrace))
		var n int
		err := b.admin.QueryRow(qctx, q).Scan(&n)
		cancel()
		if err != nil {
			return 0, err
		}
		if done(n) || time.Now().After(deadline) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(every):
		}
	}
}

// pollGrace is how long past its wait's deadline a poll may take.
const pollGrace = 2 * time.Second

// goneEvery is how often measureGone polls for n users: every 20 ms, and
// 1 ms more per 100 users above 2,000 (100 ms for 10,000). A poll costs
// PostgreSQL about 1 µs per user still there, and ten thousand users
// polled every 20 ms took a quarter of a core from the leaseguard being
// measured; a wave of that size is measured against seconds.
func goneEvery(n int) time.Duration {
	return 20*time.Millisecond + time.Duration(max(0, n-2000)/100)*time.Millisecond
}

// pollGone polls pg_roles every interval from start until every name is
// gone or until deadline, and returns when each name was first seen gone.
//
// The names still there wait in a temporary table of the poll's
// connection, and each poll deletes from it those pg_roles no longer has
// and returns just them. Sending the names left with every poll and
// reading back those still there, 20 ms apart, cost PostgreSQL 11 ms a
// poll with 5,000 names left: half a core taken from the leaseguard being
// measured.
func (b *Bench) pollGone(ctx context.Context, names []string, start, deadline time.Time, every time.Duration) (map[string]time.Time, error) {
	conn, err := b.admin.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if err := pendingNames(ctx, conn.Conn(), names); err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(start)):
	}
	gone := make(map[string]time.Time, len(names))
	t := time.NewTicker(every)
	defer t.Stop()
	for len(gone) < len(names) && time.Now().Before(deadline) {
		// A name missing from this poll was gone when its snapshot was
		// taken, at the latest when the query started.
		at := time.Now()
		rows, err := conn.Query(ctx, `DELETE FROM bench_pending AS p
			WHERE NOT EXISTS (SELECT 1 FROM pg_roles AS r WHERE r.rolname = p.name) RETURNING p.name::text`)
		if err != nil {
			return nil, err
		}
		var name string
		if _, err := pgx.ForEachRow(rows, []any{&name}, func() error {
			gone[name] = at
			return nil
		}); err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return gone, nil
}

// pendingNames fills the temporary table bench_pending of conn with names.
func pendingNames(ctx context.Context, conn *pgx.Conn, names []string) error {
	if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS bench_pending;
		CREATE TEMPORARY TABLE bench_pending (name name PRIMARY KEY)`); err != nil {
		return fmt.Errorf("pending names: %w", err)
	}
	rows := make([][]any, len(names))
	for i, n := range names {
		rows[i] = []any{n}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"bench_pending"}, []string{"name"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("pending names: %w", err)
	}
	_, err := conn.Exec(ctx, "ANALYZE bench_pending")
	return err
}
