package evidence

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// maxLine bounds one event line in VerifyFile (JetStream's default maximum
// payload is 1 MiB).
const maxLine = 8 << 20

// VerifyFile verifies a chain stored as text, one CloudEvent JSON per line,
// in chain order: as a SIEM stores the events, or as a NATS subscriber
// prints the messages of the evidence subject. Lines that do not start with
// "{" (blank lines, a subscriber's message banners and headers) are skipped;
// a line that starts with "{" and is not a sealed event breaks the chain.
// Each event is hashed as written on its line, so an attribute added to or
// removed from a line breaks the chain as any other change does. An event
// repeated on consecutive lines (a redelivery) is counted in Duplicates.
//
// The file must start at the first event of the chain. Checkpoints are
// checked as opts says.
func VerifyFile(r io.Reader, opts VerifyOptions) (VerifyReport, error) {
	v := newVerifier(opts)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		doc := bytes.TrimSpace(sc.Bytes())
		if len(doc) == 0 || doc[0] != '{' {
			continue
		}
		ev, err := decodeEvent(doc)
		if err != nil {
			v.fail(v.report.LastSeq+1, "", fmt.Sprintf("line %d: %v", line, err))
			break
		}
		if !v.add(ev, doc) {
			v.report.FirstBreak.Reason = fmt.Sprintf("line %d: %s", line, v.report.FirstBreak.Reason)
			break
		}
	}
	if err := sc.Err(); err != nil {
		return v.report, fmt.Errorf("read evidence: %w", err)
	}
	return v.finish(), nil
}

// VerifyOutbox verifies the chain held in the outbox, from seq 1 to the
// chain head: each row's event bytes against its hash, each row's columns
// against its event, the links between events, and that the chain ends at
// the head row (so rows cut from the end are found too). Events appended
// while it runs, after the head it read first, are not checked.
func VerifyOutbox(ctx context.Context, q Querier, opts VerifyOptions) (VerifyReport, error) {
	var headSeq int64
	var headHash string
	err := q.QueryRow(ctx, `SELECT seq, hash FROM evidence_chain_head WHERE id = 1`).Scan(&headSeq, &headHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return VerifyReport{}, ErrNoChainHead
	}
	if err != nil {
		return VerifyReport{}, fmt.Errorf("read evidence chain head: %w", err)
	}
	v := newVerifier(opts)
	const page = 1000
	for after := int64(0); after < headSeq; {
		rows, err := q.Query(ctx, `
			SELECT seq, id, prev_hash, hash, event FROM evidence_outbox
			WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`, after, headSeq, page)
		if err != nil {
			return v.report, fmt.Errorf("read evidence outbox: %w", err)
		}
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outboxRow])
		if err != nil {
			return v.report, fmt.Errorf("read evidence outbox: %w", err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			if !v.addRow(r) {
				return v.finish(), nil
			}
		}
		after = rs[len(rs)-1].Seq
	}
	switch {
	case v.report.LastSeq != headSeq:
		v.fail(v.report.LastSeq+1, "", fmt.Sprintf("the chain head is at seq %d but the outbox ends at seq %d: events are missing", headSeq, v.report.LastSeq))
	case v.report.LastHash != headHash:
		v.fail(headSeq, "", fmt.Sprintf("the chain head hash %s is not the hash of the last event (%s)", headHash, v.report.LastHash))
	}
	return v.finish(), nil
}

type outboxRow struct {
	Seq      int64
	ID       string
	PrevHash string
	Hash     string
	Event    []byte
}

// addRow checks one outbox row: its columns must say what its event says.
func (v *verifier) addRow(r outboxRow) bool {
	ev, err := decodeEvent(r.Event)
	if err != nil {
		v.fail(r.Seq, r.ID, err.Error())
		return false
	}
	if ev.ChainSeq != r.Seq || ev.ID != r.ID || ev.PrevHash != r.PrevHash || ev.Hash != r.Hash {
		v.fail(r.Seq, r.ID, fmt.Sprintf("row columns (seq %d, id %s, prev_hash %s, hash %s) disagree with the stored event (chainseq %d, id %s, prevhash %s, hash %s)",
			r.Seq, r.ID, r.PrevHash, r.Hash, ev.ChainSeq, ev.ID, ev.PrevHash, ev.Hash))
		return false
	}
	return v.add(ev, r.Event)
}
