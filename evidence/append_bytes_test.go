package evidence

import (
	"context"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A detector pass appends up to 500 events at once, a few megabytes. pgx
// copies an array argument element by element into a buffer it grows (and
// drops after the call), and its message buffer again: sent as seven
// bytea arrays, 500 events' pieces cost eight times their size in
// allocations. Sent as one bytea, the last argument, they cost three and
// a half (the pieces, pgx's copy, and its message buffer grown twice).
func TestAppendManyCopiesItsEventsLittle(t *testing.T) {
	ctx := context.Background()
	pool := testDB(t)
	evs := sampleEvents(t, 500)
	a, err := prepareAppend(evs)
	if err != nil {
		t.Fatal(err)
	}
	sent := len(a.pieces)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := AppendMany(ctx, tx, evs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d events, %d bytes of pieces, %d bytes allocated (%.1f×)", len(evs), sent, allocated, float64(allocated)/float64(sent))
	if allocated > 4*uint64(sent) {
		t.Errorf("appending %d bytes of events allocated %d bytes, more than four times as much", sent, allocated)
	}
}

// The lengths must cut the pieces exactly, seven to an event: anything
// else is refused before the chain head is touched.
func TestAppendPackedRefusesLengthsThatDoNotCut(t *testing.T) {
	ctx := context.Background()
	pool := testDB(t)
	ids, none := []string{"a"}, []string{""}
	for name, lens := range map[string][]int32{
		"too few":  {1, 1, 1, 1, 1, 1},
		"too long": {1, 1, 1, 1, 1, 1, 2},
		"negative": {1, 1, 1, 1, 1, 3, -1},
	} {
		_, err := pool.Exec(ctx, `SELECT * FROM evidence_append_packed($1, $2, $3, $4, $5)`, ids, none, none, lens, []byte("1234567"))
		if err == nil {
			t.Errorf("%s: lengths %v were taken", name, lens)
		}
	}
	var head int64
	if err := pool.QueryRow(ctx, `SELECT seq FROM evidence_chain_head`).Scan(&head); err != nil || head != 0 {
		t.Errorf("chain head at %d (%v), want 0", head, err)
	}
}

// A binary of the version before calls evidence_append with seven arrays;
// it now packs them and calls evidence_append_packed, and the chain it
// appends verifies.
func TestEvidenceAppendOfTheVersionBefore(t *testing.T) {
	ctx := context.Background()
	pool := testDB(t)
	evs := sampleEvents(t, 5)
	var ids, types, subjects []string
	var pieces [piecesPerEvent][][]byte
	for _, ev := range append(evs, evs[1]) { // the last one is stored already
		cut, err := cutFor(ev)
		if err != nil {
			t.Fatal(err)
		}
		ids, types, subjects = append(ids, ev.ID), append(types, ev.Type), append(subjects, ev.Subject)
		for k, p := range cut.pieces() {
			pieces[k] = append(pieces[k], p)
		}
	}
	rows, err := pool.Query(ctx, `SELECT out_seq FROM evidence_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		ids, types, subjects, pieces[0], pieces[1], pieces[2], pieces[3], pieces[4], pieces[5], pieces[6])
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(seqs) != 6 || seqs[4] != 5 || seqs[5] != 2 {
		t.Fatalf("chain positions %v, %v; want 1 to 5, then 2 again", seqs, err)
	}
	rep, err := VerifyOutbox(ctx, pool, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != 5 {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
}
