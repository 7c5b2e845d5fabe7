// Package natstest starts an embedded JetStream server for tests: random
// loopback port, store in the test's temp dir, shut down at cleanup.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
)

// Server is an embedded JetStream server owned by one test.
type Server struct {
	*bus.Embedded
}

// Start runs a fresh JetStream server for t.
func Start(t testing.TB) *Server {
	t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatalf("start embedded jetstream: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return &Server{Embedded: e}
}

// Connect opens a client connection to s, closed at cleanup.
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatalf("connect to embedded jetstream: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream context: %v", err)
	}
	return nc, js
}
