package ingest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

const (
	issuedLease  = "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1"
	revokedLease = "postgres/creds/reporting/8nWWwOUCdLMHSwa4a73Jzoqw"
)

type oneTarget string

func (o oneTarget) Route(string, string) (string, bool) { return string(o), true }

// flakyLedger fails its first n Apply calls, as a database outage would.
type flakyLedger struct {
	ingest.Ledger
	fails atomic.Int32
}

func (f *flakyLedger) Apply(ctx context.Context, b store.Batch) (store.ApplyStats, error) {
	if f.fails.Add(-1) >= 0 {
		return store.ApplyStats{}, errors.New("database is down")
	}
	return f.Ledger.Apply(ctx, b)
}

type rig struct {
	t      *testing.T
	st     *store.Store
	js     jetstream.JetStream
	nc     *nats.Conn
	src    *ingest.NATSSource
	cfg    ingest.NATSConfig
	cancel context.CancelFunc
	done   chan error
}

func newRig(t *testing.T, ledger func(*store.Store) ingest.Ledger) *rig {
	t.Helper()
	ctx := context.Background()
	schema := pgtest.Schema(t, "lg_ingest")
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	var l ingest.Ledger = st
	if ledger != nil {
		l = ledger(st)
	}
	proc, err := ingest.NewProcessor(ingest.ProcessorConfig{Ledger: l, Router: oneTarget("test"), MaxEntryBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ingest.DefaultNATSConfig()
	cfg.AckWait = time.Second
	cfg.Batch = 50
	cfg.Backoff = []time.Duration{50 * time.Millisecond}
	src, err := ingest.NewNATSSource(cfg, js, proc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, st: st, js: js, nc: nc, src: src, cfg: cfg}
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.src.Run(ctx) }()
	r.t.Cleanup(r.stop)
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("source stopped with error: %v", err)
		}
	case <-time.After(10 * time.Second):
		r.t.Error("source did not stop within 10s")
	}
	r.cancel = nil
}

func (r *rig) publishFixture(subject string) int {
	r.t.Helper()
	f, err := os.Open("testdata/vault-1.21-audit.log")
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		if _, err := r.js.Publish(context.Background(), subject, append([]byte(nil), sc.Bytes()...)); err != nil {
			r.t.Fatal(err)
		}
		n++
	}
	return n
}

// drained waits until the consumer has nothing pending or unacknowledged.
func (r *rig) drained(timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := r.js.Consumer(context.Background(), r.cfg.Stream, r.cfg.Consumer)
		if err == nil {
			info, err := c.Info(context.Background())
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Stream > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("consumer not drained after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *rig) lease(id string) store.Lease {
	r.t.Helper()
	l, err := r.st.Lease(context.Background(), id)
	if err != nil {
		r.t.Fatalf("lease %s: %v", id, err)
	}
	return l
}

func snapshot(t *testing.T, r *rig) string {
	t.Helper()
	a, b := r.lease(issuedLease), r.lease(revokedLease)
	// updated_at moves on a no-op upsert in some designs; compare the
	// lease's facts, not bookkeeping.
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	out, err := json.Marshal([]store.Lease{a, b})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestNATSIngestFixtureIdempotent(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	r.start()
	r.publishFixture("vault.audit.file")
	r.drained(20 * time.Second)

	iss := r.lease(issuedLease)
	if iss.State != "active" || iss.DBUser != "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613" || iss.Database != "test" ||
		iss.Role != "reporting" || iss.Mount != "postgres" || iss.RenewedAt == nil || iss.EntityID != "ffe23c2c-69ab-e043-c810-bf24e5df3f4b" {
		t.Errorf("issued lease = %+v", iss)
	}
	if rev := r.lease(revokedLease); rev.State != "revoked" || rev.RevokedAt == nil {
		t.Errorf("revoked lease = %+v", rev)
	}
	before := snapshot(t, r)

	// The same entries again: nothing changes.
	r.publishFixture("vault.audit.file")
	r.drained(20 * time.Second)
	if after := snapshot(t, r); after != before {
		t.Errorf("replaying the stream changed the ledger:\nbefore %s\nafter  %s", before, after)
	}
}

func TestNATSCrashBetweenCommitAndAck(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	var crashes atomic.Int32
	r.src.SetBeforeAck(func() error {
		if crashes.Add(1) <= 2 {
			return errors.New("simulated crash before ack")
		}
		return nil
	})
	r.start()
	r.publishFixture("vault.audit.file")
	r.drained(30 * time.Second)
	if crashes.Load() < 3 {
		t.Fatalf("expected redeliveries after the simulated crashes, hook ran %d times", crashes.Load())
	}
	if iss := r.lease(issuedLease); iss.State != "active" || iss.RenewedAt == nil {
		t.Errorf("issued lease after redelivery = %+v", iss)
	}
	if rev := r.lease(revokedLease); rev.State != "revoked" {
		t.Errorf("revoked lease after redelivery = %+v", rev)
	}
	c, err := r.st.CountLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c["active"] != 1 || c["revoked"] != 1 {
		t.Errorf("lease counts = %v", c)
	}
}

func TestNATSTransientLedgerFailureRetries(t *testing.T) {
	t.Parallel()
	var fl *flakyLedger
	r := newRig(t, func(st *store.Store) ingest.Ledger {
		fl = &flakyLedger{Ledger: st}
		fl.fails.Store(3)
		return fl
	})
	r.start()
	r.publishFixture("vault.audit.file")
	r.drained(30 * time.Second)
	if fl.fails.Load() >= 0 {
		t.Fatalf("ledger failures not exercised")
	}
	if rev := r.lease(revokedLease); rev.State != "revoked" {
		t.Errorf("revoked lease = %+v", rev)
	}
}

func TestNATSDeadLetter(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := context.Background()
	var mu sync.Mutex
	var got []*nats.Msg
	sub, err := r.nc.Subscribe(r.cfg.DeadLetterSubject+".>", func(m *nats.Msg) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	r.start()
	bad := [][]byte{[]byte("this is not json"), []byte(`{"type":"response","time":"2026-11-25T19:23:33Z","request":{"id":5,"path":"x"}}`)}
	for _, b := range bad {
		if _, err := r.js.Publish(ctx, "vault.audit.file", b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.js.Publish(ctx, "vault.leases.x", []byte(`{"type":"io.leaseguard.lease.v1","kind":"exploded"}`)); err != nil {
		t.Fatal(err)
	}
	r.drained(20 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("dead letters = %d, want 3", len(got))
	}
	for i, m := range got {
		if m.Header.Get(ingest.HeaderReason) == "" || m.Header.Get(ingest.HeaderSourceSubject) == "" {
			t.Errorf("dead letter %d lacks reason or source: %v", i, m.Header)
		}
	}
	if string(got[0].Data) != "this is not json" {
		t.Errorf("dead letter does not carry the original bytes: %q", got[0].Data)
	}
	if got[2].Subject != r.cfg.DeadLetterSubject+".lease" {
		t.Errorf("lease event dead letter subject = %s", got[2].Subject)
	}
	c, err := r.st.CountLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 0 {
		t.Errorf("malformed input changed the ledger: %v", c)
	}
}

func TestNATSLeaseEventCarriesExpiry(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	r.start()
	exp := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	ttl := int64(600)
	ev := schemas.LeaseEvent{
		Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: "db/creds/app/abcdefghijklmnopqrstuvwx",
		Mount: "db", Role: "app", DBUser: "v-token-app-x-1", EventTime: exp.Add(-10 * time.Minute),
		ExpireTime: &exp, ExpireSource: schemas.ExpireFromEvent, TTLSeconds: &ttl,
		Source: schemas.SourceRef{Transport: "producer"},
	}
	b, _ := json.Marshal(ev)
	if _, err := r.js.Publish(context.Background(), "vault.leases.db", b); err != nil {
		t.Fatal(err)
	}
	r.drained(20 * time.Second)
	l := r.lease(ev.LeaseID)
	if l.ExpireAt == nil || !l.ExpireAt.Equal(exp) || l.ExpireSource != "event" || l.Database != "test" {
		t.Errorf("lease from event = %+v", l)
	}
}

func TestNATSConfigValidate(t *testing.T) {
	t.Parallel()
	c := ingest.DefaultNATSConfig()
	c.AuditSubject = "leaseguard.deadletter.>"
	if err := c.Validate(); err == nil {
		t.Error("audit subject overlapping the dead-letter subject accepted")
	}
	c = ingest.DefaultNATSConfig()
	c.Batch = 0
	if err := c.Validate(); err == nil {
		t.Error("zero batch accepted")
	}
}
