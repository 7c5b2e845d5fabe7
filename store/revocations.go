package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/leaseguard/leaseguard/schemas"
)

// Querier is what both a pool and a transaction offer.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Claim is the state of a revocation command when the revoker takes it.
type Claim struct {
	// Done: the command was already fully recorded; nothing is left to do.
	Done    bool
	Outcome schemas.Outcome
	// Attempts counts deliveries of this command, this one included.
	Attempts int
	// TargetXID is the drop transaction of an earlier attempt, if one got
	// as far as preparing it (valid when non-zero).
	TargetXID int64
}

// ClaimRevocation records that the revoker is handling cmd (or handles it
// again after a redelivery) and returns what earlier attempts left.
func ClaimRevocation(ctx context.Context, q Querier, cmd schemas.RevocationCommand) (Claim, error) {
	doc, err := json.Marshal(cmd)
	if err != nil {
		return Claim{}, fmt.Errorf("encode command: %w", err)
	}
	var c Claim
	var state string
	var outcome pgtype.Text
	var xid pgtype.Int8
	err = q.QueryRow(ctx, `
		INSERT INTO revocations (command_id, database, db_user, lease_id, rule, issuer, actor, emergency, state, command)
		VALUES ($1, $2, $3, NULLIF($4, ''), $5, NULLIF($6, ''), NULLIF($7, ''), $8, 'in_progress', $9)
		ON CONFLICT (command_id) DO UPDATE SET attempts = revocations.attempts + 1
		RETURNING state, outcome, attempts, target_xid`,
		cmd.ID, cmd.Database, cmd.DBUser, cmd.LeaseID, cmd.Rule, cmd.Issuer, cmd.Actor, cmd.Emergency, doc).
		Scan(&state, &outcome, &c.Attempts, &xid)
	if err != nil {
		return Claim{}, fmt.Errorf("claim revocation %s: %w", cmd.ID, err)
	}
	c.Done = state == "done"
	c.Outcome = schemas.Outcome(outcome.String)
	if xid.Valid {
		c.TargetXID = xid.Int64
	}
	return c, nil
}

// ClaimRevocations is ClaimRevocation for many commands in one statement.
// Claims are in the order of cmds; a command id repeated in cmds is one
// row, each occurrence counted as an attempt, and every occurrence gets the
// same claim.
func ClaimRevocations(ctx context.Context, q Querier, cmds []schemas.RevocationCommand) ([]Claim, error) {
	claims := make([]Claim, len(cmds))
	if len(cmds) == 0 {
		return claims, nil
	}
	var (
		ids, dbs, users, leases, rules, issuers, actors []string
		emergency                                       []bool
		docs                                            [][]byte
		counts                                          []int32
	)
	seen := make(map[string]int, len(cmds))
	for _, cmd := range cmds {
		if k, ok := seen[cmd.ID]; ok {
			counts[k]++
			continue
		}
		seen[cmd.ID] = len(ids)
		counts = append(counts, 1)
		doc, err := json.Marshal(cmd)
		if err != nil {
			return nil, fmt.Errorf("encode command %s: %w", cmd.ID, err)
		}
		ids, dbs, users = append(ids, cmd.ID), append(dbs, cmd.Database), append(users, cmd.DBUser)
		leases, rules = append(leases, cmd.LeaseID), append(rules, cmd.Rule)
		issuers, actors = append(issuers, cmd.Issuer), append(actors, cmd.Actor)
		emergency, docs = append(emergency, cmd.Emergency), append(docs, doc)
	}
	// ORDER BY command_id: concurrent claimers lock the rows in one order.
	rows, err := q.Query(ctx, `
		INSERT INTO revocations (command_id, database, db_user, lease_id, rule, issuer, actor, emergency, state, command, attempts)
		SELECT id, db, u, NULLIF(l, ''), r, NULLIF(i, ''), NULLIF(a, ''), e, 'in_progress', c, n
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::boolean[], $9::jsonb[], $10::int[])
			AS t(id, db, u, l, r, i, a, e, c, n)
		ORDER BY id
		ON CONFLICT (command_id) DO UPDATE SET attempts = revocations.attempts + EXCLUDED.attempts
		RETURNING command_id, state, outcome, attempts, target_xid`,
		ids, dbs, users, leases, rules, issuers, actors, emergency, docs, counts)
	if err != nil {
		return nil, fmt.Errorf("claim %d revocations: %w", len(ids), err)
	}
	byID := make(map[string]Claim, len(ids))
	var id, state string
	var outcome pgtype.Text
	var xid pgtype.Int8
	var attempts int
	if _, err := pgx.ForEachRow(rows, []any{&id, &state, &outcome, &attempts, &xid}, func() error {
		c := Claim{Done: state == "done", Outcome: schemas.Outcome(outcome.String), Attempts: attempts}
		if xid.Valid {
			c.TargetXID = xid.Int64
		}
		byID[id] = c
		return nil
	}); err != nil {
		return nil, fmt.Errorf("claim %d revocations: %w", len(ids), err)
	}
	for i, cmd := range cmds {
		c, ok := byID[cmd.ID]
		if !ok {
			return nil, fmt.Errorf("claim revocation %s: no row returned", cmd.ID)
		}
		claims[i] = c
	}
	return claims, nil
}

// SetTargetXID records the id of the drop transaction in the target
// database before that transaction commits.
func SetTargetXID(ctx context.Context, q Querier, commandIDs []string, xid int64) error {
	_, err := q.Exec(ctx, `UPDATE revocations SET target_xid = $2 WHERE command_id = ANY($1) AND state = 'in_progress'`, commandIDs, xid)
	if err != nil {
		return fmt.Errorf("record target transaction: %w", err)
	}
	return nil
}

// TargetXIDs returns the drop transaction ids recorded for those of
// commandIDs that have one.
func TargetXIDs(ctx context.Context, q Querier, commandIDs []string) (map[string]int64, error) {
	out := make(map[string]int64)
	if len(commandIDs) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT command_id, target_xid FROM revocations
		WHERE command_id = ANY($1) AND target_xid IS NOT NULL`, commandIDs)
	if err != nil {
		return nil, fmt.Errorf("read target transactions: %w", err)
	}
	var id string
	var xid int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &xid}, func() error {
		out[id] = xid
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read target transactions: %w", err)
	}
	return out, nil
}

// NoteEngineDrop keeps, on the claim of a command still in progress, the
// result of a drop its target engine carried out and verified (MySQL,
// MariaDB), before the outcome is recorded with its evidence. Such an
// engine has no transaction id to ask about after a crash (PostgreSQL's
// target_xid): a redelivery that finds the user absent reads this to tell
// its own earlier drop from someone else's (EngineDrops).
func NoteEngineDrop(ctx context.Context, q Querier, res schemas.RevocationResult) error {
	doc, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result %s: %w", res.CommandID, err)
	}
	if _, err := q.Exec(ctx, `UPDATE revocations SET result = $2 WHERE command_id = $1 AND state = 'in_progress'`,
		res.CommandID, doc); err != nil {
		return fmt.Errorf("note the drop of %s: %w", res.CommandID, err)
	}
	return nil
}

// EngineDrop returns the drop NoteEngineDrop kept for a command still in
// progress; ok is false when there is none.
func EngineDrop(ctx context.Context, q Querier, commandID string) (res schemas.RevocationResult, ok bool, err error) {
	var doc []byte
	err = q.QueryRow(ctx, `SELECT result FROM revocations WHERE command_id = $1 AND state = 'in_progress' AND result IS NOT NULL`,
		commandID).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, false, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("read the noted drop of %s: %w", commandID, err)
	}
	if err := json.Unmarshal(doc, &res); err != nil {
		return res, false, fmt.Errorf("decode the noted drop of %s: %w", commandID, err)
	}
	return res, true, nil
}

// Finish is one outcome for FinishRevocations.
type Finish struct {
	Result     schemas.RevocationResult
	EvidenceID string
}

// FinishRevocations records the outcomes of commands inside tx, in one
// statement (the caller appends the evidence in the same transaction).
// fresh[i] reports whether fs[i] was recorded now; it is false
// for a command already finished, and for a command id repeated in fs after
// its first occurrence (as if they had been recorded one after another).
func FinishRevocations(ctx context.Context, tx pgx.Tx, fs []Finish, at time.Time) ([]bool, error) {
	fresh := make([]bool, len(fs))
	if len(fs) == 0 {
		return fresh, nil
	}
	var ids, outcomes, evIDs []string
	var docs [][]byte
	first := make(map[string]int, len(fs))
	for i, f := range fs {
		if _, ok := first[f.Result.CommandID]; ok {
			continue
		}
		first[f.Result.CommandID] = i
		doc, err := json.Marshal(f.Result)
		if err != nil {
			return nil, fmt.Errorf("encode result %s: %w", f.Result.CommandID, err)
		}
		ids, outcomes = append(ids, f.Result.CommandID), append(outcomes, string(f.Result.Outcome))
		docs, evIDs = append(docs, doc), append(evIDs, f.EvidenceID)
	}
	rows, err := tx.Query(ctx, `
		UPDATE revocations AS r SET state = 'done', outcome = t.o, result = t.res, finished_at = $5, evidence_id = NULLIF(t.ev, '')
		FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[]) AS t(id, o, res, ev)
		WHERE r.command_id = t.id AND r.state = 'in_progress'
		RETURNING r.command_id`, ids, outcomes, docs, evIDs, at)
	if err != nil {
		return nil, fmt.Errorf("finish %d revocations: %w", len(ids), err)
	}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		if i, ok := first[id]; ok {
			fresh[i] = true
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("finish %d revocations: %w", len(ids), err)
	}
	return fresh, nil
}

// Revocation is a recorded revocation.
type Revocation struct {
	CommandID  string
	Database   string
	DBUser     string
	LeaseID    string
	Rule       string
	State      string
	Attempts   int
	Outcome    schemas.Outcome
	Result     *schemas.RevocationResult
	ReceivedAt time.Time
	FinishedAt *time.Time
	EvidenceID string
}

// ErrNoRevocation is returned when a command id is unknown.
var ErrNoRevocation = errors.New("no such revocation")

// GetRevocation reads one revocation by command id.
func GetRevocation(ctx context.Context, q Querier, commandID string) (Revocation, error) {
	rows, err := q.Query(ctx, revocationSelect+` WHERE command_id = $1`, commandID)
	if err != nil {
		return Revocation{}, err
	}
	out, err := scanRevocations(rows)
	if err != nil {
		return Revocation{}, err
	}
	if len(out) == 0 {
		return Revocation{}, ErrNoRevocation
	}
	return out[0], nil
}

// RevocationsByUser lists revocations of one database user, oldest first.
func RevocationsByUser(ctx context.Context, q Querier, database, dbUser string) ([]Revocation, error) {
	rows, err := q.Query(ctx, revocationSelect+` WHERE database = $1 AND db_user = $2 ORDER BY received_at, command_id`, database, dbUser)
	if err != nil {
		return nil, err
	}
	return scanRevocations(rows)
}

const revocationSelect = `
	SELECT command_id, database, db_user, coalesce(lease_id, ''), rule, state, attempts, coalesce(outcome, ''),
	       result, received_at, finished_at, coalesce(evidence_id, '')
	FROM revocations`

func scanRevocations(rows pgx.Rows) ([]Revocation, error) {
	var out []Revocation
	var r Revocation
	var outcome string
	var result []byte
	var finished pgtype.Timestamptz
	_, err := pgx.ForEachRow(rows, []any{&r.CommandID, &r.Database, &r.DBUser, &r.LeaseID, &r.Rule, &r.State, &r.Attempts,
		&outcome, &result, &r.ReceivedAt, &finished, &r.EvidenceID}, func() error {
		c := r
		c.Outcome = schemas.Outcome(outcome)
		if len(result) > 0 {
			var res schemas.RevocationResult
			if err := json.Unmarshal(result, &res); err != nil {
				return fmt.Errorf("decode result of %s: %w", c.CommandID, err)
			}
			c.Result = &res
		}
		if finished.Valid {
			t := finished.Time
			c.FinishedAt = &t
		}
		out = append(out, c)
		return nil
	})
	return out, err
}
