package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
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
func EnqueueDroppedLeases(ctx context.Context, q Querier, margin time.Duration, limit int, now time.Time) (int, error) {
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
func ClaimVaultRevocations(ctx context.Context, q Querier, now time.Time, hold time.Duration, limit int) ([]VaultRevocation, error) {
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
func FinishVaultRevocation(ctx context.Context, q Querier, leaseID, method, evidenceID string, at time.Time) error {
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
func RetryVaultRevocation(ctx context.Context, q Querier, leaseID string, next time.Time, status int, msg, failureEvidenceID string) error {
	_, err := q.Exec(ctx, `UPDATE vault_revocations SET next_attempt_at = $2, last_status = NULLIF($3, 0), last_error = $4,
		failure_evidence_id = coalesce(failure_evidence_id, NULLIF($5, ''))
		WHERE lease_id = $1 AND state = 'pending'`, leaseID, dbTime(next), status, msg, failureEvidenceID)
	if err != nil {
		return fmt.Errorf("reschedule vault revocation of %s: %w", leaseID, err)
	}
	return nil
}

// GetVaultRevocation reads one queued lease.
func GetVaultRevocation(ctx context.Context, q Querier, leaseID string) (VaultRevocation, error) {
	rows, err := q.Query(ctx, `SELECT `+vaultRevocationCols+` FROM vault_revocations WHERE lease_id = $1`, leaseID)
	if err != nil {
		return VaultRevocation{}, fmt.Errorf("vault revocation of %s: %w", leaseID, err)
	}
	out, err := scanVaultRevocations(rows)
	if err != nil {
		return VaultRevocation{}, fmt.Errorf("vault revocation of %s: %w", leaseID, err)
	}
	if len(out) == 0 {
		return VaultRevocation{}, fmt.Errorf("vault revocation of %s: %w", leaseID, ErrNotFound)
	}
	return out[0], nil
}

// PendingVaultRevocations counts the leases still to revoke in Vault.
func PendingVaultRevocations(ctx context.Context, q Querier) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM vault_revocations WHERE state = 'pending'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count vault revocations: %w", err)
	}
	return n, nil
}

// UnhashedRoleNames returns up to limit names of roles present in the
// targets (db_roles) that have no HMAC for device yet and that no lease
// names plainly, in name order after the given name: the names whose HMAC
// may link an HMAC'd lease. The caller filters them by the managed pattern
// and pages with after.
func UnhashedRoleNames(ctx context.Context, q Querier, device, after string, limit int) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT DISTINCT r.rolname FROM db_roles r
		WHERE r.gone_at IS NULL AND r.rolname > $3
		  AND NOT EXISTS (SELECT 1 FROM vault_user_hmacs h WHERE h.device = $1 AND h.db_user = r.rolname)
		  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.db_user = r.rolname AND NOT l.db_user_hmac)
		ORDER BY r.rolname
		LIMIT $2`, device, limit, after)
	if err != nil {
		return nil, fmt.Errorf("unhashed role names: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("unhashed role names: %w", err)
	}
	return names, nil
}

// SaveUserHMACs records the HMAC of each name for device.
func SaveUserHMACs(ctx context.Context, q Querier, device string, hmacs map[string]string, at time.Time) error {
	if len(hmacs) == 0 {
		return nil
	}
	names, sums := make([]string, 0, len(hmacs)), make([]string, 0, len(hmacs))
	for n, h := range hmacs {
		names, sums = append(names, n), append(sums, h)
	}
	_, err := q.Exec(ctx, `
		INSERT INTO vault_user_hmacs (device, db_user, hmac, hashed_at)
		SELECT $1, n, h, $4 FROM unnest($2::text[], $3::text[]) AS x(n, h)
		ON CONFLICT (device, db_user) DO UPDATE SET hmac = EXCLUDED.hmac, hashed_at = EXCLUDED.hashed_at`,
		device, names, sums, dbTime(at))
	if err != nil {
		return fmt.Errorf("save %d user hmacs: %w", len(hmacs), err)
	}
	return nil
}

// UserHMACs returns the recorded HMACs of names for device.
func UserHMACs(ctx context.Context, q Querier, device string, names []string) (map[string]string, error) {
	out := map[string]string{}
	if len(names) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT db_user, hmac FROM vault_user_hmacs WHERE device = $1 AND db_user = ANY($2)`, device, names)
	if err != nil {
		return nil, fmt.Errorf("user hmacs: %w", err)
	}
	var n, h string
	_, err = pgx.ForEachRow(rows, []any{&n, &h}, func() error { out[n] = h; return nil })
	if err != nil {
		return nil, fmt.Errorf("user hmacs: %w", err)
	}
	return out, nil
}

// LeaseLink is an HMAC'd lease linked to its plain user name.
type LeaseLink struct {
	LeaseID  string
	Database string
	DBUser   string
	Method   string
	UserHMAC string
	// Device is the audit device whose HMAC of the user the ledger held.
	Device string
}

// LinkHMACLeases links every lease whose user the ledger knows only as an
// HMAC equal to the recorded HMAC of a user name for one of devices (each
// device hashes with its own salt, and the ledger keeps the HMAC of
// whichever device's entry came first): the lease row gets the plain name
// (locked in lease id order, as Apply locks them) and vault_lease_links
// records the link with method "hmac" and the device whose HMAC it was. An
// HMAC that two names share (impossible for a device's salt) links nothing.
func LinkHMACLeases(ctx context.Context, tx pgx.Tx, devices []string, at time.Time) ([]LeaseLink, error) {
	rows, err := tx.Query(ctx, `
		SELECT l.lease_id, coalesce(l.database, ''), h.db_user, h.hmac, h.device
		FROM leases l JOIN vault_user_hmacs h ON h.device = ANY($1) AND h.hmac = l.db_user
		WHERE l.db_user_hmac
		  AND (SELECT count(DISTINCT h2.db_user) FROM vault_user_hmacs h2 WHERE h2.device = ANY($1) AND h2.hmac = h.hmac) = 1
		ORDER BY l.lease_id
		FOR UPDATE OF l`, devices)
	if err != nil {
		return nil, fmt.Errorf("hmac leases to link: %w", err)
	}
	links, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LeaseLink, error) {
		l := LeaseLink{Method: "hmac"}
		return l, r.Scan(&l.LeaseID, &l.Database, &l.DBUser, &l.UserHMAC, &l.Device)
	})
	if err != nil {
		return nil, fmt.Errorf("hmac leases to link: %w", err)
	}
	if len(links) == 0 {
		return nil, nil
	}
	n := len(links)
	ids, users, sums, devs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, l := range links {
		ids[i], users[i], sums[i], devs[i] = l.LeaseID, l.DBUser, l.UserHMAC, l.Device
	}
	b := &pgx.Batch{}
	// The user is now known by name: its rolvaliduntil can be read, at once.
	b.Queue(`UPDATE leases l SET db_user = x.u, db_user_hmac = false, expire_attempt_at = NULL,
			expire_checked_at = CASE WHEN l.expire_source = 'role_default' THEN NULL ELSE l.expire_checked_at END,
			updated_at = now()
		FROM unnest($1::text[], $2::text[], $3::text[]) AS x(id, u, h)
		WHERE l.lease_id = x.id AND l.db_user_hmac AND l.db_user = x.h`, ids, users, sums)
	b.Queue(`INSERT INTO vault_lease_links (lease_id, db_user, method, device, user_hmac, linked_at)
		SELECT id, u, 'hmac', d, h, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x(id, u, h, d)
		ON CONFLICT (lease_id) DO NOTHING`, ids, users, sums, devs, dbTime(at))
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("link %d hmac leases: %w", len(links), err)
	}
	return links, nil
}

// LinkMethods returns, for the given lease ids, how each was linked to its
// plain user when that link was made by leaseguard ("hmac"); leases whose
// audit entry named the user plainly are absent.
func LinkMethods(ctx context.Context, q Querier, leaseIDs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(leaseIDs) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT lease_id, method FROM vault_lease_links WHERE lease_id = ANY($1)`, leaseIDs)
	if err != nil {
		return nil, fmt.Errorf("lease links: %w", err)
	}
	var id, m string
	_, err = pgx.ForEachRow(rows, []any{&id, &m}, func() error { out[id] = m; return nil })
	if err != nil {
		return nil, fmt.Errorf("lease links: %w", err)
	}
	return out, nil
}

// LeasesByID returns the ledger's leases among ids.
func LeasesByID(ctx context.Context, q Querier, ids []string) (map[string]Lease, error) {
	out := map[string]Lease{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, "SELECT "+leaseSelect+" FROM leases WHERE lease_id = ANY($1)", ids)
	if err != nil {
		return nil, fmt.Errorf("leases by id: %w", err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, fmt.Errorf("leases by id: %w", err)
	}
	for _, l := range ls {
		out[l.LeaseID] = l
	}
	return out, nil
}

// CredsPath is a Vault mount and role whose leases the ledger has routed to
// a database.
type CredsPath struct {
	Mount string
	Role  string
}

// CredsPathsOf returns the distinct mounts and roles of the ledger's leases
// of database.
func CredsPathsOf(ctx context.Context, q Querier, database string) ([]CredsPath, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT mount, role FROM leases
		WHERE database = $1 AND mount IS NOT NULL AND role IS NOT NULL ORDER BY mount, role`, database)
	if err != nil {
		return nil, fmt.Errorf("creds paths of %s: %w", database, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CredsPath, error) {
		var c CredsPath
		return c, r.Scan(&c.Mount, &c.Role)
	})
	if err != nil {
		return nil, fmt.Errorf("creds paths of %s: %w", database, err)
	}
	return out, nil
}
