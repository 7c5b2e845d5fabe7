package main

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestStreamsHaveTheConfiguredReplicas: on a three-server JetStream
// cluster, every stream a full leaseguard creates has three replicas, and
// a stream created earlier with one is raised to three.
func TestStreamsHaveTheConfiguredReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	urls := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// An installation that ran before the setting existed: R1. A request
	// to the JetStream API can go unanswered while a new cluster's meta
	// leader settles (once in CI, for 90 s): it is asked again, as a
	// client would, each time for 10 s.
	for {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := js.CreateStream(actx, jetstream.StreamConfig{Name: "LEASEGUARD_REVOCATIONS",
			Subjects: []string{"leaseguard.revocations"}, Retention: jetstream.WorkQueuePolicy, Replicas: 1})
		acancel()
		if err == nil {
			break
		}
		if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_replicas"))
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_NATS_URL", urls)
	t.Setenv("LEASEGUARD_STREAM_REPLICAS", "3")
	t.Setenv("LEASEGUARD_ROLES", "ingest,detectors,revoker,relay,observer")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	want := []string{"LEASEGUARD_DB", "LEASEGUARD_DEADLETTER", "LEASEGUARD_EVIDENCE", "LEASEGUARD_REVOCATIONS", "VAULT_AUDIT"}
	var got []string
	for name := range js.StreamNames(ctx).Name() {
		got = append(got, name)
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("streams %v, want %v", got, want)
	}
}

// TestStreamReplicasNeedsACluster: the embedded server is one server.
func TestStreamReplicasNeedsACluster(t *testing.T) {
	for _, c := range []struct{ natsURL, replicas, want string }{
		{"", "3", `LEASEGUARD_STREAM_REPLICAS="3": the embedded JetStream server (LEASEGUARD_NATS_URL empty) is one server: only 1 replica`},
		{"nats://127.0.0.1:4222", "7", `LEASEGUARD_STREAM_REPLICAS="7": outside 1..5 (JetStream's limit)`},
	} {
		onlyEnv(t, map[string]string{"LEASEGUARD_NATS_URL": c.natsURL, "LEASEGUARD_STREAM_REPLICAS": c.replicas})
		_, err := loadConfig()
		if err == nil || err.Error() != c.want {
			t.Errorf("STREAM_REPLICAS=%s, NATS_URL=%q: %v\nwant: %s", c.replicas, c.natsURL, err, c.want)
		}
	}
}
