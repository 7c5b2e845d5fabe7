package evidence

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// AppendMany appends events to the outbox in order within the caller's
// transaction, like Append for each, but taking the chain head lock once and
// writing all rows in one statement. Events whose id is already stored (or
// repeated in evs) are returned as stored and do not advance the chain.
func AppendMany(ctx context.Context, tx pgx.Tx, evs []Event) ([]Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		if _, err := checkEvent(ev); err != nil {
			return nil, err
		}
		ids[i] = ev.ID
	}
	var headSeq int64
	var headHash string
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM evidence_chain_head WHERE id = 1 FOR UPDATE`).Scan(&headSeq, &headHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoChainHead
	}
	if err != nil {
		return nil, fmt.Errorf("lock evidence chain head: %w", err)
	}
	stored := map[string]Event{}
	rows, err := tx.Query(ctx, `SELECT id, event FROM evidence_outbox WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read stored evidence: %w", err)
	}
	var id string
	var raw []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &raw}, func() error {
		ev, err := decodeEvent(raw)
		if err != nil {
			return fmt.Errorf("read evidence %s: %w", id, err)
		}
		stored[id] = ev
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]Event, len(evs))
	var seqs []int64
	var newIDs, types, subjects, prevs, hashes []string
	var bodies [][]byte
	for i, ev := range evs {
		if s, ok := stored[ev.ID]; ok {
			out[i] = s
			continue
		}
		ev.checked = nil // sealing changes it; what is returned is as stored
		if err := Seal(&ev, headHash, headSeq+1); err != nil {
			return nil, err
		}
		body, err := encodeJSON(ev)
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		headSeq, headHash = ev.ChainSeq, ev.Hash
		stored[ev.ID] = ev
		out[i] = ev
		seqs = append(seqs, ev.ChainSeq)
		newIDs = append(newIDs, ev.ID)
		types = append(types, ev.Type)
		subjects = append(subjects, ev.Subject)
		prevs = append(prevs, ev.PrevHash)
		hashes = append(hashes, ev.Hash)
		bodies = append(bodies, body)
	}
	if len(newIDs) == 0 {
		return out, nil
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO evidence_outbox (seq, id, type, subject, prev_hash, hash, event)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
		ON CONFLICT (id) DO NOTHING`, seqs, newIDs, types, subjects, prevs, hashes, bodies)
	if err != nil {
		return nil, fmt.Errorf("insert %d evidence events: %w", len(newIDs), err)
	}
	if int(tag.RowsAffected()) != len(newIDs) {
		// Only reachable if ids appeared without the head lock; the chain
		// must not advance over a gap.
		return nil, fmt.Errorf("insert evidence: %d of %d rows written", tag.RowsAffected(), len(newIDs))
	}
	if _, err := tx.Exec(ctx, `UPDATE evidence_chain_head SET seq = $1, hash = $2 WHERE id = 1`, headSeq, headHash); err != nil {
		return nil, fmt.Errorf("advance evidence chain head: %w", err)
	}
	return out, nil
}
