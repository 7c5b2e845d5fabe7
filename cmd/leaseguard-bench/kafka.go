package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leaseguard/leaseguard/ingest"
)

// kafkaScenario: end-to-end ingest from an in-process Kafka broker (kfake)
// into the ledger, through the same KafkaSource run wires.
func (b *Bench) kafkaScenario(ctx context.Context) error {
	return b.e2eScenario(ctx, "kafka", b.kafkaRun)
}

const kafkaPartitions = 4

func (b *Bench) kafkaRun(ctx context.Context, r int, burst, paced *corpus) (e2eRun, error) {
	cfg := ingest.DefaultKafkaConfig()
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(kafkaPartitions, cfg.AuditTopic, cfg.LeaseTopic),
		kfake.SeedTopics(1, cfg.DeadLetterTopic),
	)
	if err != nil {
		return e2eRun{}, fmt.Errorf("start kafka: %w", err)
	}
	defer cluster.Close()

	rig, err := b.newIngestRig(ctx, b.schemaName(fmt.Sprintf("kafka%d", r+1)), benchRoleTTLs(true))
	if err != nil {
		return e2eRun{}, err
	}
	defer rig.close(b)

	cfg.Brokers = cluster.ListenAddrs()
	src, err := ingest.NewKafkaSource(cfg, rig.proc, rig.metrics, slog.New(slog.DiscardHandler))
	if err != nil {
		return e2eRun{}, err
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = src.Run(sctx) })
	defer func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			b.logf("kafka: source: %v", runErr)
		}
	}()

	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.AuditTopic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    1000,
		BatchTimeout: time.Millisecond,
		Transport:    transport,
	}
	defer w.Close()
	publish := func(ctx context.Context, c *corpus, lo, hi int) error {
		const window = 2000
		msgs := make([]kafka.Message, 0, window)
		for i := lo; i < hi; i += window {
			msgs = msgs[:0]
			for j := i; j < min(i+window, hi); j++ {
				c.stampTime(j, time.Now())
				// The request id as key keeps a pair in one partition, in order.
				msgs = append(msgs, kafka.Message{Key: c.keys[j], Value: c.lines[j]})
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return err
			}
		}
		return nil
	}
	// Warm up: the group has joined and one entry is through.
	warm := generateCorpus(1, 99)
	if err := publish(ctx, warm, 0, 1); err != nil {
		return e2eRun{}, err
	}
	if _, err := rig.waitProcessed(ctx, 1, time.Minute); err != nil {
		return e2eRun{}, fmt.Errorf("warm-up: %w", err)
	}
	return b.e2eRunOnce(ctx, rig, burst, paced, publish)
}
