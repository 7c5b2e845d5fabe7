package detectors

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/schemas"
)

// Owner approval (rule mode approve) sits between observe and enforce: a
// rule in approve mode judges, scopes and signs exactly the command it would
// issue in enforce mode, but instead of queueing it, the detector records it
// as a pending revocation in the transaction of the finding (finding action
// approval_requested, command_id naming it). An owner approves it
// (`leaseguard approve ID`, or the admin API), which sends that command —
// same id, so the same idempotency, and the same guards — to the revoker
// with the approver as its actor; or rejects it; or nobody decides within
// the approval TTL and it expires. approval.Approvals carries out the
// decisions; each is recorded in the evidence with who decided.

// DefaultApprovalTTL is how long a pending revocation waits for an owner
// when the configuration sets no TTL.
const DefaultApprovalTTL = 24 * time.Hour

// Acts reports whether a rule in mode m asks for revocations: at once
// (enforce) or after an owner's approval (approve).
func Acts(m schemas.Mode) bool { return m == schemas.ModeEnforce || m == schemas.ModeApprove }

// ProposalSigner signs proposals held for approval (revoker.Issuer).
type ProposalSigner interface {
	SignProposal(p schemas.RevocationCommand) (string, error)
}

// approvalHold collects the commands one detector pass holds for approval.
type approvalHold struct {
	ttl    time.Duration
	signer ProposalSigner
	held   []pending.Revocation
}

func newApprovalHold(ttl time.Duration, signer ProposalSigner) *approvalHold {
	if ttl <= 0 {
		ttl = DefaultApprovalTTL
	}
	return &approvalHold{ttl: ttl, signer: signer}
}

// route takes the command proposal of finding f. In approve mode it holds
// it as a pending revocation, unsigned (f's action becomes
// approval_requested), and returns nil; otherwise it returns cmd, to be
// issued and queued.
func (h *approvalHold) route(f *schemas.Finding, cmd *schemas.RevocationCommand, now time.Time) *schemas.RevocationCommand {
	if cmd == nil || f.Mode != schemas.ModeApprove {
		return cmd
	}
	f.Action = schemas.ActionApprovalRequested
	f.CommandID = cmd.ID
	cmd.Type = schemas.RevocationCommandType
	f.Facts = withFact(f.Facts, "approval_expires_at", now.Add(h.ttl).UTC().Format(time.RFC3339Nano))
	h.held = append(h.held, pending.Revocation{
		ID: cmd.ID, FindingID: f.ID, Rule: f.Rule, Severity: f.Severity, Database: cmd.Database, DBUser: cmd.DBUser,
		LeaseID: cmd.LeaseID, Summary: f.Summary, Command: *cmd, State: schemas.ApprovalPending,
		RequestedAt: now.UTC(), ExpiresAt: now.Add(h.ttl).UTC(),
	})
	return nil
}

// save signs the held proposals and records them in tx, the transaction
// of their findings.
func (h *approvalHold) save(ctx context.Context, tx pgx.Tx) error {
	if len(h.held) == 0 {
		return nil
	}
	for i := range h.held {
		sig, err := h.signer.SignProposal(h.held[i].Command)
		if err != nil {
			return err
		}
		h.held[i].ProposalSignature = sig
	}
	_, err := pending.Insert(ctx, tx, h.held)
	return err
}

func withFact(facts map[string]any, k string, v any) map[string]any {
	if facts == nil {
		facts = map[string]any{}
	}
	facts[k] = v
	return facts
}
