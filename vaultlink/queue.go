package vaultlink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/leaseguard/leaseguard/store"
)

// The state of keeping Vault in agreement (migration 009): the durable queue
// of leases to revoke in Vault after their users were dropped, the HMACs of
// user names as Vault's audit device computes them, and the HMAC'd leases
// linked to their users. The revocations table is only read here.

// VaultRevocation is one lease to revoke in Vault.
type VaultRevocation struct {
	LeaseID   string
	CommandID string
	Database  string
	DBUser    string
	DroppedAt time.Time
	State     string
	// Attempts counts claims, this one included.
	Attempts      int
	NextAttemptAt time.Time
	// Method is "revoke" or "revoke-force" once done.
	Method            string
	LastStatus        int
	LastError         string
	FailureEvidenceID string
	EvidenceID        string
	FinishedAt        *time.Time
}

// EnqueueDroppedLeases adds to the Vault revocation queue the leases whose
// users a revocation dropped (outcome dropped, with a lease id) that the
// queue does not hold yet: at most limit of them, oldest drop first, from a
// margin before the cursor (finished_at is the revoker's clock before its
// transaction commits, so a drop may become visible after a later one).
// The cursor then moves: to now when fewer than limit were found (every
// earlier drop is queued), else to the last one found. It returns how many
// were added.
func EnqueueDroppedLeases(ctx context.Context, q store.Querier, margin time.Duration, limit int, now time.Time) (int, error) {
	var cursor pgtype.Timestamptz
	err := q.QueryRow(ctx, `SELECT finished_at FROM vault_reconcile_cursor WHERE id = 1`).Scan(&cursor)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("vault reconcile cursor: %w", err)
	}
	from := time.Time{}
	if cursor.Valid {
		from = cursor.Time.Add(-margin)
	}
	var found, added int
	var last pgtype.Timestamptz
	err = q.QueryRow(ctx, `
		WITH src AS (
			SELECT r.lease_id, r.command_id, r.database, r.db_user, r.finished_at
			FROM revocations r
			WHERE r.outcome = 'dropped' AND r.lease_id IS NOT NULL AND r.finished_at >= $1
			  AND NOT EXISTS (SELECT 1 FROM vault_revocations v WHERE v.lease_id = r.lease_id)
			ORDER BY r.finished_at, r.command_id
			LIMIT $2
		), ins AS (
			INSERT INTO vault_revocations (lease_id, command_id, database, db_user, dropped_at, next_attempt_at)
			SELECT lease_id, command_id, database, db_user, finished_at, $3 FROM src
			ON CONFLICT (lease_id) DO NOTHING
			RETURNING 1
		)
		SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM ins), (SELECT max(finished_at) FROM src)`,
		from, limit, dbTime(now)).Scan(&found, &added, &last)
	if err != nil {
		return 0, fmt.Errorf("enqueue dropped leases: %w", err)
	}
	next := dbTime(now)
	if found >= limit && last.Valid {
		next = last.Time
	}
	_, err = q.Exec(ctx, `INSERT INTO vault_reconcile_cursor (id, finished_at) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET finished_at = GREATEST(vault_reconcile_cursor.finished_at, EXCLUDED.finished_at)`, next)
	if err != nil {
		return added, fmt.Errorf("move vault reconcile cursor: %w", err)
	}
	return added, nil
}

// EnqueueVaultRevocation adds one lease to the queue (the offline revoke
// path enqueues its own drops directly); it reports whether it was added.
func EnqueueVaultRevocation(ctx context.Context, q store.Querier, r VaultRevocation, now time.Time) (bool, error) {
	tag, err := q.Exec(ctx, `
		INSERT INTO vault_revocations (lease_id, command_id, database, db_user, dropped_at, next_attempt_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (lease_id) DO NOTHING`,
		r.LeaseID, r.CommandID, r.Database, r.DBUser, dbTime(r.DroppedAt), dbTime(now))
	if err != nil {
		return false, fmt.Errorf("enqueue vault revocation of %s: %w", r.LeaseID, err)
	}
	return tag.RowsAffected() == 1, nil
}

const vaultRevocationCols = `lease_id, command_id, database, db_user, dropped_at, state, attempts, next_attempt_at,
	coalesce(method, ''), coalesce(last_status, 0), coalesce(last_error, ''), coalesce(failure_evidence_id, ''),
	coalesce(evidence_id, ''), finished_at`

func scanVaultRevocations(rows pgx.Rows) ([]VaultRevocation, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (VaultRevocation, error) {
		var v VaultRevocation
		err := r.Scan(&v.LeaseID, &v.CommandID, &v.Database, &v.DBUser, &v.DroppedAt, &v.State, &v.Attempts,
			&v.NextAttemptAt, &v.Method, &v.LastStatus, &v.LastError, &v.FailureEvidenceID, &v.EvidenceID, &v.FinishedAt)
		v.DroppedAt, v.NextAttemptAt = v.DroppedAt.UTC(), v.NextAttemptAt.UTC()
		v.FinishedAt = utcPtr(v.FinishedAt)
		return v, err
	})
}

// ClaimVaultRevocations takes up to limit due leases (next_attempt_at at or
// before now), oldest due first, counts the attempt and moves
// next_attempt_at to now+hold, so no other worker takes them meanwhile;
// a worker that dies leaves them due again after hold.
func ClaimVaultRevocations(ctx context.Context, q store.Querier, now time.Time, hold time.Duration, limit int) ([]VaultRevocation, error) {
	rows, err := q.Query(ctx, `
		UPDATE vault_revocations SET attempts = attempts + 1, next_attempt_at = $2
		WHERE lease_id IN (
			SELECT lease_id FROM vault_revocations
			WHERE state = 'pending' AND next_attempt_at <= $1
			ORDER BY next_attempt_at, lease_id
			LIMIT $3
			FOR UPDATE SKIP LOCKED)
		RETURNING `+vaultRevocationCols, dbTime(now), dbTime(now.Add(hold)), limit)
	if err != nil {
		return nil, fmt.Errorf("claim vault revocations: %w", err)
	}
	out, err := scanVaultRevocations(rows)
	if err != nil {
		return nil, fmt.Errorf("claim vault revocations: %w", err)
	}
	return out, nil
}

// FinishVaultRevocation records that Vault let go of the lease (method
// revoke or revoke-force), with the evidence of the resolution if any.
func FinishVaultRevocation(ctx context.Context, q store.Querier, leaseID, method, evidenceID string, at time.Time) error {
	_, err := q.Exec(ctx, `UPDATE vault_revocations SET state = 'done', method = $2, evidence_id = NULLIF($3, ''),
		finished_at = $4, last_error = NULL, last_status = NULL WHERE lease_id = $1 AND state = 'pending'`,
		leaseID, method, evidenceID, dbTime(at))
	if err != nil {
		return fmt.Errorf("finish vault revocation of %s: %w", leaseID, err)
	}
	return nil
}

// RetryVaultRevocation records a failed attempt and when to try again;
// failureEvidenceID, when not empty, is kept as the evidence of the first
// failure.
func RetryVaultRevocation(ctx context.Context, q store.Querier, leaseID string, next time.Time, status int, msg, failureEvidenceID string) error {
	_, err := q.Exec(ctx, `UPDATE vault_revocations SET next_attempt_at = $2, last_status = NULLIF($3, 0), last_error = $4,
		failure_evidence_id = coalesce(failure_evidence_id, NULLIF($5, ''))
		WHERE lease_id = $1 AND state = 'pending'`, leaseID, dbTime(next), status, msg, failureEvidenceID)
	if err != nil {
		return fmt.Errorf("reschedule vault revocation of %s: %w", leaseID, err)
	}
	return nil
}

// GetVaultRevocation reads one queued lease.
func GetVaultRevocation(ctx context.Context, q store.Querier, leaseID string) (VaultRevocation, error) {
	rows, err := q.Query(ctx, `SELECT `+vaultRevocationCols+` FROM vault_revocations WHERE lease_id = $1`, leaseID)
	if err != nil {
		return VaultRevocation{}, fmt.Errorf("vault revocation of %s: %w", leaseID, err)
	}
	out, err := scanVaultRevocations(rows)
	if err != nil {
		return VaultRevocation{}, fmt.Errorf("vault revocation of %s: %w", leaseID, err)
	}
	if len(out) == 0 {
		return VaultRevocation{}, fmt.Errorf("vault revocation of %s: %w", leaseID, store.ErrNotFound)
	}
	return out[0], nil
}

// PendingVaultRevocations counts the leases still to revoke in Vault.
func PendingVaultRevocations(ctx context.Context, q store.Querier) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM vault_revocations WHERE state = 'pending'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count vault revocations: %w", err)
	}
	return n, nil
}

// dbTime is t as the state store keeps it: UTC, to the microsecond.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
