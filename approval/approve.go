package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Owner approval: a rule in approve mode holds the command it would have
// issued as a pending revocation: an unsigned proposal
// (detectors/approval.go), kept in package pending. Approvals decides them.
//
//   - Approve: the proposal — its signature as a proposal checked
//     against the configured keys, so a row nobody proposed, or changed in
//     the state store, is refused — gets the approver as its actor and is issued
//     (signed, with a fresh lifetime and nonce) at that moment, as an
//     "approval" command, and executed through the revoker, as `leaseguard
//     revoke` executes its commands: same id (the idempotency key enforce
//     would have used), same guards, outcome and evidence recorded in the
//     state store, no NATS needed. The revoker carries out a command of a
//     rule in approve mode only if the pending revocation of its id is
//     approved with exactly that command, so a stored proposal republished
//     on the bus (unsigned) or a command issued before a rejection does
//     nothing.
//   - Reject: nothing is dropped.
//   - Expire: nobody decided before the pending revocation's expires_at;
//     nothing is dropped.
//
// Each decision is taken in one state-store transaction under the row's
// lock, with a compare-and-set on its state, together with its evidence
// (io.leaseguard.approval.v1, naming who decided): of two owners deciding
// at once, one decides and the other gets ErrAlreadyDecided.

// Errors of a decision. Both are a conflict (409) for the API.
var (
	// ErrAlreadyDecided: the pending revocation was approved, rejected or
	// expired before.
	ErrAlreadyDecided = errors.New("the pending revocation is already decided")
	// ErrApprovalExpired: its time ran out; it is now recorded expired.
	ErrApprovalExpired = errors.New("the pending revocation expired")
)

// Issuer completes and signs revocation commands (revoker.Issuer).
type Issuer interface {
	Issue(ctx context.Context, cmds []schemas.RevocationCommand) error
}

// invalid wraps operator.ErrInvalid: the admin API and the command line
// answer it as a bad request, whatever refused the input.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", operator.ErrInvalid, fmt.Sprintf(format, args...))
}

// ApprovalDeps are what deciding needs. Executor and Issuer are needed by
// Approve only, so rejecting and expiring need no signing key.
type ApprovalDeps struct {
	// State is the state-store pool (search_path set to its schema).
	State    *pgxpool.Pool
	Evidence evidence.Builder
	// Executor runs approved commands.
	Executor *revoker.Executor
	Issuer   Issuer
	// Attempts bounds the tries of an approved command that fails
	// transiently (default 3); Backoff is the first pause (default 500ms).
	Attempts int
	Backoff  time.Duration
	Clock    func() time.Time
	Logger   *slog.Logger
}

// Approvals decides pending revocations. It is safe for concurrent use.
type Approvals struct {
	d ApprovalDeps
}

// NewApprovals checks d and fills in its defaults.
func NewApprovals(d ApprovalDeps) (*Approvals, error) {
	if d.State == nil {
		return nil, errors.New("approvals: the state store is required")
	}
	if d.Attempts <= 0 {
		d.Attempts = 3
	}
	if d.Backoff <= 0 {
		d.Backoff = 500 * time.Millisecond
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Approvals{d: d}, nil
}

// Decided is the result of a decision.
type Decided struct {
	// Pending is the pending revocation as decided.
	Pending pending.Revocation
	// Executed is what the revoker did with an approved command.
	Executed *revoker.Executed
}

// idRE is what a pending revocation id may be (as a request id, in
// operator).
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// checkDecider validates who decides and their comment.
func checkDecider(id, actor, comment string) error {
	if !idRE.MatchString(id) {
		return invalid("pending revocation id %q: use 1 to 128 letters, digits, '.', '_', ':' or '-'", id)
	}
	if strings.TrimSpace(actor) == "" {
		return invalid("the actor is unknown")
	}
	if err := operator.PlainText("actor", actor, 256); err != nil {
		return err
	}
	return operator.PlainText("comment", comment, 2048)
}

// Approve approves pending revocation id on behalf of actor and executes
// its command through the revoker. The decision is committed before the
// command runs: if the run is cut short, `leaseguard run` sends the
// approved command again (see Sweep); the command id makes that safe.
func (a *Approvals) Approve(ctx context.Context, id, actor, comment string) (Decided, error) {
	if err := checkDecider(id, actor, comment); err != nil {
		return Decided{}, err
	}
	if a.d.Executor == nil || a.d.Issuer == nil {
		return Decided{}, errors.New("approvals: no executor or signing key configured")
	}
	p, err := a.decide(ctx, id, actor, comment, schemas.ApprovalApproved)
	if err != nil {
		return Decided{Pending: p}, err
	}
	x := a.execute(ctx, *p.Approved)
	a.d.Logger.Info("pending revocation approved", "id", id, "actor", actor, "database", p.Database, "db_user", p.DBUser,
		"recorded", x.Recorded, "outcome", x.Result.Outcome)
	return Decided{Pending: p, Executed: &x}, nil
}

// Reject rejects pending revocation id on behalf of actor: nothing is
// dropped.
func (a *Approvals) Reject(ctx context.Context, id, actor, comment string) (Decided, error) {
	if err := checkDecider(id, actor, comment); err != nil {
		return Decided{}, err
	}
	p, err := a.decide(ctx, id, actor, comment, schemas.ApprovalRejected)
	if err == nil {
		a.d.Logger.Info("pending revocation rejected", "id", id, "actor", actor, "database", p.Database, "db_user", p.DBUser)
	}
	return Decided{Pending: p}, err
}

// decide takes the decision in one transaction. A pending revocation whose
// time ran out is recorded expired instead, and ErrApprovalExpired returned.
func (a *Approvals) decide(ctx context.Context, id, actor, comment string, decision schemas.ApprovalState) (pending.Revocation, error) {
	var p pending.Revocation
	var result error
	err := pgx.BeginFunc(ctx, a.d.State, func(tx pgx.Tx) error {
		var err error
		if p, err = pending.Lock(ctx, tx, id); err != nil {
			return err
		}
		if p.State != schemas.ApprovalPending {
			result = fmt.Errorf("%w: %s %s by %s at %s", ErrAlreadyDecided, id, p.State, p.DecidedBy,
				p.DecidedAt.UTC().Format(time.RFC3339))
			if p.State == schemas.ApprovalApproved {
				if done, err := revocationDone(ctx, tx, id); err != nil {
					return err
				} else if !done {
					result = fmt.Errorf("%w; its revocation has no outcome yet (interrupted): resume it", result)
				}
			}
			return nil
		}
		now := a.d.Clock().UTC()
		if !now.Before(p.ExpiresAt) {
			result = fmt.Errorf("%w: %s expired at %s, before %s could decide", ErrApprovalExpired, id,
				p.ExpiresAt.UTC().Format(time.RFC3339), actor)
			return a.record(ctx, tx, &p, schemas.ApprovalExpired, evidence.DecidedBySystem, "", now, nil)
		}
		var approved *schemas.RevocationCommand
		if decision == schemas.ApprovalApproved {
			cmd, err := a.approvedCommand(ctx, p, actor, now)
			if err != nil {
				return err
			}
			approved = &cmd
		}
		return a.record(ctx, tx, &p, decision, actor, comment, now, approved)
	})
	if err != nil {
		return p, err
	}
	return p, result
}

// approvedCommand issues the proposal of p as approved by actor: signed
// now, with a fresh lifetime, as the approval's command.
func (a *Approvals) approvedCommand(ctx context.Context, p pending.Revocation, actor string, now time.Time) (schemas.RevocationCommand, error) {
	cmd := p.Command
	if cmd.ID != p.ID || cmd.Database != p.Database || cmd.DBUser != p.DBUser {
		return cmd, fmt.Errorf("pending revocation %s: its proposal %s is for %s/%s", p.ID, cmd.ID, cmd.Database, cmd.DBUser)
	}
	// Only a proposal this installation signed is approved: the row is not
	// trusted on its own.
	if err := a.d.Executor.Verifier.VerifyProposal(cmd, p.ProposalSignature); err != nil {
		return cmd, fmt.Errorf("pending revocation %s: its proposal: %w", p.ID, err)
	}
	cmd.Issuer, cmd.Actor = revoker.IssuerApproval, actor
	cmd.KeyID, cmd.Signature = "", ""
	detail := fmt.Sprintf("approved by %s at %s", actor, now.Format(time.RFC3339))
	if cmd.Corroboration.Detail != "" {
		detail = cmd.Corroboration.Detail + "; " + detail
	}
	cmd.Corroboration.Detail = detail
	cmd, err := a.issueOne(ctx, cmd)
	if err != nil {
		return cmd, fmt.Errorf("issue approved command %s: %w", p.ID, err)
	}
	return cmd, nil
}

// issueOne issues one command and returns it completed.
func (a *Approvals) issueOne(ctx context.Context, cmd schemas.RevocationCommand) (schemas.RevocationCommand, error) {
	cmds := []schemas.RevocationCommand{cmd}
	if err := a.d.Issuer.Issue(ctx, cmds); err != nil {
		return cmd, err
	}
	return cmds[0], nil
}

// record appends the evidence of a decision and stores it, in tx, under
// the row lock; p is updated to the decided state.
func (a *Approvals) record(ctx context.Context, tx pgx.Tx, p *pending.Revocation, decision schemas.ApprovalState,
	by, comment string, at time.Time, approved *schemas.RevocationCommand) error {
	d := p.Decision()
	d.Decision, d.DecidedBy, d.DecidedAt, d.Comment = decision, by, at, comment
	ev, err := a.d.Evidence.Approval(d)
	if err != nil {
		return fmt.Errorf("build approval evidence: %w", err)
	}
	ok, err := pending.Decide(ctx, tx, d, approved, ev.ID)
	if err != nil {
		return err
	}
	if !ok { // cannot happen under the row lock; never record two decisions
		return fmt.Errorf("pending revocation %s changed under its lock", p.ID)
	}
	// Evidence last: appending holds the chain head lock until commit.
	if _, err := evidence.Append(ctx, tx, ev); err != nil {
		return fmt.Errorf("append approval evidence: %w", err)
	}
	p.State, p.DecidedBy, p.DecidedAt, p.Comment, p.Approved, p.EvidenceID = decision, by, &at, comment, approved, ev.ID
	return nil
}

// Resume executes again the command of an approved pending revocation whose
// revocation has no recorded outcome (the approving run was interrupted,
// and no `leaseguard run` sent it again): the same command, the same id, so
// the revoker acts at most once. There is no new decision. It returns
// ErrAlreadyDecided for one that is not approved or whose outcome is
// recorded.
func (a *Approvals) Resume(ctx context.Context, id string) (Decided, error) {
	if a.d.Executor == nil {
		return Decided{}, errors.New("approvals: no executor configured")
	}
	p, err := pending.Get(ctx, a.d.State, id)
	if err != nil {
		return Decided{}, err
	}
	if p.State != schemas.ApprovalApproved || p.Approved == nil {
		return Decided{Pending: p}, fmt.Errorf("%w: %s is %s, not approved: nothing to resume", ErrAlreadyDecided, id, p.State)
	}
	done, err := revocationDone(ctx, a.d.State, id)
	if err != nil {
		return Decided{Pending: p}, err
	}
	if done {
		return Decided{Pending: p}, fmt.Errorf("%w: the revocation of %s already has its outcome", ErrAlreadyDecided, id)
	}
	cmd := *p.Approved
	if a.d.Issuer != nil && !a.d.Clock().Add(time.Minute).Before(cmd.ExpiresAt) {
		if cmd, err = a.reissue(ctx, p); err != nil {
			return Decided{Pending: p}, err
		}
	}
	x := a.execute(ctx, cmd)
	a.d.Logger.Info("approved revocation resumed", "id", id, "recorded", x.Recorded, "outcome", x.Result.Outcome)
	return Decided{Pending: p, Executed: &x}, nil
}

// revocationDone reports whether command id has a recorded outcome.
func revocationDone(ctx context.Context, q store.Querier, id string) (bool, error) {
	recs, err := store.RevocationsByCommandIDs(ctx, q, []string{id})
	if err != nil {
		return false, err
	}
	return len(recs) == 1 && recs[0].State == "done", nil
}

// execute runs an approved command through the revoker, trying a
// transient failure again; the last failure is recorded as failed.
func (a *Approvals) execute(ctx context.Context, cmd schemas.RevocationCommand) revoker.Executed {
	for attempt := 1; ; attempt++ {
		last := attempt >= a.d.Attempts
		x := a.d.Executor.Execute(ctx, []schemas.RevocationCommand{cmd}, func(int) bool { return last })[0]
		if !x.Retry || last || ctx.Err() != nil {
			return x
		}
		a.d.Logger.Warn("approved revocation failed transiently; trying again", "id", cmd.ID, "attempt", attempt, "err", x.Err)
		if !pause.For(ctx, operator.RetryPolicy(a.d.Backoff).Wait(attempt), nil) {
			return x
		}
	}
}

// ExpireDue records as expired up to limit pending revocations whose time
// ran out, with their evidence, and returns them. Processes running it at
// once share the work (SKIP LOCKED).
func (a *Approvals) ExpireDue(ctx context.Context, limit int) ([]pending.Revocation, error) {
	var out []pending.Revocation
	err := pgx.BeginFunc(ctx, a.d.State, func(tx pgx.Tx) error {
		now := a.d.Clock().UTC()
		due, err := pending.ClaimDue(ctx, tx, now, limit)
		if err != nil {
			return err
		}
		out = out[:0]
		for i := range due {
			if err := a.record(ctx, tx, &due[i], schemas.ApprovalExpired, evidence.DecidedBySystem, "", now, nil); err != nil {
				return err
			}
			out = append(out, due[i])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range out {
		a.d.Logger.Info("pending revocation expired; nothing dropped", "id", p.ID, "database", p.Database,
			"db_user", p.DBUser, "expires_at", p.ExpiresAt)
	}
	return out, nil
}

// Stranded returns the approved commands decided before cutoff that have
// no recorded outcome (the approving process stopped first), to be sent to
// the revoker again. A command whose lifetime is over, or nearly, is issued
// again (same id, new nonce and lifetime) and the approval records the new
// one: the revoker accepts only the command the approval names.
func (a *Approvals) Stranded(ctx context.Context, cutoff time.Time, limit int) ([]schemas.RevocationCommand, error) {
	ps, err := pending.Stranded(ctx, a.d.State, cutoff, limit)
	if err != nil {
		return nil, err
	}
	out := make([]schemas.RevocationCommand, 0, len(ps))
	for _, p := range ps {
		if p.Approved == nil {
			continue
		}
		cmd := *p.Approved
		if a.d.Issuer != nil && !a.d.Clock().Add(time.Minute).Before(cmd.ExpiresAt) {
			if cmd, err = a.reissue(ctx, p); err != nil {
				return out, err
			}
		}
		out = append(out, cmd)
	}
	return out, nil
}

// reissue issues the approved command of p again and records it.
func (a *Approvals) reissue(ctx context.Context, p pending.Revocation) (schemas.RevocationCommand, error) {
	cmd := *p.Approved
	cmd.KeyID, cmd.Signature = "", ""
	cmd, err := a.issueOne(ctx, cmd)
	if err != nil {
		return cmd, fmt.Errorf("issue approved command %s again: %w", p.ID, err)
	}
	if err := pending.ReplaceApproved(ctx, a.d.State, p.ID, p.Approved.Nonce, cmd); err != nil {
		return cmd, err
	}
	return cmd, nil
}

// Sweep is the periodic work of `leaseguard run`: expire what ran out, and
// send stranded approved commands (decided more than strandedAfter ago)
// to submit. It returns how many it expired and resent.
func (a *Approvals) Sweep(ctx context.Context, submit func(context.Context, []schemas.RevocationCommand) error,
	strandedAfter time.Duration, limit int) (expired, resent int, err error) {
	ps, err := a.ExpireDue(ctx, limit)
	if err != nil {
		return 0, 0, err
	}
	cmds, err := a.Stranded(ctx, a.d.Clock().Add(-strandedAfter), limit)
	if err != nil || len(cmds) == 0 {
		return len(ps), 0, err
	}
	if err := submit(ctx, cmds); err != nil {
		return len(ps), 0, fmt.Errorf("resend %d approved revocations: %w", len(cmds), err)
	}
	a.d.Logger.Warn("approved revocations had no outcome; sent to the revoker again", "count", len(cmds))
	return len(ps), len(cmds), nil
}
