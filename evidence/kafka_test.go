package evidence

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// startKafka runs an in-process Kafka broker with the evidence topic in
// three partitions, closed at cleanup.
func startKafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, DefaultKafkaTopic)}, opts...)...)
	if err != nil {
		t.Fatalf("start kafka: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func newKafkaPublisher(t testing.TB, brokers []string) *KafkaPublisher {
	t.Helper()
	p, err := NewKafkaPublisher(KafkaConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close publisher: %v", err)
		}
	})
	return p
}

// userEvents builds n findings about three users in turn, so each user has
// several events.
func userEvents(t testing.TB, n int) []Event {
	t.Helper()
	b := testBuilder()
	out := make([]Event, 0, n)
	for k := range n {
		user := sampleCommand(k % 3)
		f := sampleFinding(k)
		f.DBUser, f.LeaseID = user.DBUser, user.LeaseID
		ev, err := b.Finding(f, sampleLease(k%3))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// consumeEvidence reads the evidence topic as a SIEM would, a consumer
// group over every partition, until it has seen n distinct events.
func consumeEvidence(t testing.TB, brokers []string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, GroupID: "siem", Topic: DefaultKafkaTopic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []kafka.Message
	seen := map[string]bool{}
	for len(seen) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read evidence: %d of %d events: %v", len(seen), n, err)
		}
		out = append(out, m)
		if ev, err := decodeEvent(m.Value); err == nil {
			seen[ev.ID] = true
		}
	}
	return out
}

// outboxBodies returns each event's bytes as stored in the outbox, by id.
func outboxBodies(t testing.TB, pool *pgxpool.Pool) map[string][]byte {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event FROM evidence_outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		ev, err := decodeEvent(raw)
		if err != nil {
			t.Fatal(err)
		}
		out[ev.ID] = raw
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkKafkaEvidence asserts that msgs hold the outbox's events, each at
// least once, in structured mode, keyed by subject, each key's events in
// chain order, and that together they verify as a chain.
func checkKafkaEvidence(t testing.TB, pool *pgxpool.Pool, msgs []kafka.Message) {
	t.Helper()
	bodies := outboxBodies(t, pool)
	lastSeq := map[string]int64{}
	bySeq := map[int64][]byte{}
	for i, m := range msgs {
		ev, err := decodeEvent(m.Value)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !bytes.Equal(m.Value, bodies[ev.ID]) {
			t.Errorf("record %d (%s) is not byte-identical to the outbox row", i, ev.ID)
		}
		if string(m.Key) != ev.Subject || ev.Subject == "" {
			t.Errorf("record %d: key %q, subject %q", i, m.Key, ev.Subject)
		}
		var ct []string
		for _, h := range m.Headers {
			if h.Key == "content-type" {
				ct = append(ct, string(h.Value))
			}
		}
		if len(ct) != 1 || ct[0] != "application/cloudevents+json; charset=UTF-8" {
			t.Errorf("record %d: content-type headers %q", i, ct)
		}
		// Records of one key come in one partition's order: the chain's
		// (a republished event may repeat an earlier one).
		if _, again := bySeq[ev.ChainSeq]; !again && ev.ChainSeq < lastSeq[ev.Subject] {
			t.Errorf("subject %s: chain seq %d after %d", ev.Subject, ev.ChainSeq, lastSeq[ev.Subject])
		}
		lastSeq[ev.Subject] = ev.ChainSeq
		bySeq[ev.ChainSeq] = m.Value
	}
	if len(bySeq) != len(bodies) {
		t.Fatalf("the topic holds %d distinct events, the outbox %d", len(bySeq), len(bodies))
	}
	seqs := make([]int64, 0, len(bySeq))
	for s := range bySeq {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	var file bytes.Buffer
	for _, s := range seqs {
		file.Write(bySeq[s])
		file.WriteByte('\n')
	}
	rep, err := VerifyFile(&file, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != len(bodies) {
		t.Fatalf("verify the events read from kafka: %+v %v", rep, err)
	}
}

func TestKafkaPublisherStructuredMode(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	brokers := startKafka(t).ListenAddrs()
	var m countMetrics
	cfg := fastRelayConfig(&m)
	r, err := NewRelay(pool, newKafkaPublisher(t, brokers), cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	for _, ev := range userEvents(t, n) {
		appendOne(t, pool, ev)
	}
	ctx := context.Background()
	for range 2 {
		if _, err := r.PublishPending(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := unpublished(t, pool); got != 0 || m.published.Load() != n {
		t.Fatalf("%d unpublished, %d published", got, m.published.Load())
	}
	msgs := consumeEvidence(t, brokers, n)
	checkKafkaEvidence(t, pool, msgs)
	keys := map[string]bool{}
	for _, m := range msgs {
		keys[string(m.Key)] = true
	}
	if len(keys) != 3 {
		t.Errorf("%d keys, want one per user (3)", len(keys))
	}
}

// With the brokers down, Publish fails, the relay keeps the events in the
// outbox and retries; when the brokers are back every event arrives.
func TestKafkaRelayBrokerDownThenUp(t *testing.T) {
	t.Parallel()
	pool := testDB(t)
	dataDir := t.TempDir()
	var mu sync.Mutex
	cluster := startKafka(t, kfake.DataDir(dataDir))
	brokers := cluster.ListenAddrs()
	_, portText, err := net.SplitHostPort(brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	pub := newKafkaPublisher(t, brokers)
	var m countMetrics
	cfg := fastRelayConfig(&m)
	r, err := NewRelay(pool, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	events := userEvents(t, 20)
	for _, ev := range events[:5] {
		appendOne(t, pool, ev)
	}
	if n, err := r.PublishPending(ctx); err != nil || n != 5 {
		t.Fatalf("before the outage: %d, %v", n, err)
	}

	mu.Lock()
	cluster.Close()
	mu.Unlock()
	// Publish itself reports the outage.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err = pub.Publish(pctx, events[5], []byte(`{}`))
	cancel()
	if err == nil || !strings.Contains(err.Error(), events[5].ID) {
		t.Fatalf("publish with the broker down: %v", err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	for _, ev := range events[5:] {
		appendOne(t, pool, ev)
	}
	waitFor(t, "failed publishes while Kafka is down", 10*time.Second, func() bool { return m.failed.Load() >= 2 })
	if got := unpublished(t, pool); got != 15 {
		t.Fatalf("%d unpublished while Kafka is down, want 15", got)
	}

	mu.Lock()
	restarted, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dataDir))
	mu.Unlock()
	if err != nil {
		t.Fatalf("restart kafka on port %d: %v", port, err)
	}
	t.Cleanup(restarted.Close)
	waitFor(t, "the outbox to drain", 30*time.Second, func() bool { return unpublished(t, pool) == 0 })
	checkKafkaEvidence(t, pool, consumeEvidence(t, brokers, 20))
	var attempts int
	if err := pool.QueryRow(ctx, `SELECT max(publish_attempts) FROM evidence_outbox`).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts < 2 {
		t.Errorf("max publish_attempts %d; the outage left no trace", attempts)
	}
}

func TestKafkaConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (KafkaConfig{Brokers: []string{"k:9092"}}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c := (KafkaConfig{}).WithDefaults(); c.Topic != DefaultKafkaTopic || c.MaxAttempts != 3 {
		t.Errorf("defaults = %+v", c)
	}
	bad := map[string]KafkaConfig{
		"no brokers":     {},
		"no port":        {Brokers: []string{"k"}},
		"bad topic":      {Brokers: []string{"k:9092"}, Topic: "leaseguard evidence"},
		"dot topic":      {Brokers: []string{"k:9092"}, Topic: ".."},
		"negative tries": {Brokers: []string{"k:9092"}, MaxAttempts: -1},
	}
	for name, c := range bad {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := NewKafkaPublisher(c); err == nil {
			t.Errorf("%s: publisher built", name)
		}
	}
}
