package evidence

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestAppendManyMatchesAppend: a batch appended at once chains exactly like
// the same events appended one by one, skips stored and repeated ids, and
// verifies.
func TestAppendManyMatchesAppend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testDB(t)
	evs := sampleEvents(t, 12)
	var first []Event
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, ev := range evs[:3] {
			e, err := Append(ctx, tx, ev)
			if err != nil {
				return err
			}
			first = append(first, e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	batch := append(append([]Event{}, evs[1:]...), evs[5]) // 1..2 stored, 5 repeated
	var got []Event
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) (err error) {
		got, err = AppendMany(ctx, tx, batch)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got[0].Hash != first[1].Hash || got[1].Hash != first[2].Hash {
		t.Error("stored events were not returned as stored")
	}
	if got[2].ChainSeq != 4 || got[len(got)-2].ChainSeq != 12 || got[len(got)-1].Hash != got[4].Hash {
		t.Errorf("chain positions: %d … %d, repeat %s vs %s", got[2].ChainSeq, got[len(got)-2].ChainSeq, got[len(got)-1].Hash, got[4].Hash)
	}
	rep, err := VerifyOutbox(ctx, pool, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != 12 {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
}

// An event built (and checked) by the Builder is not checked a second time
// when appended unchanged, but one changed after it was built is: a token
// placed in its data or its subject afterwards is refused, not stored.
func TestAppendManyChecksEventsChangedAfterBuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testDB(t)
	for name, change := range map[string]func(*Event){
		"data":    func(ev *Event) { ev.Data = []byte(`{"note":"hvs.CAESIJ4yD7sRkXoZ1tW0m3vQ8aPu2nLbKcEhGfYjTdUiOqVx"}`) },
		"subject": func(ev *Event) { ev.Subject = "hvs.CAESIJ4yD7sRkXoZ1tW0m3vQ8aPu2nLbKcEhGfYjTdUiOqVx" },
	} {
		evs := sampleEvents(t, 2)
		change(&evs[1])
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := AppendMany(ctx, tx, evs)
			return err
		})
		if !errors.Is(err, ErrSecret) {
			t.Errorf("%s changed after build: AppendMany = %v, want ErrSecret", name, err)
		}
	}
	var stored int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM evidence_outbox").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Errorf("%d events stored, want none", stored)
	}
}
