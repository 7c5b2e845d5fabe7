package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
)

// LeaseState is the ledger's view of a lease.
type LeaseState string

const (
	StateActive  LeaseState = "active"
	StateExpired LeaseState = "expired"
	StateRevoked LeaseState = "revoked"
)

// Lease is one row of the leases table. Empty strings and nil pointers are
// NULL columns: unknown.
type Lease struct {
	LeaseID    string
	State      LeaseState
	Mount      string
	Role       string
	Namespace  string
	Database   string
	DBUser     string
	DBUserHMAC bool
	IssuedAt   *time.Time
	RenewedAt  *time.Time
	// FirstSeenAt is the earliest time the lease is known to have existed.
	FirstSeenAt  *time.Time
	ExpireAt     *time.Time
	ExpireSource schemas.ExpireSource
	// ExpireEventAt is the event time of the event that set ExpireAt.
	ExpireEventAt *time.Time
	TTLSeconds    *int64
	// ExpireCheckedAt is when ExpireAt was read from pg_roles or derived
	// from the role default; nil means it is due for a (re)read.
	ExpireCheckedAt *time.Time
	ExpireAttemptAt *time.Time
	RevokedAt       *time.Time
	RevokeMethod    schemas.RevokeMethod
	// VaultSeenAt: Vault held the lease then (a sys/leases/lookup found it).
	VaultSeenAt   *time.Time
	LastEvent     schemas.LeaseEventKind
	LastEventAt   *time.Time
	LastRequestID string
	EntityID      string
	TokenAccessor string
	DisplayName   string
	RemoteAddress string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// leaseSelect lists the columns scanLease reads, in order.
const leaseSelect = `lease_id, state, COALESCE(mount, ''), COALESCE(role, ''),
	COALESCE(namespace, ''), COALESCE(database, ''), COALESCE(db_user, ''), db_user_hmac,
	issued_at, renewed_at, first_seen_at, expire_at, COALESCE(expire_source, ''),
	expire_event_at, ttl_seconds, expire_checked_at, expire_attempt_at, revoked_at,
	COALESCE(revoke_method, ''), COALESCE(last_event, ''), last_event_at,
	COALESCE(last_request_id, ''), COALESCE(entity_id, ''), COALESCE(token_accessor, ''),
	COALESCE(display_name, ''), COALESCE(remote_address, ''), created_at, updated_at, vault_seen_at`

func scanLease(row pgx.Row) (Lease, error) {
	var l Lease
	err := row.Scan(&l.LeaseID, &l.State, &l.Mount, &l.Role, &l.Namespace, &l.Database,
		&l.DBUser, &l.DBUserHMAC, &l.IssuedAt, &l.RenewedAt, &l.FirstSeenAt, &l.ExpireAt,
		&l.ExpireSource, &l.ExpireEventAt, &l.TTLSeconds, &l.ExpireCheckedAt, &l.ExpireAttemptAt,
		&l.RevokedAt, &l.RevokeMethod, &l.LastEvent, &l.LastEventAt, &l.LastRequestID,
		&l.EntityID, &l.TokenAccessor, &l.DisplayName, &l.RemoteAddress, &l.CreatedAt, &l.UpdatedAt, &l.VaultSeenAt)
	if err != nil {
		return Lease{}, err
	}
	for _, t := range []**time.Time{&l.IssuedAt, &l.RenewedAt, &l.FirstSeenAt, &l.ExpireAt,
		&l.ExpireEventAt, &l.ExpireCheckedAt, &l.ExpireAttemptAt, &l.RevokedAt, &l.LastEventAt, &l.VaultSeenAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	l.CreatedAt = l.CreatedAt.UTC()
	l.UpdatedAt = l.UpdatedAt.UTC()
	return l, nil
}

// leaseWriteCols are the columns Apply writes, in the order of writeArgs.
var leaseWriteCols = []string{
	"state", "mount", "role", "namespace", "database", "db_user", "db_user_hmac",
	"issued_at", "renewed_at", "first_seen_at", "expire_at", "expire_source",
	"expire_event_at", "ttl_seconds", "expire_checked_at", "revoked_at", "revoke_method",
	"last_event", "last_event_at", "last_request_id", "entity_id", "token_accessor",
	"display_name", "remote_address",
}

// writeArgs returns the values of leaseWriteCols, NULL for empty strings.
func (l *Lease) writeArgs() []any {
	return []any{
		string(l.State), nullText(l.Mount), nullText(l.Role), nullText(l.Namespace),
		nullText(l.Database), nullText(l.DBUser), l.DBUserHMAC,
		l.IssuedAt, l.RenewedAt, l.FirstSeenAt, l.ExpireAt, nullText(string(l.ExpireSource)),
		l.ExpireEventAt, l.TTLSeconds, l.ExpireCheckedAt, l.RevokedAt, nullText(string(l.RevokeMethod)),
		nullText(string(l.LastEvent)), l.LastEventAt, nullText(l.LastRequestID), nullText(l.EntityID),
		nullText(l.TokenAccessor), nullText(l.DisplayName), nullText(l.RemoteAddress),
	}
}

// leaseColTypes are the PostgreSQL types of leaseWriteCols, in order.
var leaseColTypes = []string{
	"text", "text", "text", "text", "text", "text", "bool",
	"timestamptz", "timestamptz", "timestamptz", "timestamptz", "text",
	"timestamptz", "int8", "timestamptz", "timestamptz", "text",
	"text", "timestamptz", "text", "text", "text",
	"text", "text",
}

// leaseUpsertSQL writes whole lease rows, one per element of its array
// parameters ($1 the lease ids, then one array per leaseWriteCols column):
// new rows are inserted, existing ones overwritten. It returns each lease id
// and whether its row was inserted.
var leaseUpsertSQL = func() string {
	var b strings.Builder
	b.WriteString("INSERT INTO leases (lease_id, " + strings.Join(leaseWriteCols, ", ") + ")\n\tSELECT * FROM unnest($1::text[]")
	for i, t := range leaseColTypes {
		fmt.Fprintf(&b, ", $%d::%s[]", i+2, t)
	}
	b.WriteString(") AS x(lease_id, " + strings.Join(leaseWriteCols, ", ") + ")\n\tORDER BY lease_id\n\tON CONFLICT (lease_id) DO UPDATE SET ")
	for _, c := range leaseWriteCols {
		fmt.Fprintf(&b, "%s = EXCLUDED.%s, ", c, c)
	}
	// A new event makes the lease due for expiry resolution again at once
	// (ResolveExpiry otherwise waits ExpiryRetryAfter after an attempt).
	b.WriteString("expire_attempt_at = NULL, updated_at = now()\n\tRETURNING lease_id, xmax = 0")
	return b.String()
}()

// leaseRows holds lease rows column by column, the arguments of
// leaseUpsertSQL.
type leaseRows struct {
	n    int
	ids  []string
	cols [][]any
}

func (r *leaseRows) add(l *Lease) {
	if r.cols == nil {
		r.cols = make([][]any, len(leaseWriteCols))
	}
	r.n++
	r.ids = append(r.ids, l.LeaseID)
	for i, v := range l.writeArgs() {
		r.cols[i] = append(r.cols[i], v)
	}
}

// args converts the columns to typed arrays, NULL elements for nil values.
func (r *leaseRows) args() []any {
	args := make([]any, 0, 1+len(r.cols))
	args = append(args, r.ids)
	for i, col := range r.cols {
		switch leaseColTypes[i] {
		case "text":
			a := make([]*string, len(col))
			for j, v := range col {
				if s, ok := v.(string); ok {
					a[j] = &s
				}
			}
			args = append(args, a)
		case "bool":
			a := make([]bool, len(col))
			for j, v := range col {
				a[j] = v.(bool)
			}
			args = append(args, a)
		case "timestamptz":
			a := make([]*time.Time, len(col))
			for j, v := range col {
				a[j] = v.(*time.Time)
			}
			args = append(args, a)
		case "int8":
			a := make([]*int64, len(col))
			for j, v := range col {
				a[j] = v.(*int64)
			}
			args = append(args, a)
		}
	}
	return args
}

// sameWrite reports whether a and b would write the same values.
func sameWrite(a, b *Lease) bool {
	x, y := a.writeArgs(), b.writeArgs()
	for i := range x {
		if !sameValue(x[i], y[i]) {
			return false
		}
	}
	return true
}

func sameValue(a, b any) bool {
	switch a := a.(type) {
	case *time.Time:
		b := b.(*time.Time)
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return a.Equal(*b)
	case *int64:
		b := b.(*int64)
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return *a == *b
	}
	return a == b
}

func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Lease returns one lease, or ErrNotFound.
func (s *Store) Lease(ctx context.Context, leaseID string) (Lease, error) {
	l, err := scanLease(s.pool.QueryRow(ctx, "SELECT "+leaseSelect+" FROM leases WHERE lease_id = $1", leaseID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, fmt.Errorf("lease %q: %w", leaseID, ErrNotFound)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("lease %q: %w", leaseID, err)
	}
	return l, nil
}

// LeasesByUser returns the leases of one database user (plain name, or the
// HMAC the audit log shows), oldest first.
func (s *Store) LeasesByUser(ctx context.Context, database, dbUser string) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+leaseSelect+` FROM leases
		WHERE database = $1 AND db_user = $2
		ORDER BY first_seen_at NULLS LAST, lease_id`, database, dbUser)
	if err != nil {
		return nil, fmt.Errorf("leases of %s in %s: %w", dbUser, database, err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, fmt.Errorf("leases of %s in %s: %w", dbUser, database, err)
	}
	return ls, nil
}

// CountLeases returns the number of leases in each state; states with no
// lease are absent.
func (s *Store) CountLeases(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, "SELECT state, count(*) FROM leases GROUP BY state")
	if err != nil {
		return nil, fmt.Errorf("count leases: %w", err)
	}
	out := map[string]int{}
	var state string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		out[state] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count leases: %w", err)
	}
	return out, nil
}
