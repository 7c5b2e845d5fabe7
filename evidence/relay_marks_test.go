package evidence

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// failingPublisher accepts every event but the failAt-th (from 1).
type failingPublisher struct {
	failAt, n int
}

func (p *failingPublisher) Publish(context.Context, Event, []byte) error {
	p.n++
	if p.n == p.failAt {
		return errors.New("bus refused the event")
	}
	return nil
}

// A batch's published rows are marked in one statement, not one each: at
// 20,000 events a wave, a statement per row was 7,000 round trips and
// 0.4 s of the state store's time.
func TestRelayMarksABatchInOneStatement(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	for _, ev := range sampleEvents(t, 25) {
		appendOne(t, pool, ev)
	}
	updates := &roundTrips{prefix: "UPDATE evidence_outbox"}
	r, err := NewRelay(tracedPool(t, pool, updates), nopPublisher{}, fastRelayConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.PublishPending(context.Background()); err != nil || n != 25 {
		t.Fatalf("PublishPending: %d, %v; want 25", n, err)
	}
	if got := updates.n.Load(); got != 1 {
		t.Errorf("%d statements marked a batch of 25 published, want 1", got)
	}
	if n := unpublished(t, pool); n != 0 {
		t.Errorf("%d rows left unpublished", n)
	}
}

// A publish that fails mid-batch leaves the rows before it published, the
// failing row with its error and attempt, and the rows after it untouched.
func TestRelayMarksWhatItPublishedBeforeAFailure(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	for _, ev := range sampleEvents(t, 6) {
		appendOne(t, pool, ev)
	}
	r, err := NewRelay(pool, &failingPublisher{failAt: 3}, fastRelayConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.PublishPending(context.Background())
	if n != 2 || err == nil {
		t.Fatalf("PublishPending: %d, %v; want 2 and the failure", n, err)
	}
	rows, err := pool.Query(context.Background(), `SELECT seq, published_at IS NOT NULL, publish_attempts, coalesce(last_error, '')
		FROM evidence_outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	var published bool
	var attempts int
	var lastError string
	if _, err := pgx.ForEachRow(rows, []any{&seq, &published, &attempts, &lastError}, func() error {
		switch {
		case seq <= 2 && (!published || attempts != 1 || lastError != ""):
			t.Errorf("seq %d, published before the failure: published %v, attempts %d, error %q", seq, published, attempts, lastError)
		case seq == 3 && (published || attempts != 1 || !strings.Contains(lastError, "bus refused")):
			t.Errorf("seq 3, the failure: published %v, attempts %d, error %q", published, attempts, lastError)
		case seq > 3 && (published || attempts != 0 || lastError != ""):
			t.Errorf("seq %d, after the failure: published %v, attempts %d, error %q", seq, published, attempts, lastError)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
