package evidence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/schemas"
)

func countRows(t testing.TB, pool *pgxpool.Pool) (rows int, headSeq int64) {
	t.Helper()
	ctx := context.Background()
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM evidence_outbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT seq FROM evidence_chain_head`).Scan(&headSeq); err != nil {
		t.Fatal(err)
	}
	return rows, headSeq
}

func TestAppendRollbackLeavesNothing(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	ctx := context.Background()
	events := sampleEvents(t, 3)

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if _, err := Append(ctx, tx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if rows, head := countRows(t, pool); rows != 0 || head != 0 {
		t.Fatalf("after rollback: %d rows, head at %d", rows, head)
	}

	// The chain starts from genesis for the next committed append.
	stored := appendOne(t, pool, events[1])
	if stored.ChainSeq != 1 || stored.PrevHash != GenesisHash {
		t.Errorf("first committed event: seq %d prevhash %s", stored.ChainSeq, stored.PrevHash)
	}
}

func TestAppendIdempotent(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	ctx := context.Background()
	cmd := sampleCommand(9)
	res := sampleResult(cmd, schemas.OutcomeDropped)

	first, err := testBuilder().Revocation(cmd, res, sampleLease(9))
	if err != nil {
		t.Fatal(err)
	}
	stored1 := appendOne(t, pool, first)

	// A retry builds the same event, even at a later time and with less
	// context; the outbox keeps the first and the chain does not move.
	res.FinishedAt = time.Time{}
	later := Builder{Source: "urn:leaseguard:test", Clock: func() time.Time { return t0.Add(time.Hour) }}
	retry, err := later.Revocation(cmd, res, nil)
	if err != nil {
		t.Fatal(err)
	}
	if retry.ID != first.ID {
		t.Fatalf("retry id %s, want %s", retry.ID, first.ID)
	}
	stored2 := appendOne(t, pool, retry)
	if !bytes.Equal(mustJSON(t, stored1), mustJSON(t, stored2)) {
		t.Errorf("second append returned\n%s\nwant the stored\n%s", mustJSON(t, stored2), mustJSON(t, stored1))
	}
	appendOne(t, pool, first)
	if rows, head := countRows(t, pool); rows != 1 || head != 1 {
		t.Fatalf("%d rows, head at %d; want 1, 1", rows, head)
	}

	next := appendOne(t, pool, sampleEvents(t, 2)[1])
	if next.ChainSeq != 2 || next.PrevHash != stored1.Hash {
		t.Errorf("next event: seq %d prevhash %s, want 2 %s", next.ChainSeq, next.PrevHash, stored1.Hash)
	}
	rep, err := VerifyOutbox(ctx, pool, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestAppendConcurrent(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	ctx := context.Background()
	const workers, each = 5, 40

	b := testBuilder()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				f := sampleFinding(w*1000 + i)
				ev, err := b.Finding(f, nil)
				if err != nil {
					errs <- err
					return
				}
				err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					// Some work of the caller's own in the same transaction.
					if _, err := tx.Exec(ctx, `SELECT pg_sleep(0.001)`); err != nil {
						return err
					}
					_, err := Append(ctx, tx, ev)
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d event %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	events, err := ReadOutbox(ctx, pool, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != workers*each {
		t.Fatalf("%d events, want %d", len(events), workers*each)
	}
	for i, ev := range events {
		if ev.ChainSeq != int64(i+1) {
			t.Fatalf("event %d has seq %d: gap or repeat", i, ev.ChainSeq)
		}
	}
	if rep, err := Verify(events, VerifyOptions{}); err != nil || !rep.OK() || rep.Checked != workers*each {
		t.Fatalf("verify events: %+v %v", rep, err)
	}
	rep, err := VerifyOutbox(ctx, pool, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != workers*each || rep.LastSeq != workers*each {
		t.Fatalf("verify outbox: %+v %v", rep, err)
	}
}

func TestReadOutboxPages(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	ctx := context.Background()
	for _, ev := range sampleEvents(t, 7) {
		appendOne(t, pool, ev)
	}
	var seqs []int64
	for after := int64(0); ; {
		page, err := ReadOutbox(ctx, pool, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, ev := range page {
			seqs = append(seqs, ev.ChainSeq)
		}
		after = page[len(page)-1].ChainSeq
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5 6 7]" {
		t.Errorf("seqs = %v", seqs)
	}
	if _, err := ReadOutbox(ctx, pool, 0, 0); err == nil {
		t.Error("limit 0 accepted")
	}
}

func TestAppendRefuses(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	ctx := context.Background()

	ev := sampleEvents(t, 1)[0]
	ev.Data = []byte(`{"class_uid":3001,"unmapped":{"password":"` + samplePassword + `"}}`)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := Append(ctx, tx, ev)
		return err
	})
	if !errors.Is(err, ErrSecret) {
		t.Errorf("append of an event with a password: err = %v, want ErrSecret", err)
	}

	if _, err := pool.Exec(ctx, `DELETE FROM evidence_chain_head`); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := Append(ctx, tx, sampleEvents(t, 1)[0])
		return err
	})
	if !errors.Is(err, ErrNoChainHead) {
		t.Errorf("append without head: err = %v, want ErrNoChainHead", err)
	}
}

func TestVerifyOutboxFindsTampering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		tamper  string
		breakAt int64
		reason  string
	}{
		{"event bytes changed", `UPDATE evidence_outbox SET event = convert_to(replace(convert_from(event, 'UTF8'), '"status_id":1', '"status_id":2'), 'UTF8') WHERE seq = 4`, 4, "altered"},
		{"column changed", `UPDATE evidence_outbox SET id = 'forged' WHERE seq = 4`, 4, "disagree"},
		{"middle row deleted", `DELETE FROM evidence_outbox WHERE seq = 4`, 5, "missing"},
		{"last rows deleted", `DELETE FROM evidence_outbox WHERE seq >= 5`, 5, "chain head"},
		{"head moved back", `UPDATE evidence_chain_head SET seq = 5, hash = 'sha256:` + strings.Repeat("ab", 32) + `'`, 5, "head hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := testDB(t)
			ctx := context.Background()
			for _, ev := range sampleEvents(t, 6) {
				appendOne(t, pool, ev)
			}
			if rep, err := VerifyOutbox(ctx, pool, VerifyOptions{}); err != nil || !rep.OK() {
				t.Fatalf("before tampering: %+v %v", rep, err)
			}
			if _, err := pool.Exec(ctx, tt.tamper); err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyOutbox(ctx, pool, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatal("tampering not found")
			}
			if rep.FirstBreak.Seq != tt.breakAt || !strings.Contains(rep.FirstBreak.Reason, tt.reason) {
				t.Errorf("break = %s, want seq %d (%s)", rep.FirstBreak, tt.breakAt, tt.reason)
			}
		})
	}
}
