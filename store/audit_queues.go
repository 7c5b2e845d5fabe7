package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The work queues of the audit-log rules (detectors/audit_rules.go). Each
// claim locks its rows FOR UPDATE SKIP LOCKED and skips rows already
// reported; the caller marks what it reported in the same transaction, so
// an event is reported once however many processes run the rules.

// ClaimUnauditedIssues locks up to limit creds requests whose request entry
// was logged before cutoff, that have no response entry and were not
// reported yet, oldest first. Time is requested_at. The locks last until tx
// ends.
func ClaimUnauditedIssues(ctx context.Context, tx pgx.Tx, cutoff time.Time, limit int) ([]CredsRecord, error) {
	rows, err := tx.Query(ctx, `
		SELECT request_id, COALESCE(path, ''), COALESCE(mount, ''), COALESCE(role, ''),
		       COALESCE(namespace, ''), COALESCE(entity_id, ''), COALESCE(token_accessor, ''),
		       COALESCE(display_name, ''), COALESCE(remote_address, ''), requested_at
		FROM creds_requests
		WHERE responded_at IS NULL AND requested_at IS NOT NULL AND unaudited_reported_at IS NULL
		  AND requested_at < $1
		ORDER BY requested_at, request_id
		LIMIT $2
		FOR UPDATE SKIP LOCKED`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("claim unaudited creds requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanCredsRecord)
	if err != nil {
		return nil, fmt.Errorf("claim unaudited creds requests: %w", err)
	}
	return out, nil
}

// MarkUnauditedReported records that the unaudited-issue rule reported these
// creds requests.
func MarkUnauditedReported(ctx context.Context, tx pgx.Tx, requestIDs []string, at time.Time) error {
	if len(requestIDs) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE creds_requests SET unaudited_reported_at = $2
		WHERE request_id = ANY($1) AND unaudited_reported_at IS NULL`, requestIDs, at)
	if err != nil {
		return fmt.Errorf("mark unaudited creds requests reported: %w", err)
	}
	return nil
}

// PrefixRevocation is a revoke-prefix or revoke-force seen in the audit log.
type PrefixRevocation struct {
	Prefix    string
	RevokedAt time.Time
	// Method is "revoke-prefix" or "revoke-force".
	Method string
	// Namespace is namespace.path as logged, "" for root or unknown.
	Namespace      string
	VaultRequestID string
	// LeasesRevoked counts the revoked leases of the ledger the revocation
	// covers (prefix matches as in Vault, namespaces do not differ, lease
	// known before the revocation), when it was claimed.
	LeasesRevoked int64
}

// ClaimPrefixRevocations locks up to limit prefix revocations not reported
// yet, oldest first, with the number of ledger leases each revoked. The
// locks last until tx ends.
func ClaimPrefixRevocations(ctx context.Context, tx pgx.Tx, limit int) ([]PrefixRevocation, error) {
	rows, err := tx.Query(ctx, `
		SELECT p.prefix, p.revoked_at, p.method, COALESCE(p.namespace, ''), COALESCE(p.vault_request_id, ''),
		       (SELECT count(*) FROM leases l
		        WHERE l.state = 'revoked'
		          AND (l.lease_id = p.prefix
		               OR (l.lease_id >= r.lo AND l.lease_id < left(r.lo, -1) || '0'))
		          AND (COALESCE(p.namespace, '') = '' OR COALESCE(l.namespace, '') = '' OR l.namespace = p.namespace)
		          AND (l.first_seen_at IS NULL OR l.first_seen_at <= p.revoked_at))
		FROM prefix_revocations p,
		     LATERAL (SELECT CASE WHEN right(p.prefix, 1) = '/' THEN p.prefix ELSE p.prefix || '/' END COLLATE "C" AS lo) r
		WHERE p.reported_at IS NULL
		ORDER BY p.revoked_at, p.prefix
		LIMIT $1
		FOR UPDATE OF p SKIP LOCKED`, limit)
	if err != nil {
		return nil, fmt.Errorf("claim prefix revocations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PrefixRevocation, error) {
		var p PrefixRevocation
		err := r.Scan(&p.Prefix, &p.RevokedAt, &p.Method, &p.Namespace, &p.VaultRequestID, &p.LeasesRevoked)
		p.RevokedAt = p.RevokedAt.UTC()
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim prefix revocations: %w", err)
	}
	return out, nil
}

// MarkPrefixRevocationsReported records that the mass-revocation rule
// reported these prefix revocations.
func MarkPrefixRevocationsReported(ctx context.Context, tx pgx.Tx, ps []PrefixRevocation, at time.Time) error {
	if len(ps) == 0 {
		return nil
	}
	prefixes := make([]string, len(ps))
	times := make([]time.Time, len(ps))
	for i, p := range ps {
		prefixes[i], times[i] = p.Prefix, p.RevokedAt
	}
	_, err := tx.Exec(ctx, `UPDATE prefix_revocations p SET reported_at = $3
		FROM unnest($1::text[], $2::timestamptz[]) AS x(prefix, revoked_at)
		WHERE p.prefix = x.prefix AND p.revoked_at = x.revoked_at AND p.reported_at IS NULL`, prefixes, times, at)
	if err != nil {
		return fmt.Errorf("mark prefix revocations reported: %w", err)
	}
	return nil
}
