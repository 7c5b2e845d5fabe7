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
// runs alternating which side goes first.
func (b *Bench) revokeScenario(ctx context.Context) error {
	n := b.opt.revokeUsers
	stop, err := b.startProfile("revoke")
	if err != nil {
		return err
	}
	defer stop()
	ours, base, err := b.alternate(ctx, "revoke", b.revokeLeaseguard, b.revokeBaseline, func() {
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
	// The revoker's throughput ÷ that of its own drop transactions in the
	// same run, as fast as the drop lock lets them through: the share of
	// the time the lock was held, so 1 is claims, outcomes, evidence and
	// the steps ahead of the lock all hidden behind other batches' drops.
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
		"drop transactions alone: users ÷ the time the target's drop lock was held",
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
	stateSchema := b.schemaName(fmt.Sprintf("rvstate%d", r+1))
	appWhat := fmt.Sprintf("rvapp%d", r+1)
	defer b.dropSchema(context.WithoutCancel(ctx), b.schemaName(appWhat))
	defer b.dropSchema(context.WithoutCancel(ctx), stateSchema)
	names, sess, err := b.revokeUsers(ctx, appWhat)
	defer sess.close()
	if err != nil {
		return 0, err
	}

	const db = "bench"
	rr, err := b.openRevoker(ctx, stateSchema, db, b.opt.dbURL)
	if err != nil {
		return 0, err
	}
	defer rr.close()
	st, reg, exec, issuer := rr.st, rr.reg, rr.exec, rr.issuer
	cmds := make([]schemas.RevocationCommand, len(names))
	now := time.Now().UTC()
	for i, u := range names {
		cmds[i] = schemas.RevocationCommand{
			ID: fmt.Sprintf("bench-%s-%d-%d", b.sfx, r, i), Action: schemas.ActionDropRole,
			Issuer: "detector", Rule: "lease-expired-not-revoked", Database: db, DBUser: u,
			LeaseID: fmt.Sprintf("postgres/creds/revoke/%s", randomString(24)), Reason: "benchmark",
			Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByOperator, CheckedAt: now, Detail: "benchmark"},
		}
	}
	if err := issuer.Issue(ctx, cmds); err != nil {
		return 0, err
	}

	cs := sampleCPU()
	start := time.Now()
	dropped, err := b.executeInFlight(ctx, exec, cmds)
	if err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	b.logf("revoke: run %d: revoker: %s", r+1, b.cpuSince(cs))
	// The drop transactions alone go no faster than the target's drop
	// lock lets them: batches in one database hold it one at a time, so
	// its time held adds up without counting a second twice, however many
	// batches are in flight. (Their whole time does not: one batch's
	// steps ahead of the lock overlap another's under it, and a batch
	// waits for the lock while another holds it.)
	batchSecs, _ := histogramSum(reg, "leaseguard_revocation_batch_seconds")
	waitSecs, _ := histogramSum(reg, "leaseguard_revocation_drop_lock_wait_seconds")
	if heldSecs, ok := histogramSum(reg, "leaseguard_revocation_drop_lock_held_seconds"); ok && heldSecs > 0 {
		b.logf("revoke: run %d: drop lock held %.1f s of the revoker's %s (%s users/s alone); drop transactions %.1f s, %.1f s of it waiting for the lock",
			r+1, heldSecs, elapsed.Round(time.Millisecond), thousands(int64(float64(dropped)/heldSecs)), batchSecs, waitSecs)
		b.dropOnly = append(b.dropOnly, float64(dropped)/heldSecs)
	}

	if left, err := b.rolesLeft(ctx, names); err != nil || left > 0 {
		return 0, fmt.Errorf("after the revoker: %d users left (%v)", left, err)
	}
	if err := b.checkEvidence(ctx, st, r, len(names)); err != nil {
		return 0, err
	}
	return float64(dropped) / elapsed.Seconds(), nil
}

// executeInFlight carries out cmds through exec in batches, as many at
// once as the revoker service (revoker.InFlight), and returns how many
// were dropped; a command not dropped and recorded is an error.
func (b *Bench) executeInFlight(ctx context.Context, exec *revoker.Executor, cmds []schemas.RevocationCommand) (int, error) {
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
		n, err := droppedAll(exec.Execute(ctx, batch, nil))
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
