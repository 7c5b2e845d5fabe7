package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/internal/natstest"
)

// TestWaitReplicasGivesUp: a stream whose replicas cannot all become
// current (a peer is down) makes the start fail with a clear error within
// the bound, even under a context without a deadline, instead of hanging.
func TestWaitReplicasGivesUp(t *testing.T) {
	urls, servers := natstest.StartClusterServers(t, 3)
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := bus.EnsureStream(ctx, js, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range servers {
		if !srv.JetStreamIsStreamLeader("$G", "R3") {
			srv.Shutdown() // a follower gone: the stream keeps quorum, not all replicas
			break
		}
	}
	defer bus.SetReplicaWait(bus.SetReplicaWait(2 * time.Second))
	start := time.Now()
	err = bus.WaitReplicas(context.Background(), s, 3)
	if err == nil {
		t.Fatal("WaitReplicas reported 3 current replicas with one server down")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("WaitReplicas gave up after %s, want about the 2s bound", took)
	}
	t.Log(err)
}
