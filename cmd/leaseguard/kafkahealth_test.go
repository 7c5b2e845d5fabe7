package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestReadyzSeesKafkaGone: with a Kafka audit source, /readyz fails, naming
// Kafka, while no broker answers, and is ready again once one does, as it
// does for NATS and the state store. A source cut off from its brokers has
// no messages in hand, so its worker alone never looks stalled.
func TestReadyzSeesKafkaGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	port := freeTCPPort(t)
	topics := kfake.SeedTopics(1, "vault.audit", "vault.leases", "leaseguard.deadletter")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), topics)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_kafkahealth"),
		"LEASEGUARD_DATA_DIR": t.TempDir(), "LEASEGUARD_METRICS_ADDR": "127.0.0.1:0", "LEASEGUARD_ROLES": "ingest",
		"LEASEGUARD_KAFKA_BROKERS": strings.Join(cluster.ListenAddrs(), ","),
	} {
		t.Setenv(k, v)
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	readyz := func() (int, string) { return probe(t, p, "/readyz") }
	waitFor(t, ctx, 20*time.Second, "ready with the broker up", func() bool { code, _ := readyz(); return code == 200 })

	cluster.Close()
	waitFor(t, ctx, 20*time.Second, "not ready, naming kafka, with the broker gone", func() bool {
		code, body := readyz()
		return code == 503 && strings.Contains(body, "kafka")
	})

	cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), topics)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	waitFor(t, ctx, 20*time.Second, "ready again with the broker back", func() bool { code, _ := readyz(); return code == 200 })
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
