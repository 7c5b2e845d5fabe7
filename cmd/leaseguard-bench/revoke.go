package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// revokeTables is how many tables each user is granted SELECT on.
const revokeTables = 3

// alternate runs the scenario's runs, each measuring ours and then the
// baseline or, every other run, the other way round (so neither side
// always finds the server warmed up by the other), with before called
// ahead of each side; it returns the rates of each side, by run.
func (b *Bench) alternate(ctx context.Context, scenario string, ours, base func(context.Context, int) (float64, error),
	before func()) (oursRates, baseRates []float64, err error) {
	for r := range b.opt.runsFor(scenario) {
		sides := [2]func(context.Context, int) (float64, error){ours, base}
		if r%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		var rates [2]float64
		for i, side := range sides {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			before()
			if rates[i], err = side(ctx, r); err != nil {
				return nil, nil, fmt.Errorf("run %d: %w", r+1, err)
			}
		}
		if r%2 == 1 {
			rates[0], rates[1] = rates[1], rates[0]
		}
		oursRates, baseRates = append(oursRates, rates[0]), append(baseRates, rates[1])
		b.logf("%s: run %d: %s users/s through the revoker, baseline %s users/s", scenario, r+1, thousands(int64(rates[0])), thousands(int64(rates[1])))
	}
	return oursRates, baseRates, nil
}

// revokeScenario drops users through revoker.Executor (guards, locks,
// NOLOGIN, terminate, REASSIGN/DROP OWNED, DROP ROLE, after-checks, outcome
// and evidence per command) against a tight loop of DROP OWNED; DROP ROLE
// per user on one connection, each side on its own identical set of users,
// runs alternating which side goes first. The revoker's side also drops a
// third such set with its drop transactions alone, for the bookkeeping
// ratio.
func (b *Bench) revokeScenario(ctx context.Context) error {
	n := b.opt.revokeUsers
	stop, err := b.startProfile("revoke")
	if err != nil {
		return err
	}
	defer stop()
	ours, base, err := b.alternate(ctx, "revoke", b.revokeSide, b.revokeBaseline, func() {
		b.vacuumCatalogs(ctx, b.admin, "revoke")
	})
	if err != nil {
		return err
	}
	v, bl := median(ours), median(base)
	b.results.add(row{figure: fmt.Sprintf("revocations, %d users", n), value: v, baseline: bl, unit: "/s",
		target: "≥1× baseline", verdict: verdict(v >= bl)})
	b.results.set("revocations_per_sec", v)
	b.results.set("revocations_baseline_per_sec", bl)
	b.results.set("revocations_drop_transactions_only_per_sec", median(b.dropOnly))
	// The revoker's throughput ÷ that of its own drop transactions alone,
	// as many batches at a time, in the same run: 1 would be claims,
	// outcomes and evidence costing no time the drops could have used.
	var ratios []float64
	for k, d := range b.dropOnly {
		if k < len(ours) && d > 0 {
			ratios = append(ratios, ours[k]/d)
		}
	}
	if len(ratios) > 0 {
		rt := median(ratios)
		b.results.add(row{figure: "  revoker ÷ its drop transactions alone (bookkeeping)", value: rt, baseline: nanF, unit: "×",
			target: "≥0.9", verdict: verdict(rt >= 0.9)})
		b.results.set("revoker_bookkeeping_ratio", rt)
	}
	b.results.set("revoke_users", float64(n))
	b.results.set("revoke_in_flight", float64(b.opt.revokeInFlight))
	b.results.note("revocations: %d users each granted USAGE on a schema and SELECT on %d tables (every user on the same tables), %d holding a live session; "+
		"revoker batches of %d commands per Executor call, carried out %d at a time as the revoker service does (-revoke-in-flight), evidence committed for each; the blast-radius limit is off here (600/min by default); "+
		"drop transactions alone: another such set of users dropped by Dropper.DropBatch, as many batches at a time, right after the revoker in each run",
		n, revokeTables, b.opt.revokeSessions, b.opt.revokeBatch, b.opt.revokeInFlight)
	return nil
}

// revokeUsers creates one side's users and sessions; the caller closes the
// sessions and drops the schema.
func (b *Bench) revokeUsers(ctx context.Context, what string) ([]string, *sessions, error) {
	grants, err := b.appSchema(ctx, what, revokeTables)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	names := make([]string, b.opt.revokeUsers)
	for i := range names {
		names[i] = b.userName("revoke", now)
	}
	pw := newPassword()
	if err := b.createUsers(ctx, names, pw, func(int) time.Time { return now.Add(time.Hour) }, grants); err != nil {
		return nil, nil, err
	}
	s, err := b.openSessions(ctx, names[:min(b.opt.revokeSessions, len(names))], pw)
	if err != nil {
		return nil, nil, err
	}
	return names, s, nil
}

// revokeLeaseguard drops the users through the Executor, in batches, as
// the revoker service does, and returns users per second.
func (b *Bench) revokeLeaseguard(ctx context.Context, r int) (float64, error) {
	set, err := b.revokeSet(ctx, r, "rv", "")
	defer set.close()
	if err != nil {
		return 0, err
	}
	names, cmds := set.names, set.cmds
	st, reg, exec := set.rr.st, set.rr.reg, set.rr.exec

	cs := sampleCPU()
	start := time.Now()
	dropped, err := b.inFlight(cmds, func(batch []schemas.RevocationCommand) (int, error) {
		return droppedAll(exec.Execute(ctx, batch, nil))
	})
	if err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	b.logf("revoke: run %d: revoker: %s", r+1, b.cpuSince(cs))
	// Where the batches' time went. Batches in one database hold the drop
	// lock one at a time: its time held is the drops' ceiling, however
	// many batches are in flight.
	batchSecs, _ := histogramSum(reg, "leaseguard_revocation_batch_seconds")
	waitSecs, _ := histogramSum(reg, "leaseguard_revocation_drop_lock_wait_seconds")
	if heldSecs, ok := histogramSum(reg, "leaseguard_revocation_drop_lock_held_seconds"); ok && heldSecs > 0 {
		b.logf("revoke: run %d: drop transactions %.1f s in the revoker's %s, %.1f s of it waiting for the drop lock, %.1f s holding it (a ceiling of %s users/s)",
			r+1, batchSecs, elapsed.Round(time.Millisecond), waitSecs, heldSecs, thousands(int64(float64(dropped)/heldSecs)))
	}

	steps := histogramSums(reg, "leaseguard_revocation_step_seconds", "step")
	b.logf("revoke: run %d: the batches' time by step: admit %.2f s, claim %.2f s, triage %.2f s, carry out %.2f s, record %.2f s",
		r+1, steps["admit"], steps["claim"], steps["triage"], steps["carry_out"], steps["record"])

	if left, err := b.rolesLeft(ctx, names); err != nil || left > 0 {
		return 0, fmt.Errorf("after the revoker: %d users left (%v)", left, err)
	}
	if err := b.checkEvidence(ctx, st, r, len(names)); err != nil {
		return 0, err
	}
	return float64(dropped) / elapsed.Seconds(), nil
}

// revokeSide is the revoker's side of a run: users dropped through the
// Executor, then, for the bookkeeping ratio, another such set by its drop
// transactions alone.
func (b *Bench) revokeSide(ctx context.Context, r int) (float64, error) {
	rate, err := b.revokeLeaseguard(ctx, r)
	if err != nil {
		return 0, err
	}
	b.vacuumCatalogs(ctx, b.admin, "revoke")
	alone, err := b.revokeDropOnly(ctx, r)
	if err != nil {
		return 0, err
	}
	b.logf("revoke: run %d: drop transactions alone: %s users/s", r+1, thousands(int64(alone)))
	b.dropOnly = append(b.dropOnly, alone)
	return rate, nil
}

// revokeDropOnly drops the users with the revoker's drop transactions
// alone (Dropper.DropBatch: no claims, records or evidence), in batches
// of the same size as many at a time, and returns users per second.
func (b *Bench) revokeDropOnly(ctx context.Context, r int) (float64, error) {
	set, err := b.revokeSet(ctx, r, "rvd", "-alone")
	defer set.close()
	if err != nil {
		return 0, err
	}
	names, cmds, rr := set.names, set.cmds, set.rr
	pool, _ := rr.targets.Pool(revokeDB)
	cs := sampleCPU()
	start := time.Now()
	dropped, err := b.inFlight(cmds, func(batch []schemas.RevocationCommand) (int, error) {
		return droppedResults(rr.exec.Dropper.DropBatch(ctx, pool, revokeDB, batch, nil))
	})
	if err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	b.logf("revoke: run %d: drop transactions alone: %s", r+1, b.cpuSince(cs))
	if left, err := b.rolesLeft(ctx, names); err != nil || left > 0 {
		return 0, fmt.Errorf("after the drop transactions alone: %d users left (%v)", left, err)
	}
	return float64(dropped) / elapsed.Seconds(), nil
}

// revokeDB is the target the revoke scenario's revokers drop in.
const revokeDB = "bench"

// revokeUserSet is one set of users of a run, with their live sessions, a
// revoker on a state schema of its own and the issued commands that drop
// them; close removes the lot.
type revokeUserSet struct {
	names   []string
	cmds    []schemas.RevocationCommand
	rr      *benchRevoker
	cleanup []func()
}

func (s *revokeUserSet) close() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
}

// revokeSet makes run r's set of users for one side: schemas named by
// prefix, command ids ending in idSuffix.
func (b *Bench) revokeSet(ctx context.Context, r int, prefix, idSuffix string) (*revokeUserSet, error) {
	set := &revokeUserSet{}
	stateSchema := b.schemaName(fmt.Sprintf("%sstate%d", prefix, r+1))
	appWhat := fmt.Sprintf("%sapp%d", prefix, r+1)
	set.cleanup = append(set.cleanup,
		func() { b.dropSchema(context.WithoutCancel(ctx), stateSchema) },
		func() { b.dropSchema(context.WithoutCancel(ctx), b.schemaName(appWhat)) })
	names, sess, err := b.revokeUsers(ctx, appWhat)
	set.cleanup = append(set.cleanup, sess.close)
	if err != nil {
		return set, err
	}
	rr, err := b.openRevoker(ctx, stateSchema, revokeDB, b.opt.dbURL)
	if err != nil {
		return set, err
	}
	set.cleanup = append(set.cleanup, rr.close)
	set.names, set.rr = names, rr
	set.cmds, err = b.revokeCommands(ctx, rr.issuer, fmt.Sprintf("bench-%s-%d%s", b.sfx, r, idSuffix), revokeDB, names)
	return set, err
}

// revokeCommands are the commands, issued, that drop names in db.
func (b *Bench) revokeCommands(ctx context.Context, issuer *revoker.Issuer, idPrefix, db string, names []string) ([]schemas.RevocationCommand, error) {
	cmds := make([]schemas.RevocationCommand, len(names))
	now := time.Now().UTC()
	for i, u := range names {
		cmds[i] = schemas.RevocationCommand{
			ID: fmt.Sprintf("%s-%d", idPrefix, i), Action: schemas.ActionDropRole,
			Issuer: "detector", Rule: "lease-expired-not-revoked", Database: db, DBUser: u,
			LeaseID: fmt.Sprintf("postgres/creds/revoke/%s", randomString(24)), Reason: "benchmark",
			Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByOperator, CheckedAt: now, Detail: "benchmark"},
		}
	}
	return cmds, issuer.Issue(ctx, cmds)
}

// inFlight carries out cmds in batches with do, as many at once as the
// revoker service (revoker.InFlight), and returns how many do dropped;
// the first error of any batch is returned.
func (b *Bench) inFlight(cmds []schemas.RevocationCommand, do func([]schemas.RevocationCommand) (int, error)) (int, error) {
	var mu sync.Mutex
	var dropped int
	var failed error
	feed := func(hand func([]schemas.RevocationCommand)) error {
		for lo := 0; lo < len(cmds); lo += b.opt.revokeBatch {
			hand(cmds[lo:min(lo+b.opt.revokeBatch, len(cmds))])
		}
		return nil
	}
	work := func(batch []schemas.RevocationCommand) {
		n, err := do(batch)
		mu.Lock()
		defer mu.Unlock()
		dropped += n
		failed = cmp.Or(failed, err)
	}
	_ = revoker.InFlight(b.opt.revokeInFlight, feed, work)
	return dropped, failed
}

// droppedAll counts the commands dropped and recorded, or says which was
// not.
func droppedAll(done []revoker.Executed) (int, error) {
	for _, e := range done {
		switch {
		case !e.Recorded:
			return 0, fmt.Errorf("revocation of %s not recorded: %v", e.Command.DBUser, e.Err)
		case e.Result.Outcome != schemas.OutcomeDropped:
			return 0, fmt.Errorf("revocation of %s: %s: %s", e.Command.DBUser, e.Result.Outcome, e.Result.Reason)
		}
	}
	return len(done), nil
}

// droppedResults counts the drops, or says which was not one.
func droppedResults(results []schemas.RevocationResult) (int, error) {
	for _, res := range results {
		if res.Outcome != schemas.OutcomeDropped {
			return 0, fmt.Errorf("drop of %s: %s: %s", res.DBUser, res.Outcome, res.Reason)
		}
	}
	return len(results), nil
}

// benchRevoker is a revoker as run wires it, for one target: its state
// store (migrated), the target, the Executor and the Issuer, with their
// metrics in reg.
type benchRevoker struct {
	st      *store.Store
	targets *target.Set
	reg     *prometheus.Registry
	exec    *revoker.Executor
	issuer  *revoker.Issuer
}

func (b *Bench) openRevoker(ctx context.Context, stateSchema, db, url string) (_ *benchRevoker, err error) {
	rr := &benchRevoker{reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			rr.close()
		}
	}()
	if rr.st, err = store.Open(ctx, store.Config{URL: b.appURL("leaseguard-bench-state"), Schema: stateSchema}); err != nil {
		return nil, err
	}
	if err := rr.st.Migrate(ctx); err != nil {
		return nil, err
	}
	if rr.targets, err = target.Open(ctx, target.Config{Targets: []target.Target{{Name: db, URL: url}}}); err != nil {
		return nil, err
	}
	rr.exec, rr.issuer, err = benchExecutor(rr.targets, rr.st, rr.reg)
	return rr, err
}

func (rr *benchRevoker) close() {
	if rr.targets != nil {
		rr.targets.Close()
	}
	if rr.st != nil {
		rr.st.Close()
	}
}

// benchExecutor is an Executor of the revoker service's settings on st
// and targets, with its metrics in reg, and an Issuer whose commands it
// accepts.
func benchExecutor(targets *target.Set, st *store.Store, reg *prometheus.Registry) (*revoker.Executor, *revoker.Issuer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	signer := revoker.NewSigner(priv)
	verifier, err := revoker.NewVerifier(signer.PublicKey())
	if err != nil {
		return nil, nil, err
	}
	dropper, err := revoker.NewDropper(revoker.DropperConfig{
		Guard:            revoker.GuardConfig{ManagedPattern: revoker.DefaultManagedPattern},
		StatementTimeout: 10 * time.Second, LockTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, nil, err
	}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{
		Dropper: dropper, Verifier: verifier, Targets: targets, State: st.Pool(),
		Evidence: evidence.Builder{Source: "urn:leaseguard:bench"}, Logger: slog.New(slog.DiscardHandler),
		Metrics: revoker.NewMetrics(reg),
	})
	if err != nil {
		return nil, nil, err
	}
	issuer, err := revoker.NewIssuer(signer, targets, time.Hour, nil)
	return exec, issuer, err
}

// checkEvidence checks that each of the n users dropped has its
// revocation evidence, and logs its mean size.
func (b *Bench) checkEvidence(ctx context.Context, st *store.Store, r, n int) error {
	var evidenceRows int
	var evidenceBytes float64
	if err := st.Pool().QueryRow(ctx, "SELECT count(*), coalesce(avg(length(event)), 0) FROM evidence_outbox WHERE type = 'io.leaseguard.revocation.v1'").
		Scan(&evidenceRows, &evidenceBytes); err != nil {
		return err
	}
	b.logf("revoke: run %d: %d revocation evidence events of %.1f KB mean", r+1, evidenceRows, evidenceBytes/1024)
	if evidenceRows != n {
		return fmt.Errorf("%d revocation evidence events for %d users", evidenceRows, n)
	}
	return nil
}

// revokeBaseline drops the users with DROP OWNED BY u; DROP ROLE u, one
// user per round trip over one connection.
func (b *Bench) revokeBaseline(ctx context.Context, r int) (float64, error) {
	appWhat := fmt.Sprintf("rvbase%d", r+1)
	defer b.dropSchema(context.WithoutCancel(ctx), b.schemaName(appWhat))
	names, sess, err := b.revokeUsers(ctx, appWhat)
	// The dropped users' sessions live on (usename NULL); end them after.
	defer sess.close()
	if err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, b.appURL("leaseguard-bench-baseline"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cs := sampleCPU()
	start := time.Now()
	for _, u := range names {
		id := ident(u)
		if _, err := conn.Exec(ctx, "DROP OWNED BY "+id+"; DROP ROLE "+id); err != nil {
			return 0, fmt.Errorf("baseline drop: %w", err)
		}
	}
	elapsed := time.Since(start)
	b.logf("revoke: run %d: baseline: %s", r+1, b.cpuSince(cs))
	if left, err := b.rolesLeft(ctx, names); err != nil || left > 0 {
		return 0, fmt.Errorf("after the baseline: %d users left (%v)", left, err)
	}
	return float64(len(names)) / elapsed.Seconds(), nil
}
