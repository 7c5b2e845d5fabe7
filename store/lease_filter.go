package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// LeaseFilter selects the leases an operator's revocation names. Exactly
// one of DBUsers, LeaseID, Prefix, EntityID and TokenAccessor is set;
// Database, when set, narrows the selection to one target.
type LeaseFilter struct {
	// DBUsers matches leases whose plain user name is one of these.
	DBUsers []string
	LeaseID string
	// Prefix matches that lease id or the ids under Prefix + "/" (a
	// trailing slash is implied), the way Vault's revoke-prefix does.
	Prefix   string
	EntityID string
	// TokenAccessor is compared with the accessor as the audit log shows
	// it (an HMAC unless the audit device was tuned otherwise).
	TokenAccessor string
	Database      string
}

// Validate reports a filter that does not name exactly one criterion.
func (f LeaseFilter) Validate() error {
	n := 0
	for _, set := range []bool{len(f.DBUsers) > 0, f.LeaseID != "", f.Prefix != "", f.EntityID != "", f.TokenAccessor != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("lease filter: exactly one of db users, lease id, prefix, entity id and token accessor is required")
	}
	return nil
}

// LeasesForSelector returns the leases that f selects, in every state,
// ordered by database and user, live leases and the most recent first
// within one user. Deciding which of them still need a revocation (the user
// may already be gone) is the caller's: it needs the target database.
func LeasesForSelector(ctx context.Context, q Querier, f LeaseFilter) ([]Lease, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var where string
	var args []any
	switch {
	case len(f.DBUsers) > 0:
		where, args = "db_user = ANY($1::text[]) AND NOT db_user_hmac", []any{f.DBUsers}
	case f.LeaseID != "":
		where, args = "lease_id = $1", []any{f.LeaseID}
	case f.Prefix != "":
		lo, hi := prefixRange(f.Prefix)
		where, args = "(lease_id = $1 OR (lease_id >= $2 AND lease_id < $3))", []any{f.Prefix, lo, hi}
	case f.EntityID != "":
		where, args = "entity_id = $1", []any{f.EntityID}
	default:
		where, args = "token_accessor = $1", []any{f.TokenAccessor}
	}
	if f.Database != "" {
		args = append(args, f.Database)
		where += fmt.Sprintf(" AND database = $%d", len(args))
	}
	rows, err := q.Query(ctx, "SELECT "+leaseSelect+" FROM leases WHERE "+where+
		` ORDER BY database NULLS LAST, db_user NULLS LAST, (state = 'active') DESC,
		first_seen_at DESC NULLS LAST, lease_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("select leases: %w", err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, fmt.Errorf("select leases: %w", err)
	}
	return ls, nil
}

// LeasesOfUsers returns the live (active) leases of the named plain users
// in one database, keyed by user; the most recent lease of a user wins.
func LeasesOfUsers(ctx context.Context, q Querier, database string, users []string) (map[string]Lease, error) {
	rows, err := q.Query(ctx, "SELECT "+leaseSelect+` FROM leases
		WHERE database = $1 AND db_user = ANY($2::text[]) AND NOT db_user_hmac AND state = 'active'
		ORDER BY db_user, first_seen_at DESC NULLS LAST, lease_id`, database, users)
	if err != nil {
		return nil, fmt.Errorf("leases of users in %s: %w", database, err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, fmt.Errorf("leases of users in %s: %w", database, err)
	}
	out := make(map[string]Lease, len(ls))
	for _, l := range ls {
		if _, seen := out[l.DBUser]; !seen {
			out[l.DBUser] = l
		}
	}
	return out, nil
}

// RevocationEvidence returns the evidence event recorded for each of the
// commands, keyed by command id, as the exact bytes stored in the outbox.
// Commands not recorded (yet) are missing from the result.
func RevocationEvidence(ctx context.Context, q Querier, commandIDs []string) (map[string][]byte, error) {
	rows, err := q.Query(ctx, `SELECT r.command_id, e.event FROM revocations AS r
		JOIN evidence_outbox AS e ON e.id = r.evidence_id
		WHERE r.command_id = ANY($1::text[])`, commandIDs)
	if err != nil {
		return nil, fmt.Errorf("read revocation evidence: %w", err)
	}
	out := make(map[string][]byte, len(commandIDs))
	var id string
	var event []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &event}, func() error {
		out[id] = append([]byte(nil), event...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read revocation evidence: %w", err)
	}
	return out, nil
}

// UnfinishedRevocations returns the revocations of rule that were claimed
// but have no recorded outcome (state in_progress), oldest first.
func UnfinishedRevocations(ctx context.Context, q Querier, rule string) ([]Revocation, error) {
	rows, err := q.Query(ctx, revocationSelect+` WHERE state = 'in_progress' AND rule = $1 ORDER BY received_at, command_id`, rule)
	if err != nil {
		return nil, fmt.Errorf("unfinished revocations: %w", err)
	}
	out, err := scanRevocations(rows)
	if err != nil {
		return nil, fmt.Errorf("unfinished revocations: %w", err)
	}
	return out, nil
}
