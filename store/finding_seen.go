package store

import (
	"context"
	"time"
)

// A finding is seen once the alert intake has taken it: raised or joined to
// an alert (alert_id), or judged below alerting. The findings are the
// ledger's, so the marks are written here.

// MarkFindingsSeen marks findings taken without an alert.
func MarkFindingsSeen(ctx context.Context, q Querier, ids []string, at time.Time) error {
	_, err := q.Exec(ctx, `UPDATE findings SET alert_seen_at = $2 WHERE id = ANY($1)`, ids, at)
	return err
}

// MarkFindingAlerted marks a finding taken into the alert alertID.
func MarkFindingAlerted(ctx context.Context, q Querier, id string, alertID int64, at time.Time) error {
	_, err := q.Exec(ctx, `UPDATE findings SET alert_seen_at = $3, alert_id = $2 WHERE id = $1`, id, alertID, at)
	return err
}
