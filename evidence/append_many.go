package evidence

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// AppendMany appends events to the outbox in order within the caller's
// transaction, like Append for each, but taking the chain head lock once and
// writing all rows in one statement. Events whose id is already stored (or
// repeated in evs) are returned as stored and do not advance the chain.
//
// The events are encoded, checked and cut for sealing before the statement
// that locks the chain head (evidence_append, in the store's migrations),
// which then does the rest on the server: from that statement until the
// caller commits, the client has nothing left to do.
func AppendMany(ctx context.Context, tx pgx.Tx, evs []Event) ([]Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	a, err := prepareAppend(evs)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT out_seq, out_prev_hash, out_hash, out_stored FROM evidence_append_packed($1, $2, $3, $4, $5)`,
		a.ids, a.types, a.subjects, a.lens, a.pieces)
	if err != nil {
		return nil, appendError(len(evs), err)
	}
	out := make([]Event, 0, len(evs))
	var seq int64
	var prev, hash string
	var stored []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &prev, &hash, &stored}, func() error {
		i := len(out)
		if i >= len(evs) {
			return fmt.Errorf("append evidence: more rows than the %d events", len(evs))
		}
		ev := evs[i]
		if stored != nil {
			s, err := decodeEvent(stored)
			if err != nil {
				return fmt.Errorf("read evidence %s: %w", ev.ID, err)
			}
			out = append(out, s)
			return nil
		}
		ev.prepared = nil // sealing changed it; what is returned is as stored
		ev.ChainSeq, ev.PrevHash, ev.Hash = seq, prev, hash
		out = append(out, ev)
		return nil
	})
	if err != nil {
		return nil, appendError(len(evs), err)
	}
	if len(out) != len(evs) {
		return nil, fmt.Errorf("append evidence: %d rows for %d events", len(out), len(evs))
	}
	return out, nil
}

// prepareAppend checks each event and cuts it for sealing: all the work
// of appending but the chain position, done before the chain head is
// locked.
func prepareAppend(evs []Event) (appendArgs, error) {
	cuts := make([]sealCut, len(evs))
	size := 0
	for i, ev := range evs {
		cut, err := cutFor(ev)
		if err != nil {
			return appendArgs{}, err
		}
		cuts[i] = cut
		for _, p := range cut.pieces() {
			size += len(p)
		}
	}
	a := appendArgs{pieces: make([]byte, 0, size), lens: make([]int32, 0, piecesPerEvent*len(evs))}
	for i, ev := range evs {
		a.ids, a.types, a.subjects = append(a.ids, ev.ID), append(a.types, ev.Type), append(a.subjects, ev.Subject)
		for _, p := range cuts[i].pieces() {
			a.pieces = append(a.pieces, p...)
			a.lens = append(a.lens, int32(len(p)))
		}
	}
	return a, nil
}

// appendArgs are evidence_append_packed's arguments: per event its id,
// type and subject, and its cut's pieces, one after the other in pieces
// (one bytea: pgx copies it whole, where it copied the elements of seven
// arrays one by one into buffers it grew), with their lengths in lens.
// pieces is the last argument: pgx grows its message buffer again for
// whatever it writes after it.
type appendArgs struct {
	ids, types, subjects []string
	pieces               []byte
	lens                 []int32
}

// piecesPerEvent is how many pieces a cut has: three of the canonical
// form, four of the stored bytes.
const piecesPerEvent = 7

// pieces are the cut's pieces in the order evidence_append_packed takes
// them.
func (c sealCut) pieces() [piecesPerEvent][]byte {
	return [piecesPerEvent][]byte{c.canon[0], c.canon[1], c.canon[2], c.body[0], c.body[1], c.body[2], c.body[3]}
}

// sqlstateNoChainHead is what evidence_append raises without its row.
const sqlstateNoChainHead = "LGE01"

func appendError(n int, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == sqlstateNoChainHead {
		return ErrNoChainHead
	}
	return fmt.Errorf("append %d evidence events: %w", n, err)
}
