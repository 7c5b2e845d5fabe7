package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
)

// TestPipelineKafka: audit entries arrive on a Kafka topic inside a
// shipper's envelope; the expired user is dropped and its evidence reaches
// both the Kafka evidence topic (keyed <database>/<user>) and JetStream.
func TestPipelineKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(2, "vault.audit", "vault.leases"), kfake.SeedTopics(1, "leaseguard.deadletter", "leaseguard.evidence"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	admin := pgtest.Pool(t)
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_kafka"))
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	// The observer's rules act on the whole shared test server; its own
	// package tests cover it with test-unique patterns.
	t.Setenv("LEASEGUARD_ROLES", "ingest,detectors,revoker,relay")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_EXPIRY_GRACE", "1s")
	t.Setenv("LEASEGUARD_DETECT_INTERVAL", "200ms")
	t.Setenv("LEASEGUARD_ENFORCE_SCOPE", "*") // nothing is enforced without a scope
	t.Setenv("LEASEGUARD_KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("LEASEGUARD_KAFKA_ENVELOPE_FIELD", "message")
	t.Setenv("LEASEGUARD_EVIDENCE_SINKS", "nats,kafka")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()

	sim := &vaultsim.Sim{Pool: admin, Mount: "postgres", DisplayName: "token", EntityID: "ent", RemoteAddress: "10.0.0.9"}
	cred, lines, err := sim.Issue(ctx, "kafka", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, admin, cred.Username)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "vault.audit", RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	for _, l := range lines {
		// Vector's and Filebeat's shape: the raw line under "message".
		env := `{"host":"vault-1","message":` + jsonString(string(l)) + `}`
		if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(env)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, ctx, 30*time.Second, "user dropped", func() bool { return !roleExists(ctx, admin, cred.Username) })

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: "leaseguard.evidence", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	key := cfg.targetName() + "/" + cred.Username
	for {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		m, err := r.ReadMessage(rctx)
		rcancel()
		if err != nil {
			t.Fatalf("no dropped evidence on the Kafka topic: %v", err)
		}
		if string(m.Key) == key && strings.Contains(string(m.Value), `"outcome":"dropped"`) {
			var ct string
			for _, h := range m.Headers {
				if strings.EqualFold(h.Key, "content-type") {
					ct = string(h.Value)
				}
			}
			if !strings.HasPrefix(ct, "application/cloudevents+json") {
				t.Errorf("content-type = %q", ct)
			}
			break
		}
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
