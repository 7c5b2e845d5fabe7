package alert

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
)

// Owner approval (rule mode approve): a finding that holds a revocation for
// an owner's approval is alerted whatever its severity — someone has to
// decide — and its alert resolves with the decision: rejected or expired,
// or approved and the user verifiably gone; not by time while it waits.

// resolveByApproval is the resolution kind counted for these.
const resolveByApproval = "approval"

// alwaysAlert reports whether f is alerted below the severity threshold:
// a finding that waits for an owner's decision, and one a rule would have
// acted on but that neither the database nor Vault corroborated (someone
// must look: the bus says one thing, the systems of record another).
func alwaysAlert(f schemas.Finding) bool {
	return f.Action == schemas.ActionApprovalRequested || f.Action == schemas.ActionUnconfirmed
}

// resolveApprovals ends the open alerts whose pending revocation was
// decided.
func (x *Dispatcher) resolveApprovals(ctx context.Context, tx pgx.Tx, now time.Time) ([]resolution, error) {
	rows, err := tx.Query(ctx, `
		UPDATE alerts a SET resolved_at = $1,
		       resolve_reason = 'approval ' || p.id || ' ' || p.state || ' by ' || coalesce(p.decided_by, '?')
		FROM findings f JOIN pending_revocations p ON p.finding_id = f.id
		WHERE f.alert_id = a.id AND a.resolved_at IS NULL
		  AND (p.state IN ('rejected', 'expired')
		       OR (p.state = 'approved' AND EXISTS (
		           SELECT 1 FROM revocations r WHERE r.command_id = p.id AND r.state = 'done'
		             AND r.outcome IN ('dropped', 'already_absent'))))
		RETURNING a.id, a.rule, a.resolve_reason`, now)
	if err != nil {
		return nil, fmt.Errorf("alert intake: resolve by approval: %w", err)
	}
	var out []resolution
	var r resolution
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.rule, &r.reason}, func() error {
		r.by = resolveByApproval
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert intake: resolve by approval: %w", err)
	}
	return out, nil
}
