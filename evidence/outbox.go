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
	evs, err := AppendMany(ctx, tx, []Event{ev})
	if err != nil {
		return Event{}, err
	}
	return evs[0], nil
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
