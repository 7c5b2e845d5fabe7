package evidence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The outbox is the evidence_outbox table (store/migrations/002_evidence.sql)
// in the store schema: the caller's connection must have it on its
// search_path, as the store package arranges.

// Querier is what reading the outbox needs: a pool, a connection or a
// transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNoChainHead means the evidence_chain_head row is missing: the
// migration did not run, or someone deleted it.
var ErrNoChainHead = errors.New("evidence: chain head row is missing")

// Append seals ev as the next event of the chain and writes it to the
// outbox, inside tx, the caller's transaction: the evidence commits or rolls
// back with the outcome it records. It returns the event as stored.
//
// Append locks the chain head row until tx ends, which serialises every
// appender in every process; call it last, just before commit. In a
// REPEATABLE READ or SERIALIZABLE transaction a concurrent append makes it
// fail with a serialization error (SQLSTATE 40001): retry the transaction.
//
// Appending is idempotent on the event id: if an event with ev.ID is already
// in the outbox, Append returns that stored event unchanged and the chain
// does not advance.
func Append(ctx context.Context, tx pgx.Tx, ev Event) (Event, error) {
	if err := checkEvent(ev); err != nil {
		return Event{}, err
	}
	var headSeq int64
	var headHash string
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM evidence_chain_head WHERE id = 1 FOR UPDATE`).Scan(&headSeq, &headHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Event{}, ErrNoChainHead
	}
	if err != nil {
		return Event{}, fmt.Errorf("lock evidence chain head: %w", err)
	}
	// Under the head lock no other appender can insert this id, so the
	// check and the insert below cannot race.
	if stored, ok, err := storedEvent(ctx, tx, ev.ID); err != nil || ok {
		return stored, err
	}
	if err := Seal(&ev, headHash, headSeq+1); err != nil {
		return Event{}, err
	}
	raw, err := encodeJSON(ev)
	if err != nil {
		return Event{}, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO evidence_outbox (seq, id, type, subject, prev_hash, hash, event)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO NOTHING`,
		ev.ChainSeq, ev.ID, ev.Type, ev.Subject, ev.PrevHash, ev.Hash, raw)
	if err != nil {
		return Event{}, fmt.Errorf("insert evidence %s: %w", ev.ID, err)
	}
	if tag.RowsAffected() == 0 {
		// Only reachable if the id appeared without the head lock
		// (a hand-written row); the chain must not advance.
		stored, ok, err := storedEvent(ctx, tx, ev.ID)
		if err == nil && !ok {
			err = fmt.Errorf("insert evidence %s: conflict, but no stored event", ev.ID)
		}
		return stored, err
	}
	if _, err := tx.Exec(ctx, `UPDATE evidence_chain_head SET seq = $1, hash = $2 WHERE id = 1`, ev.ChainSeq, ev.Hash); err != nil {
		return Event{}, fmt.Errorf("advance evidence chain head: %w", err)
	}
	return ev, nil
}

// ErrNotFound: no evidence event has that id.
var ErrNotFound = errors.New("not found")

// RawEvent returns the exact stored bytes of one evidence event, or
// ErrNotFound.
func RawEvent(ctx context.Context, q Querier, id string) ([]byte, error) {
	var raw []byte
	err := q.QueryRow(ctx, `SELECT event FROM evidence_outbox WHERE id = $1`, id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("evidence %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("evidence %q: %w", id, err)
	}
	return raw, nil
}

func storedEvent(ctx context.Context, q Querier, id string) (Event, bool, error) {
	var raw []byte
	err := q.QueryRow(ctx, `SELECT event FROM evidence_outbox WHERE id = $1`, id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return Event{}, false, nil
	}
	if err != nil {
		return Event{}, false, fmt.Errorf("read evidence %s: %w", id, err)
	}
	ev, err := decodeEvent(raw)
	if err != nil {
		return Event{}, false, fmt.Errorf("read evidence %s: %w", id, err)
	}
	return ev, true, nil
}

func decodeEvent(raw []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	return ev, nil
}

// ReadOutbox returns up to limit events with seq > afterSeq, in seq order,
// published or not.
func ReadOutbox(ctx context.Context, q Querier, afterSeq int64, limit int) ([]Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read evidence outbox: limit %d is not positive", limit)
	}
	rows, err := q.Query(ctx, `SELECT event FROM evidence_outbox WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read evidence outbox: %w", err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("read evidence outbox: %w", err)
	}
	events := make([]Event, 0, len(raws))
	for _, raw := range raws {
		ev, err := decodeEvent(raw)
		if err != nil {
			return nil, fmt.Errorf("read evidence outbox: %w", err)
		}
		events = append(events, ev)
	}
	return events, nil
}
