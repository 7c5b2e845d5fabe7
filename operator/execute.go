package operator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/leaseguard/leaseguard/internal/backoff"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
)

// ErrDryRun is returned by Execute for the plan of a dry run.
var ErrDryRun = errors.New("operator: the plan is a dry run")

// errNotRun marks items Execute did not get to (ctx ended first).
var errNotRun = errors.New("not executed: the run was interrupted")

// CommandID is the idempotency key of an operator command: the first 32 hex
// digits of a SHA-256 over the rule, the request id, the database, the
// user, the lease id, the reason and the actor, each length-prefixed so no
// two inputs encode alike.
//
// The request id is what makes it an operator's key rather than a user's:
//   - Executing one request twice (a CLI run resumed with the same
//     request id after an interruption, an API client repeating a call)
//     yields the same commands; the revoker finds them claimed or recorded
//     and acts at most once, so one request never records two outcomes for
//     one user.
//   - A new request for the same user is a new command. A recorded outcome
//     is final for its command, so if it was "failed" (a lock timeout, the
//     target down) a new request is how the operator tries again; if the
//     user was dropped meanwhile, the new command records already_absent:
//     still exactly one "dropped" per user.
//
// The reason and the actor are in the key so that two people acting on the
// same user, or one person correcting the reason, each leave their own
// command and evidence.
func CommandID(requestID, database, dbUser, leaseID, reason, actor string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, part := range []string{RuleOperatorRevoke, requestID, database, dbUser, leaseID, reason, actor} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Commands returns the signed command of each planned item, in order.
func (s *Service) Commands(ctx context.Context, p Plan) ([]schemas.RevocationCommand, error) {
	cmds, err := s.proposals(p)
	if err != nil {
		return nil, err
	}
	if err := s.d.Issuer.Issue(ctx, cmds); err != nil {
		return nil, fmt.Errorf("sign commands: %w", err)
	}
	return cmds, nil
}

// proposals returns the command of each planned item, not issued yet. An
// operator's request is its own corroboration: a person asked, with a
// reason, and the evidence names them.
func (s *Service) proposals(p Plan) ([]schemas.RevocationCommand, error) {
	if s.d.Issuer == nil {
		return nil, errors.New("operator: no signing key configured")
	}
	req := p.Request
	if req.RequestID == "" {
		return nil, errors.New("operator: the plan has no request id (plans come from Plan)")
	}
	now := s.d.Clock().UTC()
	cmds := make([]schemas.RevocationCommand, len(p.Items))
	for i, it := range p.Items {
		cmds[i] = schemas.RevocationCommand{
			ID:        CommandID(req.RequestID, it.Database, it.DBUser, it.LeaseID, req.Reason, req.Actor),
			Action:    schemas.ActionDropRole,
			Issuer:    IssuerOperator,
			Actor:     req.Actor,
			Rule:      RuleOperatorRevoke,
			Database:  it.Database,
			DBUser:    it.DBUser,
			LeaseID:   it.LeaseID,
			Reason:    req.Reason,
			Emergency: req.Emergency,
			Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByOperator, CheckedAt: now,
				Detail: fmt.Sprintf("requested by %s (request %s)", req.Actor, req.RequestID)},
		}
	}
	return cmds, nil
}

// Execute carries out p: one signed command per item, executed through the
// revoker in batches, each batch waiting for its outcomes. It returns one
// Executed per item, in the plan's order. An item whose command failed
// transiently is tried again (Attempts in all; the last failure is recorded
// as failed). An item that could not be recorded at all (the state store
// unreachable) comes back with Recorded false and Err set.
//
// progress, if not nil, is called after each batch with the number of items
// done and the total. If ctx ends, the batch in flight gets Deps.Grace to
// finish (a drop whose outcome is not recorded is only resolved when the
// same request is executed again), then Execute returns ctx's error with
// the results so far; items not reached have Recorded false.
func (s *Service) Execute(ctx context.Context, p Plan, progress func(done, total int)) ([]revoker.Executed, error) {
	if p.Request.DryRun {
		return nil, ErrDryRun
	}
	if s.d.Executor == nil {
		return nil, errors.New("operator: no executor configured")
	}
	if err := p.Request.Validate(); err != nil {
		return nil, err
	}
	cmds, err := s.proposals(p)
	if err != nil {
		return nil, err
	}
	out := make([]revoker.Executed, len(cmds))
	for i, cmd := range cmds {
		out[i] = revoker.Executed{Command: cmd, Err: errNotRun}
	}
	s.d.Logger.Info("operator revocation", "request_id", p.Request.RequestID, "actor", p.Request.Actor,
		"selector", p.Request.Kind(), "value", p.Request.Value(), "items", len(cmds), "emergency", p.Request.Emergency)
	for start := 0; start < len(cmds); start += s.d.Batch {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		end := min(start+s.d.Batch, len(cmds))
		// Each batch is issued just before it runs: a command lives
		// LEASEGUARD_COMMAND_TTL, and a long request outlives that.
		if err := s.d.Issuer.Issue(ctx, cmds[start:end]); err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			for i := start; i < end; i++ {
				out[i].Err = fmt.Errorf("sign command: %w", err)
			}
			continue
		}
		bctx, cancel := s.batchContext(ctx)
		s.executeBatch(bctx, ctx, cmds[start:end], out[start:end])
		cancel()
		if progress != nil {
			progress(end, len(cmds))
		}
	}
	return out, ctx.Err()
}

// batchContext returns the context of one batch: it ends Deps.Grace after
// ctx does, and its deadline is ctx's plus Deps.Grace (so the blast-radius
// limiter still refuses waits that cannot end in time).
func (s *Service) batchContext(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	var bctx context.Context
	var cancel context.CancelFunc
	if dl, ok := ctx.Deadline(); ok {
		bctx, cancel = context.WithDeadline(base, dl.Add(s.d.Grace))
	} else {
		bctx, cancel = context.WithCancel(base)
	}
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(s.d.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-bctx.Done():
		}
	})
	return bctx, func() {
		stop()
		cancel()
	}
}

// executeBatch runs cmds under ctx, trying the transient failures again
// until parent ends.
func (s *Service) executeBatch(ctx, parent context.Context, cmds []schemas.RevocationCommand, out []revoker.Executed) {
	pending := make([]int, len(cmds))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 1; ; attempt++ {
		last := attempt >= s.d.Attempts
		batch := make([]schemas.RevocationCommand, len(pending))
		for j, i := range pending {
			batch[j] = cmds[i]
		}
		res := s.d.Executor.Execute(ctx, batch, func(int) bool { return last })
		var again []int
		for j, i := range pending {
			out[i] = res[j]
			if res[j].Retry {
				again = append(again, i)
			}
		}
		if len(again) == 0 || last || parent.Err() != nil {
			return
		}
		wait := RetryPolicy(s.d.Backoff).Wait(attempt)
		s.d.Logger.Warn("operator revocations failed transiently; trying again", "count", len(again), "attempt", attempt, "wait", wait)
		if !pause.For(parent, wait, nil) {
			return
		}
		pending = again
	}
}

// Gone reports whether an executed command leaves its user verifiably gone:
// dropped, or already absent, and recorded.
func Gone(x revoker.Executed) bool {
	return x.Recorded && (x.Result.Outcome == schemas.OutcomeDropped || x.Result.Outcome == schemas.OutcomeAlreadyAbsent)
}

// RetryPolicy is the wait between attempts of a command that failed
// transiently: doubling from first, at most maxRetryWait, with jitter.
func RetryPolicy(first time.Duration) backoff.Policy {
	return backoff.Policy{Base: first, Max: max(first, maxRetryWait)}
}

// maxRetryWait caps the wait between attempts: the caller is waiting.
const maxRetryWait = 10 * time.Second
