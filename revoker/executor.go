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
		claim, err := store.ClaimRevocation(ctx, x.State, cmd)
		if err != nil {
			x.Logger.Warn("cannot claim revocation; will retry", "command_id", cmd.ID, "err", err)
			out[i].Retry, out[i].Err = true, err
			continue
		}
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
		claims[i] = claim
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
	for j, i := range idx {
		res := results[j]
		if res.Outcome == schemas.OutcomeAlreadyAbsent && claims[i].TargetXID != 0 {
			if status, err := txidStatus(ctx, pool, claims[i].TargetXID); err == nil && status == "committed" {
				// An earlier attempt dropped the role and ended before it
				// recorded the outcome: the drop is that attempt's, and ours.
				res.Outcome = schemas.OutcomeDropped
				res.Reason = fmt.Sprintf("dropped by an earlier attempt (target transaction %d committed) that ended before recording", claims[i].TargetXID)
			}
		}
		if res.Outcome == schemas.OutcomeFailed && transient(res.SQLState) && (final == nil || !final(i)) {
			x.Logger.Warn("revocation failed; will retry", "database", db, "db_user", res.DBUser, "sqlstate", res.SQLState, "reason", res.Reason)
			out[i] = Executed{Command: cmds[i], Result: res, Retry: true, Err: errors.New(res.Reason)}
			continue
		}
		out[i] = x.settle(ctx, cmds[i], res)
	}
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
	if err := x.record(ctx, cmd, res); err != nil {
		x.Logger.Warn("cannot record revocation outcome; will retry", "command_id", cmd.ID, "err", err)
		return Executed{Command: cmd, Result: res, Retry: true, Err: err}
	}
	x.Metrics.outcomes.WithLabelValues(string(res.Outcome), res.Guard).Inc()
	x.Logger.Info("revocation", "outcome", res.Outcome, "database", res.Database, "db_user", res.DBUser,
		"command_id", res.CommandID, "rule", cmd.Rule, "issuer", cmd.Issuer, "actor", cmd.Actor, "guard", res.Guard,
		"reason", res.Reason, "sessions_terminated", res.SessionsTerminated)
	return Executed{Command: cmd, Result: res, Recorded: true}
}

func (x *Executor) record(ctx context.Context, cmd schemas.RevocationCommand, res schemas.RevocationResult) error {
	return pgx.BeginFunc(ctx, x.State, func(tx pgx.Tx) error {
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
		ev, err := x.Evidence.Revocation(cmd, res, lc)
		if err != nil {
			return fmt.Errorf("build evidence: %w", err)
		}
		fresh, err := store.FinishRevocation(ctx, tx, res, ev.ID, x.Clock())
		if err != nil || !fresh {
			return err // already recorded by another attempt: no second evidence
		}
		if _, err := evidence.Append(ctx, tx, ev); err != nil {
			return fmt.Errorf("append evidence: %w", err)
		}
		return nil
	})
}
