package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
)

func denied(at time.Time, entity, remote string) AuditSignal {
	return AuditSignal{Kind: SignalDeniedCreds, Time: at, Mount: "postgres", Role: "reporting", EntityID: entity,
		TokenAccessor: "hmac-sha256:acc", RemoteAddress: remote, RequestID: "req-" + at.Format("150405.000000")}
}

// countRows sums audit_counts per kind/key/bucket over writers.
func countRows(t *testing.T, s *Store) map[string]int64 {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `SELECT kind || ' ' || principal || ' ' || remote_address || ' ' ||
			to_char(bucket AT TIME ZONE 'UTC', 'HH24:MI'), sum(count)::int8
		FROM audit_counts GROUP BY 1 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	var k string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestApplySignals(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	min0 := t0.Truncate(time.Minute)
	var sig AuditSignals
	for _, d := range []time.Duration{0, 10 * time.Second, 59 * time.Second, 61 * time.Second} {
		x := denied(min0.Add(d), "ent-1", "10.0.0.1")
		sig.Observe(x.Time, &x, nil)
	}
	noEntity := denied(min0, "", "10.0.0.2")
	sig.Observe(noEntity.Time, &noEntity, nil)
	sig.Observe(min0.Add(2*time.Minute), nil, &AuditDeviceChange{RequestID: "dev-1", DevicePath: "file",
		Operation: AuditDeviceDisable, Time: min0.Add(2 * time.Minute)})
	// A lease issued and renewed from two addresses; one renewal from an
	// address already seen.
	iss := issued("postgres/creds/reporting/a1", min0.Add(30*time.Second), func(e *schemas.LeaseEvent) {
		e.RemoteAddress, e.EntityID, e.Mount, e.Role = "10.0.0.7", "ent-1", "postgres", "reporting"
	})
	ren := event(schemas.LeaseRenewed, "postgres/creds/reporting/a1", min0.Add(90*time.Second), func(e *schemas.LeaseEvent) { e.RemoteAddress = "10.0.0.8" })
	ren2 := event(schemas.LeaseRenewed, "postgres/creds/reporting/a1", min0.Add(95*time.Second), func(e *schemas.LeaseEvent) { e.RemoteAddress = "10.0.0.7" })
	mustApply(t, s, Batch{Leases: []schemas.LeaseEvent{iss, ren, ren2}, Signals: sig})

	got := countRows(t, s)
	m0, m1 := min0.Format("15:04"), min0.Add(time.Minute).Format("15:04")
	want := map[string]int64{
		"denied_creds entity:ent-1 10.0.0.1 " + m0:             3,
		"denied_creds entity:ent-1 10.0.0.1 " + m1:             1,
		"denied_creds accessor:hmac-sha256:acc 10.0.0.2 " + m0: 1,
		"issue entity:ent-1  " + m0:                            1,
	}
	if len(got) != len(want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("count %q = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	addrs, err := LeaseAddresses(ctx, s.Pool(), []string{"postgres/creds/reporting/a1"})
	if err != nil {
		t.Fatal(err)
	}
	if a := addrs["postgres/creds/reporting/a1"]; len(a) != 2 || a[0] != "10.0.0.7" || a[1] != "10.0.0.8" {
		t.Errorf("lease addresses = %v", a)
	}
	live, err := ReadAuditLiveness(ctx, s.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if !live.LastEntryAt.Equal(min0.Add(2*time.Minute)) || live.ReceivedAt.IsZero() {
		t.Errorf("liveness = %+v", live)
	}

	// Counts of a later batch add up.
	x := denied(min0.Add(5*time.Second), "ent-1", "10.0.0.1")
	var more AuditSignals
	more.Observe(x.Time, &x, nil)
	mustApply(t, s, Batch{Signals: more})
	if got := countRows(t, s)["denied_creds entity:ent-1 10.0.0.1 "+m0]; got != 4 {
		t.Errorf("after a second batch: %d, want 4", got)
	}
	var quiet AuditSignals
	quiet.Observe(min0.Add(3*time.Minute), nil, nil)
	if (Batch{Signals: quiet}).Empty() {
		t.Fatal("a batch of entries is not empty")
	}
	if (Batch{}).Empty() != true {
		t.Fatal("an empty batch is not empty")
	}
}

// TestApplySignalsConcurrent: batches on several connections counting the
// same key never wait for each other and lose nothing.
func TestApplySignalsConcurrent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	min0 := t0.Truncate(time.Minute)
	const workers, batches, per = 4, 10, 50
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for b := 0; b < batches; b++ {
				var sig AuditSignals
				for i := 0; i < per; i++ {
					x := denied(min0.Add(time.Duration(i)*time.Millisecond), "ent-hot", "10.0.0.1")
					sig.Observe(x.Time, &x, nil)
				}
				if _, err := s.Apply(context.Background(), Batch{Signals: sig}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := countRows(t, s)["denied_creds entity:ent-hot 10.0.0.1 "+min0.Format("15:04")]; got != workers*batches*per {
		t.Errorf("count = %d, want %d", got, workers*batches*per)
	}
}

// TestWindowCandidates checks the sliding windows over buckets: the window
// of each bucket sums the buckets within Window before it, per key.
func TestWindowCandidates(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	min0 := t0.Truncate(time.Minute)
	// Key A: 3, 0, 4, 0, 0, 5 per minute; key B: 1 per minute for 6 minutes.
	var sig AuditSignals
	for i, n := range []int{3, 0, 4, 0, 0, 5} {
		for j := 0; j < n; j++ {
			x := denied(min0.Add(time.Duration(i)*time.Minute+time.Duration(j)*time.Second), "A", "10.0.0.1")
			sig.Observe(x.Time, &x, nil)
		}
		x := denied(min0.Add(time.Duration(i)*time.Minute), "B", "10.0.0.1")
		sig.Observe(x.Time, &x, nil)
	}
	mustApply(t, s, Batch{Signals: sig})
	query := func(q WindowQuery) []WindowCount {
		t.Helper()
		tx, err := s.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // read only
		ws, err := WindowCandidates(ctx, tx, q)
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	base := WindowQuery{Kind: SignalDeniedCreds, Rule: "r", From: min0, Window: 3 * time.Minute, Limit: 10}

	// Windows of 3 minutes for A, ending at its buckets 0, 2 and 5: 3, 7,
	// 5. Above 6: the window ending at minute 2.
	q := base
	q.Min, q.Threshold = 6, 6
	ws := query(q)
	if len(ws) != 1 || ws[0].Principal != "entity:A" || ws[0].Count != 7 || !ws[0].End.Equal(min0.Add(2*time.Minute)) {
		t.Fatalf("above 6: %+v", ws)
	}
	if !ws[0].FirstAt.Equal(min0) || !ws[0].LastAt.Equal(min0.Add(2*time.Minute+3*time.Second)) {
		t.Errorf("first/last = %v %v", ws[0].FirstAt, ws[0].LastAt)
	}
	// Just at the count: nothing.
	q.Min, q.Threshold = 7, 7
	if ws := query(q); len(ws) != 0 {
		t.Fatalf("above 7: %+v", ws)
	}
	// From minute 3 on, A's largest window is 5 (ending at minute 5), B's 3.
	q = base
	q.From, q.Min, q.Threshold = min0.Add(3*time.Minute), 2, 100
	ws = query(q)
	if len(ws) != 2 || ws[0].Count != 5 && ws[1].Count != 5 {
		t.Fatalf("largest: %+v", ws)
	}
	// A rule mark suppresses windows up to and including its bucket.
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := MarkRule(ctx, tx, "r", WindowCount{Principal: "entity:A", Mount: "postgres", RemoteAddress: "10.0.0.1"}.Key(), min0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	q = base
	q.Min, q.Threshold = 3, 3
	ws = query(q)
	// (Windows end at buckets with entries: shifting a window left to the
	// last such bucket never lowers its count.)
	if len(ws) != 1 || ws[0].Count != 5 || !ws[0].End.Equal(min0.Add(5*time.Minute)) {
		t.Fatalf("after the mark: %+v", ws)
	}
	// Baseline: B's sum over the 2 minutes before its window ending at
	// minute 5 (window 3..5) is minutes 1 and 2.
	q = base
	q.From, q.Min, q.Threshold, q.BaselinePeriod = min0.Add(5*time.Minute), 0, 100, 2*time.Minute
	for _, w := range query(q) {
		if w.Principal == "entity:B" && (w.BaselineSum != 2 || !w.BaselineFrom.Equal(min0.Add(time.Minute))) {
			t.Errorf("B baseline = %d from %v", w.BaselineSum, w.BaselineFrom)
		}
		if w.Principal == "entity:A" && (w.BaselineSum != 4 || !w.BaselineFrom.Equal(min0.Add(2*time.Minute))) {
			t.Errorf("A baseline = %d from %v", w.BaselineSum, w.BaselineFrom)
		}
	}
}

// BenchmarkApplySignals: BenchmarkApply's batches (500 entries: 100 lease
// events, 400 creds records) with, and without, what the audit-signal rules
// need: client addresses and identities on the lease events (issue counts,
// lease_addresses) and 500 more entries that change no lease, a tenth of
// them permission-denied refusals.
func BenchmarkApplySignals(b *testing.B) {
	for _, with := range []bool{false, true} {
		b.Run(fmt.Sprintf("signals=%v", with), func(b *testing.B) {
			s := openStoreB(b)
			n := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var batch Batch
				for j := range 100 {
					n++
					id := fmt.Sprintf("database/creds/app/lease%019d", n)
					when := at(time.Duration(n) * time.Millisecond)
					var ev schemas.LeaseEvent
					switch j % 4 {
					case 0, 1:
						ev = issued(id, when)
					case 2:
						ev = event(schemas.LeaseRenewed, fmt.Sprintf("database/creds/app/lease%019d", n-2), when)
					case 3:
						ev = event(schemas.LeaseRevoked, fmt.Sprintf("database/creds/app/lease%019d", n-3), when)
					}
					if with {
						ev.RemoteAddress, ev.EntityID, ev.Mount, ev.Role = fmt.Sprintf("10.0.%d.%d", j%7, j%5), fmt.Sprintf("ent-%d", j%13), "database", "app"
					}
					batch.Leases = append(batch.Leases, ev)
				}
				for j := range 200 {
					rid := fmt.Sprintf("req-%d-%d", i, j)
					batch.Creds = append(batch.Creds,
						CredsRecord{RequestID: rid, Path: "database/creds/app", Mount: "database", Role: "app", Time: at(0)},
						CredsRecord{RequestID: rid, Path: "database/creds/app", Time: at(time.Second), Response: true})
				}
				if with {
					for j := range 500 {
						t := at(time.Duration(n)*time.Millisecond + time.Duration(j)*time.Microsecond)
						if j%10 == 0 {
							d := denied(t, fmt.Sprintf("ent-%d", j%13), "10.0.0.1")
							batch.Signals.Observe(t, &d, nil)
						} else {
							batch.Signals.Observe(t, nil, nil)
						}
					}
				}
				if _, err := s.Apply(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "ledger-entries/s")
		})
	}
}
