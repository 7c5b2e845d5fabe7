package pending

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Pending revocations (migration 008): the revocations of rules in approve
// mode, held for an owner's decision.

// ErrNotFound: no pending revocation has that id.
var ErrNotFound = errors.New("no such pending revocation")

// Revocation is a revocation command held for an owner's approval.
type Revocation struct {
	// ID is the command's id: the one enforce would have used.
	ID        string
	FindingID string
	Rule      string
	Severity  schemas.Severity
	Database  string
	DBUser    string
	LeaseID   string
	Summary   string
	// Command is the detector's proposal: the command enforce would have
	// issued, unsigned (issued only when an owner approves it).
	Command schemas.RevocationCommand
	// ProposalSignature signs Command as a proposal (revoker.SignProposal).
	ProposalSignature string
	State             schemas.ApprovalState
	RequestedAt       time.Time
	ExpiresAt         time.Time
	DecidedBy         string
	DecidedAt         *time.Time
	Comment           string
	// Approved is the command sent to the revoker (approved only).
	Approved   *schemas.RevocationCommand
	EvidenceID string
}

// Decision returns the decision of a decided pending revocation, as its
// evidence records it.
func (p Revocation) Decision() schemas.ApprovalDecision {
	d := schemas.ApprovalDecision{
		PendingID: p.ID, Decision: p.State, DecidedBy: p.DecidedBy, Comment: p.Comment, FindingID: p.FindingID,
		Rule: p.Rule, Severity: p.Severity, Database: p.Database, DBUser: p.DBUser, LeaseID: p.LeaseID,
		Summary: p.Summary, RequestedAt: p.RequestedAt, ExpiresAt: p.ExpiresAt,
	}
	if p.DecidedAt != nil {
		d.DecidedAt = *p.DecidedAt
	}
	return d
}

// Insert records pending revocations; one already recorded (same
// command id: the same finding seen again) is left as it is. It returns how
// many are new.
func Insert(ctx context.Context, q store.Querier, ps []Revocation) (int, error) {
	n := 0
	for _, p := range ps {
		doc, err := json.Marshal(p.Command)
		if err != nil {
			return n, fmt.Errorf("encode pending revocation %s: %w", p.ID, err)
		}
		tag, err := q.Exec(ctx, `
			INSERT INTO pending_revocations (id, finding_id, rule, severity, database, db_user, lease_id, summary,
			                                 command, requested_at, expires_at, proposal_signature)
			VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), $8, $9, $10, $11, NULLIF($12, ''))
			ON CONFLICT (id) DO NOTHING`,
			p.ID, p.FindingID, p.Rule, string(p.Severity), p.Database, p.DBUser, p.LeaseID, p.Summary, doc,
			p.RequestedAt, p.ExpiresAt, p.ProposalSignature)
		if err != nil {
			return n, fmt.Errorf("insert pending revocation %s: %w", p.ID, err)
		}
		n += int(tag.RowsAffected())
	}
	return n, nil
}

const pendingSelect = `id, finding_id, rule, severity, database, db_user, lease_id, summary, command, state,
	requested_at, expires_at, decided_by, decided_at, decision_comment, approved_command, evidence_id,
	COALESCE(proposal_signature, '')`

func scanPending(row pgx.Row) (Revocation, error) {
	var p Revocation
	var lease, by, comment, evID pgtype.Text
	var cmd, approved []byte
	var severity, state string
	err := row.Scan(&p.ID, &p.FindingID, &p.Rule, &severity, &p.Database, &p.DBUser, &lease, &p.Summary, &cmd, &state,
		&p.RequestedAt, &p.ExpiresAt, &by, &p.DecidedAt, &comment, &approved, &evID, &p.ProposalSignature)
	if err != nil {
		return p, err
	}
	p.Severity, p.State = schemas.Severity(severity), schemas.ApprovalState(state)
	p.LeaseID, p.DecidedBy, p.Comment, p.EvidenceID = lease.String, by.String, comment.String, evID.String
	if err := json.Unmarshal(cmd, &p.Command); err != nil {
		return p, fmt.Errorf("decode command of pending revocation %s: %w", p.ID, err)
	}
	if approved != nil {
		p.Approved = new(schemas.RevocationCommand)
		if err := json.Unmarshal(approved, p.Approved); err != nil {
			return p, fmt.Errorf("decode approved command of pending revocation %s: %w", p.ID, err)
		}
	}
	return p, nil
}

// Get reads one pending revocation.
func Get(ctx context.Context, q store.Querier, id string) (Revocation, error) {
	p, err := scanPending(q.QueryRow(ctx, `SELECT `+pendingSelect+` FROM pending_revocations WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return p, fmt.Errorf("read pending revocation %s: %w", id, err)
	}
	return p, nil
}

// Lock reads one pending revocation and locks its row until tx ends:
// a concurrent decision on it waits, then sees this one's.
func Lock(ctx context.Context, tx pgx.Tx, id string) (Revocation, error) {
	p, err := scanPending(tx.QueryRow(ctx, `SELECT `+pendingSelect+` FROM pending_revocations WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return p, fmt.Errorf("lock pending revocation %s: %w", id, err)
	}
	return p, nil
}

// Decide records a decision on a pending revocation that is still
// pending (compare-and-set on state): it reports false, changing nothing,
// when another decision came first. approved is the command sent to the
// revoker and is required for, and only for, an approval.
func Decide(ctx context.Context, tx pgx.Tx, d schemas.ApprovalDecision, approved *schemas.RevocationCommand, evidenceID string) (bool, error) {
	var doc []byte
	if approved != nil {
		var err error
		if doc, err = json.Marshal(approved); err != nil {
			return false, fmt.Errorf("encode approved command: %w", err)
		}
	}
	tag, err := tx.Exec(ctx, `
		UPDATE pending_revocations
		SET state = $2, decided_by = $3, decided_at = $4, decision_comment = NULLIF($5, ''),
		    approved_command = $6, evidence_id = NULLIF($7, '')
		WHERE id = $1 AND state = 'pending'`,
		d.PendingID, string(d.Decision), d.DecidedBy, d.DecidedAt, d.Comment, doc, evidenceID)
	if err != nil {
		return false, fmt.Errorf("record decision on pending revocation %s: %w", d.PendingID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReplaceApproved records cmd as the approved command of pending
// revocation id, in place of the one whose nonce is oldNonce (a
// compare-and-set: of two processes issuing it again, one wins).
func ReplaceApproved(ctx context.Context, q store.Querier, id, oldNonce string, cmd schemas.RevocationCommand) error {
	doc, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("encode approved command: %w", err)
	}
	tag, err := q.Exec(ctx, `UPDATE pending_revocations SET approved_command = $2
		WHERE id = $1 AND state = 'approved' AND approved_command->>'nonce' = $3`, id, doc, oldNonce)
	if err != nil {
		return fmt.Errorf("replace approved command of %s: %w", id, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("replace approved command of %s: it changed meanwhile", id)
	}
	return nil
}

// ClaimDue locks up to limit pending revocations whose time ran out
// at now, skipping those another transaction holds.
func ClaimDue(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]Revocation, error) {
	rows, err := tx.Query(ctx, `SELECT `+pendingSelect+` FROM pending_revocations
		WHERE state = 'pending' AND expires_at <= $1
		ORDER BY expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("claim expired pending revocations: %w", err)
	}
	return collectPending(rows, "claim expired pending revocations")
}

// Stranded returns approved revocations decided before cutoff
// whose command has no recorded outcome: the process that approved them
// stopped before the revoker finished.
func Stranded(ctx context.Context, q store.Querier, cutoff time.Time, limit int) ([]Revocation, error) {
	rows, err := q.Query(ctx, `SELECT `+pendingSelect+` FROM pending_revocations p
		WHERE p.state = 'approved' AND p.decided_at < $1
		  AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.command_id = p.id AND r.state = 'done')
		ORDER BY p.decided_at, p.id LIMIT $2`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("stranded approvals: %w", err)
	}
	return collectPending(rows, "stranded approvals")
}

// Page selects one page of pending revocations in one state, oldest
// request first.
type Page struct {
	State schemas.ApprovalState
	// AfterTime and AfterID are the last row of the previous page (zero
	// for the first).
	AfterTime time.Time
	AfterID   string
	Limit     int
}

// List returns one page of pending revocations in p.State.
func List(ctx context.Context, q store.Querier, p Page) ([]Revocation, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("list pending revocations: limit %d is not positive", p.Limit)
	}
	rows, err := q.Query(ctx, `SELECT `+pendingSelect+` FROM pending_revocations
		WHERE state = $1 AND (requested_at, id) > ($2, $3)
		ORDER BY requested_at, id LIMIT $4`, string(p.State), p.AfterTime, p.AfterID, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("list pending revocations: %w", err)
	}
	return collectPending(rows, "list pending revocations")
}

func collectPending(rows pgx.Rows, what string) ([]Revocation, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Revocation, error) { return scanPending(r) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
