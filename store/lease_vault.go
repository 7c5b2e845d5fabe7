package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// What Vault said about leases, as the ledger records it. The Vault
// features (vaultlink) ask; the lease rows are the ledger's, so the writes
// are here.

// MarkVaultChecked records that Vault was asked about a lease at at and did
// not hold it.
func MarkVaultChecked(ctx context.Context, q Querier, leaseID string, at time.Time) error {
	_, err := q.Exec(ctx, `UPDATE leases SET vault_checked_at = $2 WHERE lease_id = $1`, leaseID, at)
	return err
}

// ConfirmInVault records that Vault held a lease at at (the first time is
// kept) and, when expire is not nil, takes Vault's expiry as the lease's
// (source vault_lookup).
func ConfirmInVault(ctx context.Context, q Querier, leaseID string, at time.Time, expire *time.Time) error {
	_, err := q.Exec(ctx, `UPDATE leases SET vault_seen_at = COALESCE(vault_seen_at, $2), vault_checked_at = $2,
			expire_at = COALESCE($3, expire_at),
			expire_source = CASE WHEN $3::timestamptz IS NULL THEN expire_source ELSE 'vault_lookup' END,
			expire_checked_at = CASE WHEN $3::timestamptz IS NULL THEN expire_checked_at ELSE $2 END,
			updated_at = now()
		WHERE lease_id = $1`, leaseID, at, expire)
	if err != nil {
		return fmt.Errorf("record lease %s confirmed: %w", leaseID, err)
	}
	return nil
}

// QueueNameHashedUsers queues, in b, the naming of leases whose user the
// ledger knows only as an HMAC: lease ids[i], whose user is the HMAC
// sums[i], gets the plain name users[i], and is due for expiry resolution
// at once (its user's rolvaliduntil can now be read). The caller locks the
// rows first, in lease id order, as Apply locks them.
func QueueNameHashedUsers(b *pgx.Batch, ids, users, sums []string) {
	b.Queue(`UPDATE leases l SET db_user = x.u, db_user_hmac = false, expire_attempt_at = NULL,
			expire_checked_at = CASE WHEN l.expire_source = 'role_default' THEN NULL ELSE l.expire_checked_at END,
			updated_at = now()
		FROM unnest($1::text[], $2::text[], $3::text[]) AS x(id, u, h)
		WHERE l.lease_id = x.id AND l.db_user_hmac AND l.db_user = x.h`, ids, users, sums)
}
