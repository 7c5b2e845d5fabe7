package vaultlink

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leaseguard/leaseguard/store"
)

// UnhashedRoleNames returns up to limit names of roles present in the
// targets (db_roles) that have no HMAC for device yet and that no lease
// names plainly, in name order after the given name: the names whose HMAC
// may link an HMAC'd lease. The caller filters them by the managed pattern
// and pages with after.
func UnhashedRoleNames(ctx context.Context, q store.Querier, device, after string, limit int) ([]string, error) {
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
func SaveUserHMACs(ctx context.Context, q store.Querier, device string, hmacs map[string]string, at time.Time) error {
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
func UserHMACs(ctx context.Context, q store.Querier, device string, names []string) (map[string]string, error) {
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
	store.QueueNameHashedUsers(b, ids, users, sums)
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
func LinkMethods(ctx context.Context, q store.Querier, leaseIDs []string) (map[string]string, error) {
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
