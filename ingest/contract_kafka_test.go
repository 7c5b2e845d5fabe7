package ingest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leaseguard/leaseguard/ingest"
)

const (
	testAuditTopic      = "vault.audit"
	testLeaseTopic      = "vault.leases"
	testDeadLetterTopic = "leaseguard.deadletter"
	testPartitions      = 4
)

// startKafka runs an in-process Kafka broker holding the given topics,
// closed at cleanup.
func startKafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(testPartitions, testAuditTopic, testLeaseTopic),
		kfake.SeedTopics(1, testDeadLetterTopic),
	}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("start kafka: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// kafkaWriter is a producer for tests, closed at cleanup.
func kafkaWriter(t testing.TB, brokers []string) *kafka.Writer {
	t.Helper()
	transport := &kafka.Transport{}
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		Transport:    transport,
	}
	t.Cleanup(func() {
		w.Close()
		transport.CloseIdleConnections()
	})
	return w
}

// readTopic returns every record of one partition.
func readTopic(t testing.TB, broker, topic string, partition int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, partition)
	if err != nil {
		t.Fatalf("dial %s/%d: %v", topic, partition, err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		t.Fatalf("offsets of %s/%d: %v", topic, partition, err)
	}
	if _, err := conn.Seek(first, kafka.SeekAbsolute); err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for int64(len(out)) < last-first {
		if ctx.Err() != nil {
			t.Fatalf("read %s/%d: %d of %d records", topic, partition, len(out), last-first)
		}
		if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		b := conn.ReadBatch(1, 16<<20)
		for {
			m, err := b.ReadMessage()
			if err != nil {
				break
			}
			out = append(out, m)
		}
		_ = b.Close()
	}
	return out
}

// kafkaHarness runs the contract against an in-process Kafka broker.
type kafkaHarness struct {
	brokers []string
	w       *kafka.Writer
	client  *kafka.Client
	mu      sync.Mutex
	n       int
}

func newKafkaHarness(t *testing.T) sourceHarness {
	return harnessOn(t, startKafka(t).ListenAddrs())
}

// harnessOn drives the brokers; its connections close at cleanup.
func harnessOn(t *testing.T, brokers []string) *kafkaHarness {
	transport := &kafka.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return &kafkaHarness{
		brokers: brokers,
		w:       kafkaWriter(t, brokers),
		client:  &kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport, Timeout: 5 * time.Second},
	}
}

func testKafkaConfig(brokers []string, o runOpts) ingest.KafkaConfig {
	cfg := ingest.DefaultKafkaConfig()
	cfg.Brokers = brokers
	cfg.Batch = o.batch
	cfg.MaxWait = 100 * time.Millisecond
	cfg.QueueCapacity = 100
	if o.ahead > 0 {
		cfg.QueueCapacity = o.ahead
	}
	cfg.Backoff = []time.Duration{50 * time.Millisecond}
	cfg.ProcessTimeout = 10 * time.Second
	return cfg
}

func (h *kafkaHarness) publish(t *testing.T, recs ...testRecord) {
	t.Helper()
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		topic := testAuditTopic
		if r.lease {
			topic = testLeaseTopic
		}
		msgs[i] = kafka.Message{Topic: topic, Key: []byte(r.key), Value: r.value}
	}
	if err := h.w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
	h.mu.Lock()
	h.n += len(recs)
	h.mu.Unlock()
}

func (h *kafkaHarness) published() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func (h *kafkaHarness) start(t *testing.T, ledger ingest.Ledger, o runOpts) *runningSource {
	t.Helper()
	src, err := ingest.NewKafkaSource(testKafkaConfig(h.brokers, o), newProcessor(t, ledger), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.crash != nil {
		src.SetBeforeCommit(o.crash)
	}
	return runSource(t, src.Run, src.InFlight)
}

// acked is the sum of the group's committed offsets: every record before
// a partition's committed offset is finished.
func (h *kafkaHarness) acked(t *testing.T) int {
	t.Helper()
	partitions := make([]int, testPartitions)
	for i := range partitions {
		partitions[i] = i
	}
	res, err := h.client.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{
		GroupID: ingest.DefaultKafkaConfig().Group,
		Topics:  map[string][]int{testAuditTopic: partitions, testLeaseTopic: partitions},
	})
	if err == nil {
		err = res.Error
	}
	if errors.Is(err, kafka.GroupIdNotFound) {
		return 0 // the group has not joined yet
	}
	if err != nil {
		t.Fatalf("fetch committed offsets: %v", err)
	}
	n := 0
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil && !errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
				t.Fatalf("committed offset of %d: %v", p.Partition, p.Error)
			}
			n += int(max(p.CommittedOffset, 0))
		}
	}
	return n
}

func (h *kafkaHarness) deadLetters(t *testing.T) []storedDeadLetter {
	t.Helper()
	var out []storedDeadLetter
	for _, m := range readTopic(t, h.brokers[0], testDeadLetterTopic, 0) {
		d := storedDeadLetter{value: m.Value}
		for _, hd := range m.Headers {
			switch hd.Key {
			case ingest.HeaderReason:
				d.reason = string(hd.Value)
			case ingest.HeaderSourceTopic:
				d.source = string(hd.Value)
			case ingest.HeaderSourceOffset:
				d.offset = string(hd.Value)
			}
		}
		out = append(out, d)
	}
	return out
}

func (h *kafkaHarness) aheadBound(o runOpts) int {
	cfg := testKafkaConfig(h.brokers, o)
	return cfg.Batch + cfg.QueueCapacity
}
