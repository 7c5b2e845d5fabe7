package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// intake makes one pass: it takes in up to Batch unseen findings, then
// resolves the alerts whose condition ended. It returns how many findings
// it took in and whether any alert was raised or resolved. It returns 0,
// false, nil when another dispatcher holds the intake lock.
func (x *Dispatcher) intake(ctx context.Context) (int, bool, error) {
	tx, err := x.db.Begin(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("alert intake: begin: %w", err)
	}
	defer rollback(ctx, tx)
	var one int
	err = tx.QueryRow(ctx, `SELECT id FROM alert_intake_lock WHERE id = 1 FOR UPDATE SKIP LOCKED`).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil // another dispatcher is at it
	}
	if err != nil {
		return 0, false, fmt.Errorf("alert intake: take intake lock: %w", err)
	}
	now := x.now()
	n, opened, joined, err := x.takeFindings(ctx, tx, now)
	if err != nil {
		return 0, false, err
	}
	resolved, err := x.resolve(ctx, tx, now)
	if err != nil {
		return 0, false, err
	}
	decided, err := x.resolveApprovals(ctx, tx, now)
	if err != nil {
		return 0, false, err
	}
	resolved = append(resolved, decided...)
	if err := tx.Commit(ctx); err != nil {
		return 0, false, fmt.Errorf("alert intake: commit: %w", err)
	}
	// Count and log only what committed.
	for _, a := range opened {
		x.m.opened.WithLabelValues(a.Rule, string(a.Severity)).Inc()
		x.log.Info("alert raised", "alert_id", a.ID, "dedup_key", a.DedupKey, "rule", a.Rule, "severity", a.Severity,
			"database", a.Database, "db_user", a.DBUser, "finding_id", a.Finding.ID)
	}
	for _, rule := range joined {
		x.m.deduplicated.WithLabelValues(rule).Inc()
	}
	for _, r := range resolved {
		x.m.resolved.WithLabelValues(r.rule, r.by).Inc()
		x.log.Info("alert resolved", "alert_id", r.id, "rule", r.rule, "reason", r.reason)
	}
	return n, len(opened) > 0 || len(resolved) > 0, nil
}

// takeFindings reads unseen findings in detection order and raises, joins
// or ignores each; it returns how many it read, the alerts it raised and
// the rules of the findings that joined an alert.
func (x *Dispatcher) takeFindings(ctx context.Context, tx pgx.Tx, now time.Time) (int, []Alert, []string, error) {
	rows, err := tx.Query(ctx, `
		SELECT id, finding FROM findings WHERE alert_seen_at IS NULL
		ORDER BY detected_at, id LIMIT $1`, x.cfg.Batch)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("alert intake: read findings: %w", err)
	}
	type pending struct {
		id  string
		doc []byte
	}
	batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pending, error) {
		var p pending
		err := r.Scan(&p.id, &p.doc)
		return p, err
	})
	if err != nil {
		return 0, nil, nil, fmt.Errorf("alert intake: read findings: %w", err)
	}
	var opened []Alert
	var joined []string
	var ignored []string
	for _, p := range batch {
		var f schemas.Finding
		if err := json.Unmarshal(p.doc, &f); err != nil {
			// A finding leaseguard cannot read cannot be alerted on either;
			// it must not hold back the ones after it.
			x.log.Error("alert intake: finding does not decode; not alerting on it", "finding_id", p.id, "err", err)
			ignored = append(ignored, p.id)
			continue
		}
		f.ID = p.id
		if !atLeast(f.Severity, x.cfg.MinSeverity) && !alwaysAlert(f) {
			ignored = append(ignored, p.id)
			continue
		}
		a, isNew, err := x.take(ctx, tx, f, now)
		if err != nil {
			return 0, nil, nil, err
		}
		if isNew {
			opened = append(opened, a)
		} else {
			joined = append(joined, a.Rule)
		}
	}
	if len(ignored) > 0 {
		if err := store.MarkFindingsSeen(ctx, tx, ignored, now); err != nil {
			return 0, nil, nil, fmt.Errorf("alert intake: mark findings seen: %w", err)
		}
	}
	return len(batch), opened, joined, nil
}

// take raises an alert for f or joins f to the alert of its dedup key, and
// marks f seen.
func (x *Dispatcher) take(ctx context.Context, tx pgx.Tx, f schemas.Finding, now time.Time) (Alert, bool, error) {
	key := dedupKey(f)
	var id int64
	var open bool
	var last time.Time
	err := tx.QueryRow(ctx, `
		SELECT id, resolved_at IS NULL, last_detected_at FROM alerts
		WHERE dedup_key = $1 ORDER BY id DESC LIMIT 1`, key).Scan(&id, &open, &last)
	switch {
	case err == nil && (open || !f.DetectedAt.After(last.Add(x.cfg.DedupWindow))):
		// The same condition again: count it, raise nothing.
		_, err = tx.Exec(ctx, `
			UPDATE alerts SET findings = findings + 1,
			       last_finding_id = CASE WHEN $3 >= last_detected_at THEN $2 ELSE last_finding_id END,
			       last_detected_at = GREATEST(last_detected_at, $3)
			WHERE id = $1`, id, f.ID, f.DetectedAt)
		if err != nil {
			return Alert{}, false, fmt.Errorf("alert intake: join finding %s to alert %d: %w", f.ID, id, err)
		}
		if err := markSeen(ctx, tx, f.ID, id, now); err != nil {
			return Alert{}, false, err
		}
		return Alert{ID: id, Rule: f.Rule}, false, nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return Alert{}, false, fmt.Errorf("alert intake: look up alert %s: %w", key, err)
	}
	a := Alert{
		DedupKey: key, Rule: f.Rule, Severity: f.Severity, Database: f.Database, DBUser: f.DBUser,
		Finding: f, LastFindingID: f.ID, Findings: 1,
		FirstDetectedAt: f.DetectedAt, LastDetectedAt: f.DetectedAt, OpenedAt: now,
	}
	by := resolveByTimeout
	if (slices.Contains(x.cfg.RevocationRules, f.Rule) || f.Action == schemas.ActionApprovalRequested) && f.Database != "" && f.DBUser != "" {
		by = resolveByRevocation
	}
	doc, err := json.Marshal(f)
	if err != nil {
		return Alert{}, false, fmt.Errorf("alert intake: encode finding %s: %w", f.ID, err)
	}
	err = tx.QueryRow(ctx, `
		INSERT INTO alerts (dedup_key, rule, severity, database, db_user, resolve_by, finding,
		                    first_finding_id, last_finding_id, first_detected_at, last_detected_at, opened_at)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6, $7, $8, $8, $9, $9, $10)
		RETURNING id`,
		key, f.Rule, string(f.Severity), f.Database, f.DBUser, by, doc, f.ID, f.DetectedAt, now).Scan(&a.ID)
	if err != nil {
		return Alert{}, false, fmt.Errorf("alert intake: raise alert for finding %s: %w", f.ID, err)
	}
	if len(x.names) > 0 {
		_, err = tx.Exec(ctx, `
			INSERT INTO alert_deliveries (alert_id, sink, next_attempt_at)
			SELECT $1, unnest($2::text[]), $3`, a.ID, x.names, now)
		if err != nil {
			return Alert{}, false, fmt.Errorf("alert intake: deliveries of alert %d: %w", a.ID, err)
		}
	}
	if err := markSeen(ctx, tx, f.ID, a.ID, now); err != nil {
		return Alert{}, false, err
	}
	return a, true, nil
}

func markSeen(ctx context.Context, tx pgx.Tx, findingID string, alertID int64, now time.Time) error {
	if err := store.MarkFindingAlerted(ctx, tx, findingID, alertID, now); err != nil {
		return fmt.Errorf("alert intake: mark finding %s seen: %w", findingID, err)
	}
	return nil
}

type resolution struct {
	id     int64
	rule   string
	by     string
	reason string
}

// resolve ends the open alerts whose condition ended: a revocation dropped
// the user (or found it already gone), or no finding came for AutoResolve.
func (x *Dispatcher) resolve(ctx context.Context, tx pgx.Tx, now time.Time) ([]resolution, error) {
	var out []resolution
	rows, err := tx.Query(ctx, `
		WITH hit AS (
			SELECT DISTINCT ON (a.id) a.id, r.command_id, r.outcome
			FROM alerts a
			JOIN revocations r ON r.database = a.database AND r.db_user = a.db_user
			WHERE a.resolved_at IS NULL AND a.resolve_by = 'revocation'
			  AND r.state = 'done' AND r.outcome IN ('dropped', 'already_absent')
			  AND r.finished_at >= a.first_detected_at - $2::bigint * interval '1 microsecond'
			ORDER BY a.id, r.finished_at
		)
		UPDATE alerts a SET resolved_at = $1,
		       resolve_reason = 'revocation ' || hit.command_id || ' (' || hit.outcome || ')'
		FROM hit WHERE a.id = hit.id
		RETURNING a.id, a.rule, a.resolve_reason`, now, x.cfg.DedupWindow.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("alert intake: resolve by revocation: %w", err)
	}
	var r resolution
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.rule, &r.reason}, func() error {
		r.by = resolveByRevocation
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert intake: resolve by revocation: %w", err)
	}
	rows, err = tx.Query(ctx, `
		UPDATE alerts SET resolved_at = $1, resolve_reason = $3
		WHERE resolved_at IS NULL AND resolve_by = 'timeout' AND last_detected_at <= $2
		RETURNING id, rule, resolve_reason`,
		now, now.Add(-x.cfg.AutoResolve), "no finding for "+x.cfg.AutoResolve.String())
	if err != nil {
		return nil, fmt.Errorf("alert intake: auto-resolve: %w", err)
	}
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.rule, &r.reason}, func() error {
		r.by = resolveByTimeout
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert intake: auto-resolve: %w", err)
	}
	return out, nil
}
