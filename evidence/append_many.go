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
	rows, err := tx.Query(ctx, `SELECT out_seq, out_prev_hash, out_hash, out_stored FROM evidence_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		a.ids, a.types, a.subjects, a.canon[0], a.canon[1], a.canon[2], a.body[0], a.body[1], a.body[2], a.body[3])
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
// of an append that needs no lock.
func prepareAppend(evs []Event) (appendArgs, error) {
	a := appendArgs{}
	for _, ev := range evs {
		cut, err := cutFor(ev)
		if err != nil {
			return appendArgs{}, err
		}
		a.add(ev, cut)
	}
	return a, nil
}

// appendArgs are evidence_append's arguments, one array element per event.
type appendArgs struct {
	ids, types, subjects []string
	canon                [3][][]byte
	body                 [4][][]byte
}

func (a *appendArgs) add(ev Event, cut sealCut) {
	a.ids, a.types, a.subjects = append(a.ids, ev.ID), append(a.types, ev.Type), append(a.subjects, ev.Subject)
	for k := range cut.canon {
		a.canon[k] = append(a.canon[k], cut.canon[k])
	}
	for k := range cut.body {
		a.body[k] = append(a.body[k], cut.body[k])
	}
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
