package revoker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// ExecutorDeps are what carrying out a revocation needs.
type ExecutorDeps struct {
	Dropper  *Dropper
	Verifier *Verifier
	// Limiter bounds automatic revocations; nil means no limit.
	Limiter *Limiter
	Targets Targets
	// State is the state-store pool (search_path set to its schema).
	State    *pgxpool.Pool
	Evidence evidence.Builder
	Logger   *slog.Logger
	Metrics  *Metrics
	Clock    func() time.Time
}

// Executor carries out revocation commands: it authenticates each one,
// claims it in the state store, waits on the blast-radius limit, drops the
// users (batched per target database) and records every outcome with its
// evidence in one state-store transaction. The JetStream consumer and the
// operator's direct path (pipeline down) both go through it, so both apply
// the same guards and the same idempotency.
type Executor struct {
	ExecutorDeps
}

// NewExecutor builds an Executor.
func NewExecutor(d ExecutorDeps) (*Executor, error) {
	if d.Dropper == nil || d.Verifier == nil || d.Targets == nil || d.State == nil {
		return nil, errors.New("revoker: dropper, verifier, targets and state store are required")
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
	return &Executor{ExecutorDeps: d}, nil
}

// Executed is what became of one command.
type Executed struct {
	Command schemas.RevocationCommand
	Result  schemas.RevocationResult
	// Recorded: the outcome and its evidence are committed, by this call or
	// by an earlier attempt of the same command (Duplicate).
	Recorded  bool
	Duplicate bool
	// Retry: a transient failure; nothing was recorded; try again later.
	Retry bool
	Err   error
}

// Execute carries out cmds. final(i) says whether this is the last attempt
// of cmds[i]: a transient failure on the last attempt is recorded as failed
// instead of being handed back for a retry.
func (x *Executor) Execute(ctx context.Context, cmds []schemas.RevocationCommand, final func(i int) bool) []Executed {
	out := make([]Executed, len(cmds))
	claims := make([]store.Claim, len(cmds))
	byDB := map[string][]int{}
	var order []string
	var candidates []int
	for i, cmd := range cmds {
		out[i].Command = cmd
		if err := x.Verifier.Verify(cmd); err != nil {
			out[i] = x.settle(ctx, cmd, x.refusal(cmd, err))
			continue
		}
		if _, ok := x.Targets.Pool(cmd.Database); !ok {
			out[i] = x.settle(ctx, cmd, x.refusal(cmd, &Refusal{Guard: "unknown_target",
				Reason: fmt.Sprintf("no target database named %q is configured", cmd.Database)}))
			continue
		}
		candidates = append(candidates, i)
	}
	// Claim every command in one statement (one commit for the batch).
	claimCmds := make([]schemas.RevocationCommand, len(candidates))
	for k, i := range candidates {
		claimCmds[k] = cmds[i]
	}
	got, err := store.ClaimRevocations(ctx, x.State, claimCmds)
	if err != nil {
		x.Logger.Warn("cannot claim revocations; will retry", "commands", len(candidates), "err", err)
		for _, i := range candidates {
			out[i].Retry, out[i].Err = true, err
		}
		return out
	}
	for k, i := range candidates {
		claims[i] = got[k]
	}
	for _, i := range candidates {
		cmd, claim := cmds[i], claims[i]
		if claim.Done {
			x.Metrics.duplicates.Inc()
			out[i].Recorded, out[i].Duplicate = true, true
			if rev, err := store.GetRevocation(ctx, x.State, cmd.ID); err == nil && rev.Result != nil {
				out[i].Result = *rev.Result
			} else {
				out[i].Result = schemas.RevocationResult{CommandID: cmd.ID, Database: cmd.Database, DBUser: cmd.DBUser, Outcome: claim.Outcome}
			}
			continue
		}
		if x.Limiter != nil {
			waited, err := x.Limiter.Wait(ctx, cmd.Emergency)
			if waited > 0 {
				x.Metrics.throttled.Add(waited.Seconds())
			}
			if err != nil {
				out[i].Retry, out[i].Err = true, fmt.Errorf("blast-radius limit: %w", err)
				continue
			}
		}
		if _, seen := byDB[cmd.Database]; !seen {
			order = append(order, cmd.Database)
		}
		byDB[cmd.Database] = append(byDB[cmd.Database], i)
	}
	for _, db := range order {
		x.dropAndRecord(ctx, db, byDB[db], cmds, claims, final, out)
	}
	return out
}

func (x *Executor) dropAndRecord(ctx context.Context, db string, idx []int, cmds []schemas.RevocationCommand,
	claims []store.Claim, final func(int) bool, out []Executed) {
	pool, _ := x.Targets.Pool(db)
	batch := make([]schemas.RevocationCommand, len(idx))
	for j, i := range idx {
		batch[j] = cmds[i]
	}
	hookCtx := WithBeforeCommit(ctx, func(ctx context.Context, xid int64, ids []string) error {
		return store.SetTargetXID(ctx, x.State, ids, xid)
	})
	start := time.Now()
	results := x.Dropper.DropBatch(hookCtx, pool, db, batch)
	x.Metrics.batchSeconds.Observe(time.Since(start).Seconds())
	// A role found absent may have been dropped by another attempt of the
	// same command (a redelivery, another revoker) that has not recorded
	// its outcome yet: its drop transaction id is recorded before that
	// transaction commits, so read it now, not as it was at the claim.
	var absentIDs []string
	for j := range idx {
		if results[j].Outcome == schemas.OutcomeAlreadyAbsent {
			absentIDs = append(absentIDs, results[j].CommandID)
		}
	}
	xids, err := store.TargetXIDs(ctx, x.State, absentIDs)
	if err != nil {
		x.Logger.Warn("cannot read target transactions; using the claims'", "err", err)
		xids = nil
	}
	var settleIdx []int
	var settleRes []schemas.RevocationResult
	for j, i := range idx {
		res := results[j]
		xid := claims[i].TargetXID
		if v, ok := xids[res.CommandID]; ok {
			xid = v
		}
		if res.Outcome == schemas.OutcomeAlreadyAbsent && xid != 0 {
			if status, err := txidStatus(ctx, pool, xid); err == nil && status == "committed" {
				// An earlier attempt dropped the role and ended before it
				// recorded the outcome: the drop is that attempt's, and ours.
				res.Outcome = schemas.OutcomeDropped
				res.Reason = fmt.Sprintf("dropped by an earlier attempt (target transaction %d committed) that ended before recording", xid)
			}
		}
		if res.Outcome == schemas.OutcomeFailed && transient(res.SQLState) && (final == nil || !final(i)) {
			x.Logger.Warn("revocation failed; will retry", "database", db, "db_user", res.DBUser, "sqlstate", res.SQLState, "reason", res.Reason)
			out[i] = Executed{Command: cmds[i], Result: res, Retry: true, Err: errors.New(res.Reason)}
			continue
		}
		settleIdx = append(settleIdx, i)
		settleRes = append(settleRes, res)
	}
	// One state-store transaction (one commit) for the whole batch's
	// outcomes and evidence; per command if that fails.
	settleCmds := make([]schemas.RevocationCommand, len(settleIdx))
	for k, i := range settleIdx {
		settleCmds[k] = cmds[i]
	}
	for k, e := range x.settleMany(ctx, settleCmds, settleRes) {
		out[settleIdx[k]] = e
	}
}

// settleMany records several outcomes and their evidence in one
// transaction; if that fails, each is recorded on its own so one bad record
// does not hold back the others.
func (x *Executor) settleMany(ctx context.Context, cmds []schemas.RevocationCommand, results []schemas.RevocationResult) []Executed {
	out := make([]Executed, len(cmds))
	if len(cmds) == 0 {
		return out
	}
	err := pgx.BeginFunc(ctx, x.State, func(tx pgx.Tx) error {
		evs, err := x.finishMany(ctx, tx, cmds, results)
		if err != nil {
			return err
		}
		// Evidence last: the chain head stays locked until commit.
		if _, err := evidence.AppendMany(ctx, tx, evs); err != nil {
			return fmt.Errorf("append evidence: %w", err)
		}
		return nil
	})
	if err != nil {
		x.Logger.Warn("recording a batch of outcomes failed; recording one by one", "commands", len(cmds), "err", err)
		for i := range cmds {
			out[i] = x.settle(ctx, cmds[i], results[i])
		}
		return out
	}
	for i := range cmds {
		out[i] = x.recorded(cmds[i], results[i])
	}
	return out
}

func (x *Executor) refusal(cmd schemas.RevocationCommand, err error) schemas.RevocationResult {
	now := x.Clock()
	res := schemas.RevocationResult{CommandID: cmd.ID, Database: cmd.Database, DBUser: cmd.DBUser,
		Outcome: schemas.OutcomeRefused, Reason: err.Error(), StartedAt: now, FinishedAt: now}
	var r *Refusal
	if errors.As(err, &r) {
		res.Guard, res.Reason = r.Guard, r.Reason
	}
	return res
}

// settle records the outcome and its evidence in one transaction.
func (x *Executor) settle(ctx context.Context, cmd schemas.RevocationCommand, res schemas.RevocationResult) Executed {
	err := pgx.BeginFunc(ctx, x.State, func(tx pgx.Tx) error { return x.recordTx(ctx, tx, cmd, res) })
	if err != nil {
		x.Logger.Warn("cannot record revocation outcome; will retry", "command_id", cmd.ID, "err", err)
		return Executed{Command: cmd, Result: res, Retry: true, Err: err}
	}
	return x.recorded(cmd, res)
}

// recorded counts and logs an outcome that is committed.
func (x *Executor) recorded(cmd schemas.RevocationCommand, res schemas.RevocationResult) Executed {
	x.Metrics.outcomes.WithLabelValues(string(res.Outcome), res.Guard).Inc()
	x.Logger.Info("revocation", "outcome", res.Outcome, "database", res.Database, "db_user", res.DBUser,
		"command_id", res.CommandID, "rule", cmd.Rule, "issuer", cmd.Issuer, "actor", cmd.Actor, "guard", res.Guard,
		"reason", res.Reason, "sessions_terminated", res.SessionsTerminated)
	return Executed{Command: cmd, Result: res, Recorded: true}
}

// recordTx records one outcome and its evidence inside tx.
func (x *Executor) recordTx(ctx context.Context, tx pgx.Tx, cmd schemas.RevocationCommand, res schemas.RevocationResult) error {
	ev, ok, err := x.finish(ctx, tx, cmd, res)
	if err != nil || !ok {
		return err
	}
	if _, err := evidence.Append(ctx, tx, ev); err != nil {
		return fmt.Errorf("append evidence: %w", err)
	}
	return nil
}

// finishMany is finish for many commands, in a few statements whatever
// their number: it returns the evidence of the outcomes recorded now, in
// the order of cmds.
func (x *Executor) finishMany(ctx context.Context, tx pgx.Tx, cmds []schemas.RevocationCommand, results []schemas.RevocationResult) ([]evidence.Event, error) {
	var refused []schemas.RevocationCommand
	var leaseIDs []string
	for i, cmd := range cmds {
		if results[i].Outcome == schemas.OutcomeRefused {
			refused = append(refused, cmd) // may never have been claimed
		}
		if cmd.LeaseID != "" {
			leaseIDs = append(leaseIDs, cmd.LeaseID)
		}
	}
	if _, err := store.ClaimRevocations(ctx, tx, refused); err != nil {
		return nil, err
	}
	leases := map[string]evidence.LeaseContext{}
	if len(leaseIDs) > 0 {
		rows, err := tx.Query(ctx, `SELECT lease_id, coalesce(last_request_id, ''), coalesce(entity_id, ''), coalesce(remote_address, ''),
			coalesce(mount, ''), coalesce(role, '') FROM leases WHERE lease_id = ANY($1)`, leaseIDs)
		if err != nil {
			return nil, fmt.Errorf("read leases: %w", err)
		}
		var lc evidence.LeaseContext
		if _, err := pgx.ForEachRow(rows, []any{&lc.LeaseID, &lc.VaultRequestID, &lc.EntityID, &lc.RemoteAddress, &lc.Mount, &lc.Role}, func() error {
			leases[lc.LeaseID] = lc
			return nil
		}); err != nil {
			return nil, fmt.Errorf("read leases: %w", err)
		}
	}
	evs := make([]evidence.Event, len(cmds))
	fs := make([]store.Finish, len(cmds))
	for i, cmd := range cmds {
		var lc *evidence.LeaseContext
		if cmd.LeaseID != "" {
			c, ok := leases[cmd.LeaseID]
			if !ok {
				c = evidence.LeaseContext{LeaseID: cmd.LeaseID}
			}
			lc = &c
		}
		ev, err := x.Evidence.Revocation(cmd, results[i], lc)
		if err != nil {
			return nil, fmt.Errorf("build evidence: %w", err)
		}
		evs[i] = ev
		fs[i] = store.Finish{Result: results[i], EvidenceID: ev.ID}
	}
	fresh, err := store.FinishRevocations(ctx, tx, fs, x.Clock())
	if err != nil {
		return nil, err
	}
	out := evs[:0]
	for i, ev := range evs {
		if fresh[i] {
			out = append(out, ev)
		}
	}
	return out, nil
}

// finish records the outcome of cmd inside tx and returns its evidence
// event, to be appended by the caller; ok is false when an earlier attempt
// already recorded it (no second evidence).
func (x *Executor) finish(ctx context.Context, tx pgx.Tx, cmd schemas.RevocationCommand, res schemas.RevocationResult) (evidence.Event, bool, error) {
	if res.Outcome == schemas.OutcomeRefused {
		// Refused commands may never have been claimed.
		if _, err := store.ClaimRevocation(ctx, tx, cmd); err != nil {
			return evidence.Event{}, false, err
		}
	}
	var lc *evidence.LeaseContext
	if cmd.LeaseID != "" {
		lc = &evidence.LeaseContext{LeaseID: cmd.LeaseID}
		_ = tx.QueryRow(ctx, `SELECT coalesce(last_request_id, ''), coalesce(entity_id, ''), coalesce(remote_address, ''),
			coalesce(mount, ''), coalesce(role, '') FROM leases WHERE lease_id = $1`, cmd.LeaseID).
			Scan(&lc.VaultRequestID, &lc.EntityID, &lc.RemoteAddress, &lc.Mount, &lc.Role)
	}
	ev, err := x.Evidence.Revocation(cmd, res, lc)
	if err != nil {
		return evidence.Event{}, false, fmt.Errorf("build evidence: %w", err)
	}
	fresh, err := store.FinishRevocation(ctx, tx, res, ev.ID, x.Clock())
	if err != nil || !fresh {
		return evidence.Event{}, false, err
	}
	return ev, true, nil
}
