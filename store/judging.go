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

// DueLease is a lease whose expiry (plus grace) has passed and that the
// expiry detector has not judged yet, as the detector sees it. A lease
// revoked per the audit log is due too: a revocation seen only on the bus
// neither arms nor disarms a drop.
type DueLease struct {
	LeaseID       string
	State         LeaseState
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
	RevokedAt     *time.Time
	// VaultSeenAt is when Vault last confirmed it held the lease.
	VaultSeenAt   *time.Time
	LastEvent     string
	LastEventAt   time.Time
	LastRequestID string
}

// ClaimDue locks up to limit leases not judged yet (whatever their state:
// revoked or expired per the bus is no proof), that expired at or before cutoff, whose judgement is not
// postponed past now, and that have a known plain database user and
// database. Rows locked by another process are skipped (FOR UPDATE SKIP
// LOCKED), so several leaseguard processes share the work without doing it
// twice. The locks last until tx ends.
func ClaimDue(ctx context.Context, tx pgx.Tx, cutoff, now time.Time, limit int) ([]DueLease, error) {
	rows, err := tx.Query(ctx, `
		SELECT lease_id, state, database, db_user, coalesce(mount, ''), coalesce(role, ''), coalesce(namespace, ''),
		       coalesce(entity_id, ''), coalesce(remote_address, ''), issued_at, expire_at,
		       coalesce(expire_source, ''), revoked_at, vault_seen_at, coalesce(last_event, ''), last_event_at,
		       coalesce(last_request_id, '')
		FROM leases
		WHERE expiry_judged_at IS NULL
		  AND expire_at IS NOT NULL AND expire_at <= $1
		  AND (expiry_recheck_at IS NULL OR expiry_recheck_at <= $3)
		  AND db_user IS NOT NULL AND NOT db_user_hmac AND database IS NOT NULL
		ORDER BY expire_at
		LIMIT $2
		FOR UPDATE SKIP LOCKED`, cutoff, limit, now)
	if err != nil {
		return nil, fmt.Errorf("claim due leases: %w", err)
	}
	var out []DueLease
	var d DueLease
	var issued, lastAt pgtype.Timestamptz
	_, err = pgx.ForEachRow(rows, []any{&d.LeaseID, &d.State, &d.Database, &d.DBUser, &d.Mount, &d.Role, &d.Namespace,
		&d.EntityID, &d.RemoteAddress, &issued, &d.ExpireAt, &d.ExpireSource, &d.RevokedAt, &d.VaultSeenAt,
		&d.LastEvent, &lastAt, &d.LastRequestID}, func() error {
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

// MarkJudged records that the expiry detector judged the leases: active
// ones move to expired; revoked ones stay revoked. Judged leases are never
// due again.
func MarkJudged(ctx context.Context, tx pgx.Tx, leaseIDs []string, at time.Time) error {
	if len(leaseIDs) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `
		UPDATE leases SET expiry_judged_at = $2, expiry_recheck_at = NULL, updated_at = now(),
		       state = CASE WHEN state = 'active' THEN 'expired' ELSE state END,
		       last_event = CASE WHEN state = 'active' AND last_event_at <= $2 THEN 'expired' ELSE last_event END,
		       last_event_at = CASE WHEN state = 'active' THEN GREATEST(last_event_at, $2) ELSE last_event_at END
		WHERE lease_id = ANY($1) AND expiry_judged_at IS NULL`, leaseIDs, at)
	if err != nil {
		return fmt.Errorf("mark leases judged: %w", err)
	}
	return nil
}

// PostponeJudgement leaves leases due, to be judged again at until (their
// judgement could not be corroborated yet: Vault unreachable).
func PostponeJudgement(ctx context.Context, tx pgx.Tx, leaseIDs []string, until time.Time) error {
	if len(leaseIDs) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE leases SET expiry_recheck_at = $2, updated_at = now()
		WHERE lease_id = ANY($1) AND expiry_judged_at IS NULL`, leaseIDs, until)
	if err != nil {
		return fmt.Errorf("postpone judgement of leases: %w", err)
	}
	return nil
}

// ExtendExpiry records a later expiry read from the database
// (pg_valid_until) or from Vault (vault_lookup): the lease was renewed, and
// leaseguard missed or has not yet seen the renewal.
func ExtendExpiry(ctx context.Context, tx pgx.Tx, leaseID string, expireAt, checkedAt time.Time, source schemas.ExpireSource) error {
	_, err := tx.Exec(ctx, `
		UPDATE leases SET expire_at = $2, expire_source = $4, expire_checked_at = $3, updated_at = now()
		WHERE lease_id = $1 AND expiry_judged_at IS NULL AND (expire_at IS NULL OR expire_at < $2)`,
		leaseID, expireAt, checkedAt, string(source))
	if err != nil {
		return fmt.Errorf("extend expiry of %s: %w", leaseID, err)
	}
	return nil
}

// MarkVaultSeen records that Vault held the leases at at (a lookup found
// them); the first time is kept.
func MarkVaultSeen(ctx context.Context, q Querier, leaseIDs []string, at time.Time) error {
	if len(leaseIDs) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `UPDATE leases SET vault_seen_at = COALESCE(vault_seen_at, $2), vault_checked_at = $2
		WHERE lease_id = ANY($1)`, leaseIDs, at)
	if err != nil {
		return fmt.Errorf("record leases seen in vault: %w", err)
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

// RearmStranded makes due again up to limit judged leases whose
// lease-expired-not-revoked command never reached the revoker's record
// (no revocations row for its id) although it was issued before cutoff:
// the command expired in the queue, or was refused before it was recorded
// (a key the revoker did not know yet). The next pass corroborates the
// lease again and issues a fresh command under the same id. Only findings
// of the day before cutoff are looked at: the sweep runs far more often.
func RearmStranded(ctx context.Context, q Querier, rule string, cutoff time.Time, limit int) ([]string, error) {
	rows, err := q.Query(ctx, `
		UPDATE leases AS l SET expiry_judged_at = NULL, expiry_recheck_at = NULL, updated_at = now()
		FROM (SELECT f.lease_id FROM findings AS f
		      WHERE f.detected_at < $2 AND f.detected_at > $2 - interval '1 day'
		        AND f.rule = $1 AND f.action = 'revocation_requested' AND f.lease_id IS NOT NULL
		        AND NOT EXISTS (SELECT 1 FROM revocations AS r WHERE r.command_id = f.command_id)
		      ORDER BY f.detected_at LIMIT $3) AS s
		WHERE l.lease_id = s.lease_id AND l.expiry_judged_at IS NOT NULL AND l.expiry_judged_at < $2
		RETURNING l.lease_id`, rule, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("rearm stranded leases: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("rearm stranded leases: %w", err)
	}
	return ids, nil
}

// StrandedFindings returns which of ids are findings that requested a
// revocation whose command never reached the revoker's record (no
// revocations row for its id), last issued before cutoff.
func StrandedFindings(ctx context.Context, q Querier, ids []string, cutoff time.Time) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT f.id FROM findings AS f
		WHERE f.id = ANY($1) AND f.action = 'revocation_requested' AND COALESCE(f.command_issued_at, f.detected_at) < $2
		  AND NOT EXISTS (SELECT 1 FROM revocations AS r WHERE r.command_id = f.command_id)`, ids, cutoff)
	if err != nil {
		return nil, fmt.Errorf("stranded findings: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("stranded findings: %w", err)
	}
	for _, id := range found {
		out[id] = true
	}
	return out, nil
}

// MarkCommandIssued records that the commands of the findings ids were
// issued (again) at at.
func MarkCommandIssued(ctx context.Context, q Querier, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := q.Exec(ctx, `UPDATE findings SET command_issued_at = $2 WHERE id = ANY($1)`, ids, at); err != nil {
		return fmt.Errorf("record commands issued again: %w", err)
	}
	return nil
}

// RearmPilots makes the judgements of pilot findings (action would_drop)
// due again after a change of the enforcement policy, so that the next pass
// judges them under the new policy: the leases of expiryRule's pilots, not
// acted on since, are due again, and the rule marks of markedRules' pilots
// (keyed by lease id) are removed. A lease still outside the scope gets its
// pilot finding again, which is already recorded: nothing is repeated.
func RearmPilots(ctx context.Context, q Querier, expiryRule string, markedRules []string) (int64, error) {
	tag, err := q.Exec(ctx, `
		UPDATE leases AS l SET expiry_judged_at = NULL, expiry_recheck_at = NULL, updated_at = now()
		FROM (SELECT DISTINCT f.lease_id FROM findings AS f
		      WHERE f.rule = $1 AND f.action = 'would_drop' AND f.lease_id IS NOT NULL
		        AND NOT EXISTS (SELECT 1 FROM findings AS g WHERE g.lease_id = f.lease_id AND g.rule = $1
		                        AND g.action IN ('revocation_requested', 'approval_requested'))) AS s
		WHERE l.lease_id = s.lease_id AND l.expiry_judged_at IS NOT NULL`, expiryRule)
	if err != nil {
		return 0, fmt.Errorf("rearm pilot leases: %w", err)
	}
	if _, err := q.Exec(ctx, `
		DELETE FROM rule_marks AS m USING findings AS f
		WHERE m.rule = ANY($1) AND f.rule = m.rule AND f.lease_id = m.key AND f.action = 'would_drop'`, markedRules); err != nil {
		return 0, fmt.Errorf("rearm pilot rule marks: %w", err)
	}
	return tag.RowsAffected(), nil
}
