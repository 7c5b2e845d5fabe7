package vaultlink

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// A revocation through the API body reaches the ledger as an HMAC of its
// lease id (hashed_revocations). The functions below keep the HMACs of the
// ledger's lease ids through each audit device (vault_lease_id_hmacs) and
// find the hashed revocations whose HMAC is one of them, so that they can
// be applied as the plain revocations they are (vault_revocation_links).

// PendingHashedRevocations describes the hashed revocations not linked to a
// lease, revoked at or after since.
type PendingHashedRevocations struct {
	Count int
	// Earliest and Latest revocation times among them (zero when Count is 0).
	Earliest, Latest time.Time
}

// HashedRevocationsPending summarises the unlinked hashed revocations
// revoked at or after since.
func HashedRevocationsPending(ctx context.Context, q store.Querier, since time.Time) (PendingHashedRevocations, error) {
	var p PendingHashedRevocations
	var lo, hi *time.Time
	err := q.QueryRow(ctx, `
		SELECT count(*), min(r.revoked_at), max(r.revoked_at) FROM hashed_revocations r
		WHERE r.revoked_at >= $1
		  AND NOT EXISTS (SELECT 1 FROM vault_revocation_links k
		                  WHERE k.lease_id_hmac = r.lease_id_hmac AND k.revoked_at = r.revoked_at)`,
		dbTime(since)).Scan(&p.Count, &lo, &hi)
	if err != nil {
		return p, fmt.Errorf("pending hashed revocations: %w", err)
	}
	if lo != nil && hi != nil {
		p.Earliest, p.Latest = lo.UTC(), hi.UTC()
	}
	return p, nil
}

// LeaseWindow selects the leases UnhashedLeaseIDs returns.
type LeaseWindow struct {
	// SeenSince, when not zero: active leases first seen at or after it
	// (newly issued ones).
	SeenSince time.Time
	// From and To, when SeenSince is zero: the leases a revocation in
	// [From, To] may name: first seen at or before To, not revoked, and
	// active or expired no earlier than From.
	From, To time.Time
}

// UnhashedLeaseIDs returns up to limit ids of leases in w that have no
// HMAC for device yet, newest first (by first_seen_at: the issue time, or
// the earliest event).
func UnhashedLeaseIDs(ctx context.Context, q store.Querier, device string, w LeaseWindow, limit int) ([]string, error) {
	var rows pgx.Rows
	var err error
	if !w.SeenSince.IsZero() {
		rows, err = q.Query(ctx, `
			SELECT l.lease_id FROM leases l
			WHERE l.state = 'active' AND l.first_seen_at >= $2
			  AND NOT EXISTS (SELECT 1 FROM vault_lease_id_hmacs h WHERE h.lease_id = l.lease_id AND h.device = $1)
			ORDER BY l.first_seen_at DESC, l.lease_id
			LIMIT $3`, device, dbTime(w.SeenSince), limit)
	} else {
		rows, err = q.Query(ctx, `
			SELECT l.lease_id FROM leases l
			WHERE l.state <> 'revoked'
			  AND (l.first_seen_at IS NULL OR l.first_seen_at <= $3)
			  AND (l.state = 'active' OR l.expire_at IS NULL OR l.expire_at >= $2)
			  AND NOT EXISTS (SELECT 1 FROM vault_lease_id_hmacs h WHERE h.lease_id = l.lease_id AND h.device = $1)
			ORDER BY l.first_seen_at DESC NULLS LAST, l.lease_id
			LIMIT $4`, device, dbTime(w.From), dbTime(w.To), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("unhashed lease ids: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("unhashed lease ids: %w", err)
	}
	return ids, nil
}

// SaveLeaseIDHMACs records the HMAC of each lease id for device.
func SaveLeaseIDHMACs(ctx context.Context, q store.Querier, device string, hmacs map[string]string, at time.Time) error {
	if len(hmacs) == 0 {
		return nil
	}
	ids, sums := make([]string, 0, len(hmacs)), make([]string, 0, len(hmacs))
	for id, h := range hmacs {
		ids, sums = append(ids, id), append(sums, h)
	}
	_, err := q.Exec(ctx, `
		INSERT INTO vault_lease_id_hmacs (lease_id, device, hmac, hashed_at)
		SELECT id, $1, h, $4 FROM unnest($2::text[], $3::text[]) AS x(id, h)
		ON CONFLICT (lease_id, device) DO UPDATE SET hmac = EXCLUDED.hmac, hashed_at = EXCLUDED.hashed_at`,
		device, ids, sums, dbTime(at))
	if err != nil {
		return fmt.Errorf("save %d lease id hmacs: %w", len(hmacs), err)
	}
	return nil
}

// RevocationMatch is an unlinked hashed revocation whose HMAC is the
// recorded HMAC of a lease id.
type RevocationMatch struct {
	LeaseIDHMAC string
	RevokedAt   time.Time
	Method      schemas.RevokeMethod
	Namespace   string
	RequestID   string
	// Source is the message the hashed revocation came from (its
	// lease_events row), when the ledger still has it.
	Source schemas.SourceRef
	// LeaseID, Device: the lease whose id hashes to LeaseIDHMAC through
	// Device; Mount, Role and Database are the ledger's.
	LeaseID  string
	Device   string
	Mount    string
	Role     string
	Database string
}

// Event is the revoked lease event the match stands for: the plain
// revocation Vault performed, as a revoke naming the lease in plain would
// have given it.
func (m RevocationMatch) Event() schemas.LeaseEvent {
	return schemas.LeaseEvent{
		Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: m.LeaseID, RevokeBy: m.Method,
		Mount: m.Mount, Role: m.Role, Namespace: m.Namespace, Database: m.Database,
		EventTime: m.RevokedAt, VaultRequestID: m.RequestID, Source: m.Source,
	}
}

// MatchHashedRevocations returns up to limit unlinked hashed revocations
// whose HMAC is the recorded HMAC of exactly one lease id, through one of
// devices, newest first. An HMAC recorded for two lease ids (impossible
// for a device's salt) matches nothing.
func MatchHashedRevocations(ctx context.Context, q store.Querier, devices []string, limit int) ([]RevocationMatch, error) {
	rows, err := q.Query(ctx, `
		SELECT r.lease_id_hmac, r.revoked_at, coalesce(r.method, ''), coalesce(r.namespace, ''), coalesce(r.vault_request_id, ''),
		       (SELECT e.source FROM lease_events e
		        WHERE e.lease_id = r.lease_id_hmac AND e.lease_id_hmac AND e.event_time = r.revoked_at
		        ORDER BY e.received_at, e.event_id LIMIT 1),
		       h.lease_id, h.device, coalesce(l.mount, ''), coalesce(l.role, ''), coalesce(l.database, '')
		FROM hashed_revocations r
		JOIN vault_lease_id_hmacs h ON h.hmac = r.lease_id_hmac AND h.device = ANY($1)
		LEFT JOIN leases l ON l.lease_id = h.lease_id
		WHERE NOT EXISTS (SELECT 1 FROM vault_revocation_links k
		                  WHERE k.lease_id_hmac = r.lease_id_hmac AND k.revoked_at = r.revoked_at)
		  AND (SELECT count(DISTINCT h2.lease_id) FROM vault_lease_id_hmacs h2 WHERE h2.hmac = r.lease_id_hmac) = 1
		ORDER BY r.revoked_at DESC, r.lease_id_hmac
		LIMIT $2`, devices, limit)
	if err != nil {
		return nil, fmt.Errorf("match hashed revocations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RevocationMatch, error) {
		var m RevocationMatch
		var method string
		var src *schemas.SourceRef
		err := r.Scan(&m.LeaseIDHMAC, &m.RevokedAt, &method, &m.Namespace, &m.RequestID, &src,
			&m.LeaseID, &m.Device, &m.Mount, &m.Role, &m.Database)
		m.RevokedAt, m.Method = m.RevokedAt.UTC(), schemas.RevokeMethod(method)
		if src != nil {
			m.Source = *src
		}
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("match hashed revocations: %w", err)
	}
	return out, nil
}

// RecordRevocationLinks records that each matched hashed revocation was
// applied to the ledger as eventIDs[i] (method "hmac").
func RecordRevocationLinks(ctx context.Context, q store.Querier, ms []RevocationMatch, eventIDs []string, at time.Time) error {
	if len(ms) == 0 {
		return nil
	}
	if len(eventIDs) != len(ms) {
		return fmt.Errorf("record revocation links: %d matches, %d event ids", len(ms), len(eventIDs))
	}
	n := len(ms)
	sums, times, ids, devices := make([]string, n), make([]time.Time, n), make([]string, n), make([]string, n)
	for i, m := range ms {
		sums[i], times[i], ids[i], devices[i] = m.LeaseIDHMAC, dbTime(m.RevokedAt), m.LeaseID, m.Device
	}
	_, err := q.Exec(ctx, `
		INSERT INTO vault_revocation_links (lease_id_hmac, revoked_at, lease_id, method, device, event_id, linked_at)
		SELECT s, t, id, 'hmac', d, e, $6
		FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[]) AS x(s, t, id, d, e)
		ON CONFLICT (lease_id_hmac, revoked_at) DO NOTHING`, sums, times, ids, devices, eventIDs, dbTime(at))
	if err != nil {
		return fmt.Errorf("record %d revocation links: %w", n, err)
	}
	return nil
}

// RevocationLink is a hashed revocation linked to its lease.
type RevocationLink struct {
	LeaseIDHMAC string
	RevokedAt   time.Time
	LeaseID     string
	Method      string
	Device      string
	EventID     string
	LinkedAt    time.Time
}

// RevocationLinksOf returns the hashed revocations linked to leaseID, in
// revocation time order.
func RevocationLinksOf(ctx context.Context, q store.Querier, leaseID string) ([]RevocationLink, error) {
	rows, err := q.Query(ctx, `SELECT lease_id_hmac, revoked_at, lease_id, method, device, event_id, linked_at
		FROM vault_revocation_links WHERE lease_id = $1 ORDER BY revoked_at, lease_id_hmac`, leaseID)
	if err != nil {
		return nil, fmt.Errorf("revocation links of %s: %w", leaseID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RevocationLink, error) {
		var l RevocationLink
		err := r.Scan(&l.LeaseIDHMAC, &l.RevokedAt, &l.LeaseID, &l.Method, &l.Device, &l.EventID, &l.LinkedAt)
		l.RevokedAt, l.LinkedAt = l.RevokedAt.UTC(), l.LinkedAt.UTC()
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("revocation links of %s: %w", leaseID, err)
	}
	return out, nil
}

// RevocationLinkMethods returns, for the given lease ids, how a revocation
// of each was linked to it ("hmac"); leases with no linked revocation are
// absent.
func RevocationLinkMethods(ctx context.Context, q store.Querier, leaseIDs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(leaseIDs) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT lease_id, method FROM vault_revocation_links WHERE lease_id = ANY($1)`, leaseIDs)
	if err != nil {
		return nil, fmt.Errorf("revocation links: %w", err)
	}
	var id, m string
	_, err = pgx.ForEachRow(rows, []any{&id, &m}, func() error { out[id] = m; return nil })
	if err != nil {
		return nil, fmt.Errorf("revocation links: %w", err)
	}
	return out, nil
}
