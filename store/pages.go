package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
)

// Paged and keyed reads (the admin API's, the command line's): pages of
// leases and findings, and the recorded revocations with their commands.

// LeasePage selects one page of leases, ordered by lease id.
type LeasePage struct {
	// State, DBUser, EntityID and Database filter when set.
	State    LeaseState
	DBUser   string
	EntityID string
	Database string
	// After is the last lease id of the previous page ("" for the first).
	After string
	Limit int
}

// ListLeases returns up to p.Limit leases with ids after p.After that match
// its filters, in lease id order.
func ListLeases(ctx context.Context, q Querier, p LeasePage) ([]Lease, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("list leases: limit %d is not positive", p.Limit)
	}
	rows, err := q.Query(ctx, "SELECT "+leaseSelect+` FROM leases
		WHERE lease_id > $1
		  AND ($2 = '' OR state = $2)
		  AND ($3 = '' OR db_user = $3)
		  AND ($4 = '' OR entity_id = $4)
		  AND ($5 = '' OR database = $5)
		ORDER BY lease_id
		LIMIT $6`, p.After, string(p.State), p.DBUser, p.EntityID, p.Database, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return ls, nil
}

// FindingPage selects one page of findings, the most recent first.
type FindingPage struct {
	// Rule, DBUser and Database filter when set.
	Rule     string
	DBUser   string
	Database string
	// BeforeTime and BeforeID are the detection time and id of the last
	// finding of the previous page (zero time for the first page).
	BeforeTime time.Time
	BeforeID   string
	Limit      int
}

// FindingRecord is a recorded finding and the id of its evidence event.
type FindingRecord struct {
	Finding    schemas.Finding
	EvidenceID string
	// DetectedAt is the stored detection time, the paging key with the id.
	DetectedAt time.Time
}

// ListFindings returns up to p.Limit findings that match its filters,
// ordered by detection time and id, both descending.
func ListFindings(ctx context.Context, q Querier, p FindingPage) ([]FindingRecord, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("list findings: limit %d is not positive", p.Limit)
	}
	var before *time.Time
	if !p.BeforeTime.IsZero() {
		before = &p.BeforeTime
	}
	rows, err := q.Query(ctx, `SELECT finding, coalesce(evidence_id, ''), detected_at FROM findings
		WHERE ($1::timestamptz IS NULL OR (detected_at, id) < ($1, $2))
		  AND ($3 = '' OR rule = $3)
		  AND ($4 = '' OR db_user = $4)
		  AND ($5 = '' OR database = $5)
		ORDER BY detected_at DESC, id DESC
		LIMIT $6`, before, p.BeforeID, p.Rule, p.DBUser, p.Database, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	var out []FindingRecord
	var doc []byte
	var evidenceID string
	var detected time.Time
	_, err = pgx.ForEachRow(rows, []any{&doc, &evidenceID, &detected}, func() error {
		r := FindingRecord{EvidenceID: evidenceID, DetectedAt: detected.UTC()}
		if err := json.Unmarshal(doc, &r.Finding); err != nil {
			return fmt.Errorf("decode finding: %w", err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	return out, nil
}

// CommandRecord is a recorded revocation and the command it carries out.
type CommandRecord struct {
	Revocation
	Command schemas.RevocationCommand
}

// RevocationsByCommandIDs returns the recorded revocations of the given
// commands, ordered by database, user and command id. Unknown ids are
// missing from the result.
func RevocationsByCommandIDs(ctx context.Context, q Querier, commandIDs []string) ([]CommandRecord, error) {
	rows, err := q.Query(ctx, `SELECT command_id, command FROM revocations WHERE command_id = ANY($1::text[])`, commandIDs)
	if err != nil {
		return nil, fmt.Errorf("read revocation commands: %w", err)
	}
	cmds := map[string]schemas.RevocationCommand{}
	var id string
	var doc []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &doc}, func() error {
		var c schemas.RevocationCommand
		if err := json.Unmarshal(doc, &c); err != nil {
			return fmt.Errorf("decode command %s: %w", id, err)
		}
		cmds[id] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read revocation commands: %w", err)
	}
	rows, err = q.Query(ctx, revocationSelect+` WHERE command_id = ANY($1::text[]) ORDER BY database, db_user, command_id`, commandIDs)
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	revs, err := scanRevocations(rows)
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	out := make([]CommandRecord, len(revs))
	for i, r := range revs {
		out[i] = CommandRecord{Revocation: r, Command: cmds[r.CommandID]}
	}
	return out, nil
}

// CommandKey is what an operator command's id is derived from, besides the
// request id.
type CommandKey struct {
	CommandID string
	Database  string
	DBUser    string
	LeaseID   string
	Reason    string
	Actor     string
}

// CommandKeysOfRule returns the key parts of every recorded command of
// rule, oldest first.
func CommandKeysOfRule(ctx context.Context, q Querier, rule string) ([]CommandKey, error) {
	rows, err := q.Query(ctx, `SELECT command_id, database, db_user, coalesce(lease_id, ''),
		coalesce(command->>'reason', ''), coalesce(command->>'actor', '')
		FROM revocations WHERE rule = $1 ORDER BY received_at, command_id`, rule)
	if err != nil {
		return nil, fmt.Errorf("commands of %s: %w", rule, err)
	}
	var out []CommandKey
	var k CommandKey
	_, err = pgx.ForEachRow(rows, []any{&k.CommandID, &k.Database, &k.DBUser, &k.LeaseID, &k.Reason, &k.Actor}, func() error {
		out = append(out, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commands of %s: %w", rule, err)
	}
	return out, nil
}
