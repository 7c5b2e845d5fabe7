package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
)

// ValidUntilReader reads pg_roles.rolvaliduntil of users in one database.
// Users that do not exist, or whose valid-until is NULL or infinity, are
// missing from the map.
type ValidUntilReader interface {
	ValidUntil(ctx context.Context, database string, users []string) (map[string]time.Time, error)
}

// RoleTTLs are the default TTLs of Vault roles, keyed "mount/role" (mount
// without its trailing slash) or "role"; the first wins.
type RoleTTLs map[string]time.Duration

func (r RoleTTLs) lookup(mount, role string) (time.Duration, bool) {
	if role == "" {
		return 0, false
	}
	if mount != "" {
		if d, ok := r[strings.TrimSuffix(mount, "/")+"/"+role]; ok && d > 0 {
			return d, true
		}
	}
	d, ok := r[role]
	return d, ok && d > 0
}

// DefaultResolveLimit is the batch size of ResolveExpiry when limit <= 0.
const DefaultResolveLimit = 1000

// expiryCandidate is an active lease whose expiry must be (re)read, as it was
// when read: the update is a compare-and-set on these values.
type expiryCandidate struct {
	leaseID, database, user, mount, role string
	hmac                                 bool
	issued, renewed, firstSeen           *time.Time
	expireAt, checked                    *time.Time
	source                               schemas.ExpireSource
	ttl                                  *int64
}

// ResolveExpiry gives an expiry to up to limit active leases that have none
// from an event: those with no expire_at, and those whose pg_valid_until or
// role_default expiry a renewal made stale. Leases attempted longest ago
// come first, so leases that cannot be resolved do not starve the others.
//
// For each database it asks r once, for all the plain users of those leases,
// and takes rolvaliduntil as the expiry as it is (Vault sets it 5 s after the
// lease expiry; keeping the later time errs toward not revoking early).
// Leases still without an answer (user an HMAC or not visible, or r failed
// for that database) fall back to GREATEST(issued_at, renewed_at) + the
// role's default TTL, when ttls has one; a stale pg_valid_until is replaced
// only by a later fallback. After a reader error the lease stays due for a
// re-read; otherwise expire_checked_at = now. An expiry from an event is
// never overwritten, and a lease that changed since it was read is left for
// the next call.
//
// A lease attempted without result (an HMAC'd user with no role TTL, a
// user not in pg_roles, a database that could not be read) is attempted
// again only ExpiryRetryAfter later, or as soon as a new event for it is
// applied: without that, every pass (one per ingest batch that issued)
// would re-read the same unresolvable leases.
//
// A reader error for one database does not stop the others: the result is
// the number of leases given an expiry, and the reader errors joined.
func (s *Store) ResolveExpiry(ctx context.Context, r ValidUntilReader, ttls RoleTTLs, now time.Time, limit int) (resolved int, err error) {
	if limit <= 0 {
		limit = DefaultResolveLimit
	}
	now = dbTime(now)
	cands, err := s.expiryCandidates(ctx, limit, now.Add(-ExpiryRetryAfter))
	if err != nil || len(cands) == 0 {
		return 0, err
	}

	users := map[string][]string{}
	for _, c := range cands {
		if c.database != "" && c.user != "" && !c.hmac {
			users[c.database] = append(users[c.database], c.user)
		}
	}
	dbs := make([]string, 0, len(users))
	for db := range users {
		dbs = append(dbs, db)
	}
	sort.Strings(dbs)
	validUntil := map[string]map[string]time.Time{}
	failed := map[string]bool{}
	var readErrs []error
	for _, db := range dbs {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		us := users[db]
		slices.Sort(us)
		us = slices.Compact(us)
		m, err := r.ValidUntil(ctx, db, us)
		if err != nil {
			failed[db] = true
			readErrs = append(readErrs, fmt.Errorf("valid until in database %q: %w", db, err))
			continue
		}
		validUntil[db] = m
	}

	// One statement for the whole pass: a per-lease UPDATE ran on a
	// cached generic plan that scanned an index instead of the primary key
	// once the ledger had grown, and held row locks ingest waited for.
	n := len(cands)
	var (
		ids                              = make([]string, n)
		sources, oldSources              = make([]*string, n), make([]*string, n)
		expires, checks, oldExpires      = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		oldChecks, oldRenewed, oldIssued = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		ttlsOut                          = make([]*int64, n)
		willResolve                      = make(map[string]bool, n)
	)
	for i := range cands {
		c := &cands[i]
		u := decideExpiry(c, validUntil, failed, ttls, now)
		ids[i] = c.leaseID
		expires[i], sources[i], ttlsOut[i], checks[i] = u.expireAt, textPtr(string(u.source)), u.ttl, u.checked
		oldSources[i], oldExpires[i], oldChecks[i] = textPtr(string(c.source)), c.expireAt, c.checked
		oldRenewed[i], oldIssued[i] = c.renewed, c.issued
		if u.resolved {
			willResolve[c.leaseID] = true
		}
	}
	// Candidates are in lease id order, as Apply locks: no deadlock.
	// Planned for each call (customPlan): a plan cached while the ledger
	// was small joins by scanning it, once per lease.
	rows, err := s.pool.Query(ctx, `UPDATE leases AS l SET expire_at = u.expire_at, expire_source = u.source,
			ttl_seconds = u.ttl, expire_checked_at = u.checked, expire_attempt_at = $1, updated_at = now()
		FROM (SELECT * FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::bigint[], $6::timestamptz[],
			$7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[])
			AS t(lease_id, expire_at, source, ttl, checked, old_source, old_expire_at, old_checked, old_renewed, old_issued)
			ORDER BY lease_id) AS u
		WHERE l.lease_id = u.lease_id AND l.expiry_judged_at IS NULL
		  AND l.expire_source IS NOT DISTINCT FROM u.old_source
		  AND l.expire_at IS NOT DISTINCT FROM u.old_expire_at
		  AND l.expire_checked_at IS NOT DISTINCT FROM u.old_checked
		  AND l.renewed_at IS NOT DISTINCT FROM u.old_renewed
		  AND l.issued_at IS NOT DISTINCT FROM u.old_issued
		RETURNING l.lease_id`,
		customPlan, now, ids, expires, sources, ttlsOut, checks, oldSources, oldExpires, oldChecks, oldRenewed, oldIssued)
	if err == nil {
		var id string
		_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
			if willResolve[id] {
				resolved++
			}
			return nil
		})
	}
	if err != nil {
		return 0, errors.Join(append([]error{fmt.Errorf("write expiry: %w", err)}, readErrs...)...)
	}
	return resolved, errors.Join(readErrs...)
}

// customPlan, as the first argument of a query, has it planned for its
// parameters on every call (an unnamed prepared statement) instead of on a
// plan PostgreSQL may cache after five calls. A statement joining a table
// to unnest($1) needs it: a generic plan made while
// the table was small scans the table for every element once it has grown.
const customPlan = pgx.QueryExecModeExec

// ExpiryRetryAfter is how long ResolveExpiry leaves a lease it attempted
// without result before it attempts it again (a new event for the lease
// makes it due at once).
const ExpiryRetryAfter = 30 * time.Second

// expiryCandidates returns up to limit leases needing expiry that were
// never attempted, or last attempted at or before retryBefore.
func (s *Store) expiryCandidates(ctx context.Context, limit int, retryBefore time.Time) ([]expiryCandidate, error) {
	rows, err := s.pool.Query(ctx, `SELECT lease_id, COALESCE(database, ''), COALESCE(db_user, ''),
			db_user_hmac, COALESCE(mount, ''), COALESCE(role, ''), issued_at, renewed_at,
			first_seen_at, expire_at, expire_checked_at, COALESCE(expire_source, ''), ttl_seconds
		FROM leases
		WHERE expiry_judged_at IS NULL
		  AND (expire_at IS NULL
		       OR (expire_checked_at IS NULL AND expire_source IN ('pg_valid_until', 'role_default')))
		  AND (expire_attempt_at IS NULL OR expire_attempt_at <= $2)
		ORDER BY expire_attempt_at NULLS FIRST, lease_id
		LIMIT $1`, limit, retryBefore)
	if err != nil {
		return nil, fmt.Errorf("leases needing expiry: %w", err)
	}
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (expiryCandidate, error) {
		var c expiryCandidate
		err := r.Scan(&c.leaseID, &c.database, &c.user, &c.hmac, &c.mount, &c.role, &c.issued,
			&c.renewed, &c.firstSeen, &c.expireAt, &c.checked, &c.source, &c.ttl)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("leases needing expiry: %w", err)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].leaseID < cands[j].leaseID })
	return cands, nil
}

type expiryUpdate struct {
	expireAt *time.Time
	source   schemas.ExpireSource
	ttl      *int64
	checked  *time.Time
	// resolved: the lease got an expiry this round.
	resolved bool
}

func decideExpiry(c *expiryCandidate, validUntil map[string]map[string]time.Time, failed map[string]bool, ttls RoleTTLs, now time.Time) expiryUpdate {
	plain := c.database != "" && c.user != "" && !c.hmac
	if plain {
		if vu, ok := validUntil[c.database][c.user]; ok {
			vu = dbTime(vu)
			return expiryUpdate{expireAt: &vu, source: schemas.ExpireFromValidUntil, checked: &now, resolved: true}
		}
	}
	// Unchanged unless a fallback applies.
	u := expiryUpdate{expireAt: c.expireAt, source: c.source, ttl: c.ttl, checked: c.checked}
	transient := plain && failed[c.database]
	if !transient && c.expireAt != nil {
		// A stale value and nothing better to read: stop re-reading.
		u.checked = &now
	}
	d, ok := ttls.lookup(c.mount, c.role)
	base := c.issued
	if c.renewed != nil && (base == nil || c.renewed.After(*base)) {
		base = c.renewed
	}
	if base == nil {
		base = c.firstSeen
	}
	if !ok || base == nil {
		return u
	}
	fb := dbTime(base.Add(d))
	secs := int64(d / time.Second)
	if c.expireAt == nil || c.source == schemas.ExpireFromRoleDefault || fb.After(*c.expireAt) {
		u.expireAt, u.source, u.ttl = &fb, schemas.ExpireFromRoleDefault, &secs
	}
	u.resolved = true
	if transient {
		u.checked = nil
	} else {
		u.checked = &now
	}
	return u
}
