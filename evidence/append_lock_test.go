package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// roundTrips counts what a connection sends: each query and each batch is
// one trip to the server and back. With a prefix, it counts only the
// queries whose statement starts with it.
type roundTrips struct {
	n      atomic.Int64
	prefix string
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(strings.TrimSpace(d.SQL), r.prefix) {
		r.n.Add(1)
	}
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	if r.prefix == "" {
		r.n.Add(1)
	}
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// tracedPool is a second pool on pool's schema whose statements tr sees.
func tracedPool(t *testing.T, pool *pgxpool.Pool, tr pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg := pool.Config().Copy()
	cfg.ConnConfig.Tracer = tr
	traced, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(traced.Close)
	return traced
}

// TestAppendHoldsTheChainHeadForOneStatement: every appender in every
// process waits for the chain head, from the statement that locks it until
// its transaction commits. Appending must be that one statement, with no
// trip back to the client in between: a process short of CPU that holds the
// lock across trips (sealing in Go, then inserting) stalls every other
// appender, as a burst of 10,000 expiries showed (4.3 s waits behind a
// holder idle in transaction).
func TestAppendHoldsTheChainHeadForOneStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	trips := &roundTrips{}
	base := testDB(t)
	pool := tracedPool(t, base, trips)
	evs := sampleEvents(t, 40)
	for _, batch := range [][]Event{evs[:1], evs[1:30], append(append([]Event{}, evs[25:40]...), evs[2])} {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			before := trips.n.Load()
			if _, err := AppendMany(ctx, tx, batch); err != nil {
				return err
			}
			if n := trips.n.Load() - before; n != 1 {
				t.Errorf("appending %d events took %d trips to the server; want 1", len(batch), n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := VerifyOutbox(ctx, base, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != 40 {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
}

// TestSealedInTheDatabaseAsInGo: the statement that seals under the lock
// (evidence_append) gives every event the hash and the bytes Seal gives it,
// for events whose encodings differ in every way the cut could trip on:
// escapes, non-ASCII text, HTML characters, numbers, a subject or none.
func TestSealedInTheDatabaseAsInGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testDB(t)
	evs := sampleEvents(t, 6)
	odd := []string{`{"note":"quote \" backslash \\ tab \t"}`, `{"ünïcödé":"日本語 <b>&amp;</b>","n":1.5e3}`,
		`{"deep":{"a":[1,2,{"chainseq":7,"prevhash":"x","hash":"y"}]},"empty":{}}`, `{}`}
	for i, data := range odd {
		ev := evs[i%len(evs)]
		ev.ID, ev.Data, ev.prepared = fmt.Sprintf("odd-%d", i), json.RawMessage(data), nil
		if i%2 == 1 {
			ev.Subject = ""
		}
		evs = append(evs, ev)
	}
	var got []Event
	for _, batch := range [][]Event{evs[:1], evs[1:7], evs[7:]} {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			out, err := AppendMany(ctx, tx, batch)
			got = append(got, out...)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	prev := GenesisHash
	for i, ev := range evs {
		want := ev
		if err := Seal(&want, prev, int64(i+1)); err != nil {
			t.Fatal(err)
		}
		wantBody, err := encodeJSON(want)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := RawEvent(ctx, pool, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Hash != want.Hash || got[i].ChainSeq != want.ChainSeq || got[i].PrevHash != prev {
			t.Errorf("event %d (%s): returned seal %d %s after %s; Seal gives %d %s", i, ev.ID, got[i].ChainSeq, got[i].Hash, got[i].PrevHash, want.ChainSeq, want.Hash)
		}
		if !bytes.Equal(raw, wantBody) {
			t.Errorf("event %d (%s) stored as\n%s\nwant\n%s", i, ev.ID, raw, wantBody)
		}
		prev = want.Hash
	}
}

// The cut refuses an encoding where a placeholder is not exactly once, so
// an event holding one (by chance or by design) gets fresh placeholders
// instead of a seal spliced in the wrong place.
func TestCutAtWantsEachMarkOnce(t *testing.T) {
	for doc, ok := range map[string]bool{"a1b2c": true, "a1b1c2": false, "a2b1c": false, "abc": false} {
		parts, got := cutAt([]byte(doc), []byte("1"), []byte("2"))
		if got != ok {
			t.Errorf("cutAt(%q) ok = %v, want %v (%q)", doc, got, ok, parts)
		}
	}
	parts, _ := cutAt([]byte("a1b2c"), []byte("1"), []byte("2"))
	if string(bytes.Join(parts, []byte("|"))) != "a|b|c" {
		t.Errorf("cutAt parts = %q", parts)
	}
}
