package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/leaseguard/leaseguard/schemas"
)

// DueLease is an active lease whose expiry (plus grace) has passed, as the
// expiry detector sees it.
type DueLease struct {
	LeaseID       string
	Database      string
	DBUser        string
	Mount         string
	Role          string
	Namespace     string
	EntityID      string
	RemoteAddress string
	IssuedAt      *time.Time
	ExpireAt      time.Time
	ExpireSource  string
	LastEvent     string
	LastEventAt   time.Time
	LastRequestID string
}

// ClaimDue locks up to limit active leases that expired at or before cutoff
// and that have a known plain database user and database. Rows locked by
// another process are skipped (FOR UPDATE SKIP LOCKED), so several
// leaseguard processes share the work without doing it twice. The locks last
// until tx ends.
func ClaimDue(ctx context.Context, tx pgx.Tx, cutoff time.Time, limit int) ([]DueLease, error) {
	rows, err := tx.Query(ctx, `
		SELECT lease_id, database, db_user, coalesce(mount, ''), coalesce(role, ''), coalesce(namespace, ''),
		       coalesce(entity_id, ''), coalesce(remote_address, ''), issued_at, expire_at,
		       coalesce(expire_source, ''), coalesce(last_event, ''), last_event_at, coalesce(last_request_id, '')
		FROM leases
		WHERE state = 'active'
		  AND expire_at IS NOT NULL AND expire_at <= $1
		  AND db_user IS NOT NULL AND NOT db_user_hmac AND database IS NOT NULL
		ORDER BY expire_at
		LIMIT $2
		FOR UPDATE SKIP LOCKED`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("claim due leases: %w", err)
	}
	var out []DueLease
	var d DueLease
	var issued pgtype.Timestamptz
	var lastAt pgtype.Timestamptz
	_, err = pgx.ForEachRow(rows, []any{&d.LeaseID, &d.Database, &d.DBUser, &d.Mount, &d.Role, &d.Namespace,
		&d.EntityID, &d.RemoteAddress, &issued, &d.ExpireAt, &d.ExpireSource, &d.LastEvent, &lastAt, &d.LastRequestID}, func() error {
		c := d
		if issued.Valid {
			t := issued.Time
			c.IssuedAt = &t
		}
		if lastAt.Valid {
			c.LastEventAt = lastAt.Time
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim due leases: %w", err)
	}
	return out, nil
}

// MarkExpired moves active leases to expired at the given time.
func MarkExpired(ctx context.Context, tx pgx.Tx, leaseIDs []string, at time.Time) error {
	if len(leaseIDs) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `
		UPDATE leases SET state = 'expired', updated_at = now(),
		       last_event = CASE WHEN last_event_at <= $2 THEN 'expired' ELSE last_event END,
		       last_event_at = GREATEST(last_event_at, $2)
		WHERE lease_id = ANY($1) AND state = 'active'`, leaseIDs, at)
	if err != nil {
		return fmt.Errorf("mark leases expired: %w", err)
	}
	return nil
}

// ExtendExpiry records a later expiry read from the database (the lease was
// renewed, and leaseguard missed or has not yet seen the renewal).
func ExtendExpiry(ctx context.Context, tx pgx.Tx, leaseID string, expireAt, checkedAt time.Time) error {
	_, err := tx.Exec(ctx, `
		UPDATE leases SET expire_at = $2, expire_source = 'pg_valid_until', expire_checked_at = $3, updated_at = now()
		WHERE lease_id = $1 AND state = 'active' AND (expire_at IS NULL OR expire_at < $2)`, leaseID, expireAt, checkedAt)
	if err != nil {
		return fmt.Errorf("extend expiry of %s: %w", leaseID, err)
	}
	return nil
}

// InsertFinding records a finding once (its id is deterministic); it
// reports whether the finding is new. Whatever in it looks like a secret is
// withheld first (schemas.WithholdFinding), as in its evidence.
func InsertFinding(ctx context.Context, tx pgx.Tx, f schemas.Finding, evidenceID string) (bool, error) {
	f = schemas.WithholdFinding(f)
	doc, err := json.Marshal(f)
	if err != nil {
		return false, fmt.Errorf("encode finding: %w", err)
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO findings (id, rule, severity, mode, in_scope, database, db_user, lease_id, detected_at, action, command_id, finding, evidence_id)
		VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, ''), NULLIF($8, ''), $9, $10, NULLIF($11, ''), $12, NULLIF($13, ''))
		ON CONFLICT (id) DO NOTHING`,
		f.ID, f.Rule, string(f.Severity), string(f.Mode), f.InScope, f.Database, f.DBUser, f.LeaseID, f.DetectedAt,
		f.Action, f.CommandID, doc, evidenceID)
	if err != nil {
		return false, fmt.Errorf("insert finding %s: %w", f.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// FindingExists reports whether a finding id is already recorded.
func FindingExists(ctx context.Context, q Querier, id string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM findings WHERE id = $1)`, id).Scan(&ok)
	return ok, err
}
