package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// LeasesNamingUsers returns, per user name, the leases whose plain database
// user is that name, newest first (by issue time, else first sighting). It
// looks in every target: PostgreSQL roles are cluster-wide, so a lease routed
// to another database of the same cluster still accounts for the role.
// Leases known only by the HMAC of their user are not returned (see
// HMACLeases).
func LeasesNamingUsers(ctx context.Context, q Querier, users []string) (map[string][]Lease, error) {
	if len(users) == 0 {
		return map[string][]Lease{}, nil
	}
	return leasesByUser(ctx, q, fmt.Sprintf("leases of %d users", len(users)), `db_user = ANY($1)`, users)
}

// LeasesNamingRecordedRoles is LeasesNamingUsers of users and of the
// names of the roles the observer recorded as present on database
// (db_roles, as q's transaction sees it): a pass's roles are looked up
// without sending their names (100,000 on a large target, every pass).
// It may return leases of recorded roles the caller does not judge (the
// target's unmanaged roles): the caller keeps those of the names it needs.
func LeasesNamingRecordedRoles(ctx context.Context, q Querier, database string, users []string) (map[string][]Lease, error) {
	return leasesByUser(ctx, q, "leases of the roles of "+database, `db_user IN (
			SELECT rolname FROM db_roles WHERE database = $2 AND gone_at IS NULL
			UNION SELECT unnest($1::text[]))`, users, database)
}

// leasesByUser groups by user the leases known by their plain user that
// match where, newest first (by issue time, else first sighting).
func leasesByUser(ctx context.Context, q Querier, what, where string, args ...any) (map[string][]Lease, error) {
	rows, err := q.Query(ctx, "SELECT "+leaseSelect+` FROM leases
		WHERE NOT db_user_hmac AND `+where+`
		ORDER BY coalesce(issued_at, first_seen_at) DESC NULLS LAST, lease_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := map[string][]Lease{}
	for _, l := range ls {
		out[l.DBUser] = append(out[l.DBUser], l)
	}
	return out, nil
}

// HMACLeases returns the leases of databases (the targets of one server,
// whose roles are shared) whose user the audit log showed only as an HMAC
// (an untuned database mount), issued within [from, to], oldest first.
func HMACLeases(ctx context.Context, q Querier, databases []string, from, to time.Time) ([]Lease, error) {
	rows, err := q.Query(ctx, "SELECT "+leaseSelect+` FROM leases
		WHERE database = ANY($1) AND db_user_hmac AND issued_at BETWEEN $2 AND $3
		ORDER BY issued_at, lease_id`, databases, from, to)
	if err != nil {
		return nil, fmt.Errorf("hmac leases of %v: %w", databases, err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, fmt.Errorf("hmac leases of %v: %w", databases, err)
	}
	return ls, nil
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
// of databases.
func CredsPathsOf(ctx context.Context, q Querier, databases []string) ([]CredsPath, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT mount, role FROM leases
		WHERE database = ANY($1) AND mount IS NOT NULL AND role IS NOT NULL ORDER BY mount, role`, databases)
	if err != nil {
		return nil, fmt.Errorf("creds paths of %v: %w", databases, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CredsPath, error) {
		var c CredsPath
		return c, r.Scan(&c.Mount, &c.Role)
	})
	if err != nil {
		return nil, fmt.Errorf("creds paths of %v: %w", databases, err)
	}
	return out, nil
}
