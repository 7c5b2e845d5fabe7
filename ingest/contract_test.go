package ingest_test

// The source contract: every input transport must pass these tests, run
// against a real broker (embedded JetStream, in-process Kafka) and the real
// ledger, with Ledger wrappers for fault injection.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// testRecord is one message or record to publish: an audit entry or (lease)
// a LeaseEvent document, with the key that orders it (a Kafka record key;
// a subject token on JetStream).
type testRecord struct {
	key   string
	lease bool
	value []byte
}

// storedDeadLetter is a dead letter as a transport stored it.
type storedDeadLetter struct {
	value  []byte
	reason string
	// source is the input it came from (subject or topic) and offset its
	// position there.
	source string
	offset string
}

// runOpts configures one source instance.
type runOpts struct {
	// batch is the source's batch size.
	batch int
	// ahead bounds what the source may fetch ahead of the ledger
	// (JetStream max ack pending, Kafka queue capacity); 0: roomy.
	ahead int
	// crash, when set, runs after each batch's ledger transaction and
	// before its ack or commit; an error stops the source there as a crash
	// would: nothing acknowledged, the process gone.
	crash func() error
}

// sourceHarness drives one transport for the contract.
type sourceHarness interface {
	// publish sends records in order and waits until the broker has them.
	publish(t *testing.T, recs ...testRecord)
	// start runs a new source instance on ledger until stop.
	start(t *testing.T, ledger ingest.Ledger, o runOpts) *runningSource
	// acked is the number of published records acknowledged (committed).
	acked(t *testing.T) int
	// published is the number of records published so far.
	published() int
	// deadLetters returns the dead letters stored so far.
	deadLetters(t *testing.T) []storedDeadLetter
	// aheadBound is the most records a source started with o may hold
	// fetched and not acknowledged.
	aheadBound(o runOpts) int
}

// runningSource is one started source.
type runningSource struct {
	cancel context.CancelFunc
	done   chan error
	// inFlight is the number of records fetched from the broker and not
	// acknowledged.
	inFlight func() int
	stopped  bool
	err      error
}

func runSource(t *testing.T, run func(context.Context) error, inFlight func() int) *runningSource {
	ctx, cancel := context.WithCancel(context.Background())
	return runSourceWith(t, ctx, cancel, run, inFlight)
}

// runSourceWith runs run(ctx) until stop calls cancel.
func runSourceWith(t *testing.T, ctx context.Context, cancel context.CancelFunc, run func(context.Context) error, inFlight func() int) *runningSource {
	r := &runningSource{cancel: cancel, done: make(chan error, 1), inFlight: inFlight}
	go func() { r.done <- run(ctx) }()
	t.Cleanup(func() {
		if !r.stopped {
			r.stop(t)
		}
	})
	return r
}

// stop cancels the source and returns Run's result.
func (r *runningSource) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t, 15*time.Second)
}

// wait waits for Run to return on its own (after a crash) or after stop.
func (r *runningSource) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	if r.stopped {
		return r.err
	}
	select {
	case r.err = <-r.done:
		r.stopped = true
		return r.err
	case <-time.After(timeout):
		t.Fatalf("source did not stop within %s", timeout)
		return nil
	}
}

// leaseLog is a Ledger wrapper that records the lease events the ledger
// committed, in commit order, and can be slowed down or made to fail.
type leaseLog struct {
	next ingest.Ledger
	// delay is added to every Apply.
	delay time.Duration
	// down makes Apply fail, as a database outage; failed counts those.
	down   atomic.Bool
	failed atomic.Int32

	mu       sync.Mutex
	applied  []appliedEvent
	applies  int
	maxBatch int
}

type appliedEvent struct {
	lease string
	kind  schemas.LeaseEventKind
	at    time.Time
}

func (e appliedEvent) String() string {
	return fmt.Sprintf("%s %s@%s", e.lease, e.kind, e.at.Format("15:04:05"))
}

func newLeaseLog(next ingest.Ledger) *leaseLog { return &leaseLog{next: next} }

func (l *leaseLog) Apply(ctx context.Context, b store.Batch) (store.ApplyStats, error) {
	if l.delay > 0 {
		select {
		case <-ctx.Done():
			return store.ApplyStats{}, ctx.Err()
		case <-time.After(l.delay):
		}
	}
	if l.down.Load() {
		l.failed.Add(1)
		return store.ApplyStats{}, errors.New("database is down")
	}
	st, err := l.next.Apply(ctx, b)
	if err != nil {
		return st, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applies++
	l.maxBatch = max(l.maxBatch, len(b.Leases)+len(b.Creds))
	for _, e := range b.Leases {
		l.applied = append(l.applied, appliedEvent{lease: e.LeaseID, kind: e.Kind, at: e.EventTime.UTC()})
	}
	return st, nil
}

func (l *leaseLog) events() []appliedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.applied)
}

func (l *leaseLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.applied)
}

// newLedger opens the real ledger in a fresh schema.
func newLedger(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, "lg_contract")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

func newProcessor(t *testing.T, ledger ingest.Ledger) *ingest.Processor {
	t.Helper()
	proc, err := ingest.NewProcessor(ingest.ProcessorConfig{Ledger: ledger, Router: oneTarget("test"), MaxEntryBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return proc
}

var leaseT0 = time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)

// leaseStory is the events of one lease, in order: issued, renewed (steps
// - 2 times), revoked; each a LeaseEvent record keyed by the lease id.
func leaseStory(t *testing.T, name string, steps int) []testRecord {
	t.Helper()
	id := "db/creds/app/" + name
	out := make([]testRecord, 0, steps)
	for s := range steps {
		kind := schemas.LeaseRenewed
		switch s {
		case 0:
			kind = schemas.LeaseIssued
		case steps - 1:
			kind = schemas.LeaseRevoked
		}
		ev := schemas.LeaseEvent{
			Type: schemas.LeaseEventType, Kind: kind, LeaseID: id, Mount: "db", Role: "app",
			DBUser: "v-app-" + name, EventTime: leaseT0.Add(time.Duration(s) * time.Minute),
			VaultRequestID: fmt.Sprintf("req-%s-%d", name, s), Source: schemas.SourceRef{Transport: "producer"},
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, testRecord{key: id, lease: true, value: b})
	}
	return out
}

// interleave publishes the stories' events round-robin: step 0 of every
// lease, then step 1, ...
func interleave(stories [][]testRecord) []testRecord {
	var out []testRecord
	for s := 0; ; s++ {
		n := len(out)
		for _, st := range stories {
			if s < len(st) {
				out = append(out, st[s])
			}
		}
		if len(out) == n {
			return out
		}
	}
}

func stories(t *testing.T, prefix string, leases, steps int) [][]testRecord {
	out := make([][]testRecord, leases)
	for i := range out {
		out[i] = leaseStory(t, fmt.Sprintf("%s%03d", prefix, i), steps)
	}
	return out
}

func expectedEvents(t *testing.T, recs []testRecord) []appliedEvent {
	t.Helper()
	out := make([]appliedEvent, 0, len(recs))
	for _, r := range recs {
		var ev schemas.LeaseEvent
		if err := json.Unmarshal(r.value, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, appliedEvent{lease: ev.LeaseID, kind: ev.Kind, at: ev.EventTime.UTC()})
	}
	return out
}

// fixtureRecords is the real Vault 1.21 audit log, one entry per record.
func fixtureRecords(t *testing.T) []testRecord {
	t.Helper()
	f, err := os.Open("testdata/vault-1.21-audit.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []testRecord
	for sc.Scan() {
		out = append(out, testRecord{key: "vault-1", value: slices.Clone(sc.Bytes())})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// longEntry is the fixture's creds response for issuedLease padded past 8
// KB with a long request header, as a busy client's entry can be.
func longEntry(t *testing.T) []byte {
	t.Helper()
	line := fixtureRecords(t)[19].value
	var e map[string]any
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatal(err)
	}
	req := e["request"].(map[string]any)
	headers, _ := req["headers"].(map[string]any)
	if headers == nil {
		headers = map[string]any{}
		req["headers"] = headers
	}
	headers["x-request-trace"] = []any{strings.Repeat("0123456789abcdef", 600)}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitUntil polls cond every 10ms until it holds or timeout passes.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func drained(t *testing.T, h sourceHarness, timeout time.Duration) {
	t.Helper()
	waitUntil(t, "every published record to be acknowledged", timeout, func() bool { return h.acked(t) >= h.published() })
}

func leaseState(t *testing.T, st *store.Store, id string) string {
	t.Helper()
	l, err := st.Lease(context.Background(), id)
	if err != nil {
		t.Fatalf("lease %s: %v", id, err)
	}
	return string(l.State)
}

func countLeaseEvents(t *testing.T, st *store.Store) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM lease_events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type contractCase struct {
	name string
	run  func(t *testing.T, h sourceHarness)
}

var contractCases = []contractCase{
	{"OrderPerKey", contractOrderPerKey},
	{"RedeliveryAfterCrash", contractRedeliveryAfterCrash},
	{"NoLossAcrossRestart", contractNoLossAcrossRestart},
	{"DeadLetters", contractDeadLetters},
	{"DeadLettersHoldNoSecrets", contractDeadLettersHoldNoSecrets},
	{"GracefulShutdown", contractGracefulShutdown},
	{"BackPressure", contractBackPressure},
	{"TransientLedgerFailure", contractTransientLedgerFailure},
}

func TestSourceContract(t *testing.T) {
	t.Parallel()
	transports := []struct {
		name string
		new  func(t *testing.T) sourceHarness
	}{
		{"nats", newNATSHarness},
		{"kafka", newKafkaHarness},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range contractCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, tr.new(t))
				})
			}
		})
	}
}

// The events of one lease reach the ledger in the order they were
// published, each once, across batches and partitions.
func contractOrderPerKey(t *testing.T, h sourceHarness) {
	st := newLedger(t)
	log := newLeaseLog(st)
	all := stories(t, "order", 12, 6)
	h.publish(t, interleave(all)...)
	src := h.start(t, log, runOpts{batch: 7})
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	got := map[string][]appliedEvent{}
	for _, e := range log.events() {
		got[e.lease] = append(got[e.lease], e)
	}
	for _, story := range all {
		want := expectedEvents(t, story)
		if g := got[want[0].lease]; !slices.Equal(g, want) {
			t.Errorf("lease %s applied as\n%v\nwant\n%v", want[0].lease, g, want)
		}
	}
	if c, err := st.CountLeases(context.Background()); err != nil || c["revoked"] != len(all) {
		t.Errorf("lease counts %v, %v; want %d revoked", c, err, len(all))
	}
}

var errSimulatedCrash = errors.New("simulated crash between ledger commit and ack")

// A crash after the ledger committed a batch and before it was
// acknowledged: the batch is delivered again and applied again, which
// changes nothing; nothing is lost.
func contractRedeliveryAfterCrash(t *testing.T, h sourceHarness) {
	st := newLedger(t)
	recs := interleave(stories(t, "crash", 10, 3))
	h.publish(t, recs...)

	first := newLeaseLog(st)
	var crashes atomic.Int32
	src := h.start(t, first, runOpts{batch: 10, crash: func() error {
		if crashes.Add(1) == 1 {
			return errSimulatedCrash
		}
		return nil
	}})
	if err := src.wait(t, 15*time.Second); err != nil && !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("run: %v", err)
	}
	crashed := first.events()
	if len(crashed) == 0 {
		t.Fatal("the crashed run applied nothing")
	}
	if n := countLeaseEvents(t, st); n != len(crashed) {
		t.Fatalf("ledger holds %d events after the crash, the crashed batch had %d", n, len(crashed))
	}
	if n := h.acked(t); n != 0 {
		t.Fatalf("%d records acknowledged by the crashed run", n)
	}

	second := newLeaseLog(st)
	src = h.start(t, second, runOpts{batch: 10})
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	again := second.events()
	for _, e := range crashed {
		if !slices.Contains(again, e) {
			t.Errorf("%v, applied before the crash, was not delivered again", e)
		}
	}
	if want := expectedEvents(t, recs); !sameSet(again, want) {
		t.Errorf("after the restart the ledger got %d events, want all %d", len(again), len(want))
	}
	if n := countLeaseEvents(t, st); n != len(recs) {
		t.Errorf("ledger holds %d events, want %d (each once)", n, len(recs))
	}
	if c, err := st.CountLeases(context.Background()); err != nil || c["revoked"] != 10 || len(c) != 1 {
		t.Errorf("lease counts %v, %v", c, err)
	}
}

// sameSet reports whether got holds every event of want, and nothing else.
func sameSet(got, want []appliedEvent) bool {
	g := map[appliedEvent]bool{}
	for _, e := range got {
		g[e] = true
	}
	w := map[appliedEvent]bool{}
	for _, e := range want {
		w[e] = true
	}
	if len(g) != len(w) {
		return false
	}
	for e := range w {
		if !g[e] {
			return false
		}
	}
	return true
}

// Stopping a consumer and starting another loses nothing, including what
// was published while none ran.
func contractNoLossAcrossRestart(t *testing.T, h sourceHarness) {
	st := newLedger(t)
	log := newLeaseLog(st)
	all := stories(t, "restart", 8, 5)
	recs := interleave(all)
	h.publish(t, fixtureRecords(t)...)
	h.publish(t, recs[:20]...)
	src := h.start(t, log, runOpts{batch: 8})
	waitUntil(t, "a first batch", 10*time.Second, func() bool { return log.count() > 0 })
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	h.publish(t, recs[20:]...)
	h.publish(t, fixtureRecords(t)...)
	src = h.start(t, log, runOpts{batch: 8})
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	got := log.events()
	for _, e := range expectedEvents(t, recs) {
		if !slices.Contains(got, e) {
			t.Errorf("%v was never applied", e)
		}
	}
	if s := leaseState(t, st, issuedLease); s != "active" {
		t.Errorf("fixture lease %s is %s", issuedLease, s)
	}
	if s := leaseState(t, st, revokedLease); s != "revoked" {
		t.Errorf("fixture lease %s is %s", revokedLease, s)
	}
	if c, err := st.CountLeases(context.Background()); err != nil || c["revoked"] != len(all)+1 {
		t.Errorf("lease counts %v, %v", c, err)
	}
}

// Malformed input is stored in the dead-letter destination with its reason
// and original bytes, acknowledged, and holds nothing back. An entry cut by
// a shipper's size limit (8 KB by default in some) is refused as truncated,
// never misread.
func contractDeadLetters(t *testing.T, h sourceHarness) {
	st := newLedger(t)
	long := longEntry(t)
	if len(long) <= 8192 {
		t.Fatalf("long entry is only %d bytes", len(long))
	}
	cut := long[:8192]
	story := leaseStory(t, "dl", 2)
	badLease := []byte(`{"type":"io.leaseguard.lease.v1","kind":"exploded"}`)
	h.publish(t,
		story[0],
		testRecord{key: "vault-1", value: []byte("this is not json")},
		testRecord{key: "vault-1", value: cut},
		testRecord{key: "vault-1", value: long},
		testRecord{key: story[0].key, lease: true, value: badLease},
		story[1],
	)
	src := h.start(t, st, runOpts{batch: 10})
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	dls := h.deadLetters(t)
	want := []struct {
		value  []byte
		reason string
	}{
		{[]byte("this is not json"), "not JSON"},
		{cut, "entry looks truncated"},
		{badLease, "invalid lease event"},
	}
	if len(dls) != len(want) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dls), len(want), dls)
	}
	for _, w := range want {
		i := slices.IndexFunc(dls, func(d storedDeadLetter) bool { return string(d.value) == string(w.value) })
		if i < 0 {
			t.Errorf("no dead letter carries the original bytes of the %q case", w.reason)
			continue
		}
		d := dls[i]
		if !strings.Contains(d.reason, w.reason) || d.source == "" || d.offset == "" {
			t.Errorf("dead letter %+v: want reason with %q, a source and an offset", d, w.reason)
		}
	}
	if s := leaseState(t, st, "db/creds/app/dl"); s != "revoked" {
		t.Errorf("lease around the malformed records is %s", s)
	}
	if s := leaseState(t, st, issuedLease); s != "active" {
		t.Errorf("the whole long entry was not applied: lease %s is %s", issuedLease, s)
	}
}

// secretEntries are input that carries plaintext secrets and is
// dead-lettered: an entry over the size limit, one cut short inside the
// password's value, a line that is not JSON with a Vault token, a lease
// event with a password field. secrets lists the secrets.
func secretEntries(t *testing.T) (recs []testRecord, secrets []string) {
	t.Helper()
	pw1, pw2, pw3 := "A1a-oversizeSecret0001", "A1a-cutShortSecret0002", "A1a-leaseEventSecret03"
	token := "hvs.CAESIGx2J0xSecretToken0004"
	long := fmt.Sprintf(`{"time":"2026-11-25T19:00:00Z","type":"response","request":{"id":"r-big"},"response":{"data":{"username":"v-x","password":%q}},"pad":%q}`,
		pw1, strings.Repeat("p", 70<<10))
	cut := `{"time":"2026-11-25T19:00:00Z","type":"response","request":{"id":"r-cut"},"response":{"data":{"username":"v-x","password":"` + pw2
	lease := `{"type":"io.leaseguard.lease.v1","kind":"issued","lease_id":"db/creds/app/x","password":"` + pw3 + `"}`
	return []testRecord{
		{key: "vault-1", value: []byte(long)},
		{key: "vault-1", value: []byte(cut)},
		{key: "vault-1", value: []byte("token " + token + " in a line that is not json")},
		{key: "db/creds/app/x", lease: true, value: []byte(lease)},
	}, []string{pw1, pw2, pw3, token}
}

// Dead letters never keep a plaintext secret: the password-like fields of
// a JSON body and anything token-shaped are redacted before the dead
// letter is stored, and so are the same in a body that is not valid JSON,
// even with the closing quote cut off. What is not secret is kept.
func contractDeadLettersHoldNoSecrets(t *testing.T, h sourceHarness) {
	st := newLedger(t)
	recs, secrets := secretEntries(t)
	h.publish(t, recs...)
	src := h.start(t, st, runOpts{batch: 10})
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	dls := h.deadLetters(t)
	if len(dls) != len(recs) {
		t.Fatalf("%d dead letters, want %d", len(dls), len(recs))
	}
	for i, d := range dls {
		for _, s := range secrets {
			if strings.Contains(string(d.value), s) || strings.Contains(d.reason, s) {
				t.Errorf("dead letter %d keeps a secret: %.200s (reason %q)", i, d.value, d.reason)
			}
		}
		if d.reason == "" || !strings.Contains(string(d.value), "[redacted]") {
			t.Errorf("dead letter %d: reason %q, body %.200s", i, d.reason, d.value)
		}
	}
	if i := slices.IndexFunc(dls, func(d storedDeadLetter) bool { return strings.Contains(string(d.value), `"id":"r-cut"`) }); i < 0 ||
		!strings.HasSuffix(string(dls[i].value), `"username":"v-x","password":"[redacted]`) {
		t.Errorf("the cut entry is not kept up to its password")
	}
}

// Stopping mid-stream finishes the batch in hand: everything the ledger
// applied is acknowledged, nothing else is; the next consumer applies the
// rest.
func contractGracefulShutdown(t *testing.T, h sourceHarness) {
	st := newLedger(t)
	log := newLeaseLog(st)
	log.delay = 20 * time.Millisecond
	recs := interleave(stories(t, "stop", 40, 5))
	h.publish(t, recs...)
	src := h.start(t, log, runOpts{batch: 10})
	waitUntil(t, "three batches", 10*time.Second, func() bool { return log.count() >= 30 })
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	applied := log.count()
	if applied >= len(recs) {
		t.Fatalf("the source finished before it was stopped")
	}
	// Acknowledgements may be asynchronous; they settle on the applied
	// count.
	waitUntil(t, "acks to settle", 5*time.Second, func() bool { return h.acked(t) == applied })

	// That they never pass it shows once the next consumer has drained the
	// rest: a record acknowledged and not applied by the first is never
	// delivered again, and is missing from the two runs together.
	rest := newLeaseLog(st)
	src = h.start(t, rest, runOpts{batch: 10})
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !sameSet(append(log.events(), rest.events()...), expectedEvents(t, recs)) {
		t.Errorf("the two runs together did not apply every event: the first acknowledged records it had not applied")
	}
	if n := countLeaseEvents(t, st); n != len(recs) {
		t.Errorf("ledger holds %d events, want %d", n, len(recs))
	}
}

// A slow ledger slows fetching down: the records fetched and not yet
// acknowledged stay bounded, and each ledger transaction holds at most a
// batch.
func contractBackPressure(t *testing.T, h sourceHarness) {
	st := newLedger(t)
	log := newLeaseLog(st)
	log.delay = 15 * time.Millisecond
	recs := interleave(stories(t, "slow", 60, 5))
	h.publish(t, recs...)
	o := runOpts{batch: 10, ahead: 20}
	src := h.start(t, log, o)
	bound := h.aheadBound(o)
	peak := 0
	deadline := time.Now().Add(30 * time.Second)
	for h.acked(t) < len(recs) {
		if time.Now().After(deadline) {
			t.Fatalf("not drained in time: %d of %d acknowledged", h.acked(t), len(recs))
		}
		n := src.inFlight()
		peak = max(peak, n)
		if n > bound {
			t.Fatalf("%d records fetched and not acknowledged, bound %d", n, bound)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	if peak == 0 {
		t.Error("never saw a record in flight")
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.maxBatch > o.batch {
		t.Errorf("a ledger transaction held %d events, batch is %d", log.maxBatch, o.batch)
	}
	t.Logf("peak in flight %d (bound %d), %d transactions", peak, bound, log.applies)
}

// While the ledger fails, nothing is acknowledged and the source keeps
// trying; once it is back every event is applied.
func contractTransientLedgerFailure(t *testing.T, h sourceHarness) {
	st := newLedger(t)
	log := newLeaseLog(st)
	log.down.Store(true)
	recs := interleave(stories(t, "flaky", 10, 4))
	h.publish(t, recs...)
	src := h.start(t, log, runOpts{batch: 10})
	waitUntil(t, "three failed ledger transactions", 10*time.Second, func() bool { return log.failed.Load() >= 3 })
	if n := h.acked(t); n != 0 {
		t.Fatalf("%d records acknowledged while the ledger is down", n)
	}
	log.down.Store(false)
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !sameSet(log.events(), expectedEvents(t, recs)) {
		t.Errorf("not every event was applied after the ledger recovered")
	}
	if c, err := st.CountLeases(context.Background()); err != nil || c["revoked"] != 10 {
		t.Errorf("lease counts %v, %v", c, err)
	}
}
