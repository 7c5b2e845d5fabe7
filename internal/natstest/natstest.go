package natstest

import (
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
)

// Server is an embedded JetStream server owned by one test.
type Server struct {
	*bus.Embedded
	Creds *bus.Credentials
}

// Config chooses the store, the listener and the credentials of a test
// server; the zero value is Start's.
type Config struct {
	StoreDir    string           // default: a temp dir
	Listen      string           // host:port; default: no listener
	Credentials *bus.Credentials // default: generated in a temp dir
}

// Start runs a fresh JetStream server for t with no listener.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Config{})
}

// StartWith runs a JetStream server for t as cfg says.
func StartWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	if cfg.Credentials == nil {
		cfg.Credentials = NewCredentials(t)
	}
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: cfg.StoreDir, Listen: cfg.Listen, Credentials: cfg.Credentials})
	if err != nil {
		t.Fatalf("start embedded jetstream: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return &Server{Embedded: e, Creds: cfg.Credentials}
}

// NewCredentials generates the nkeys of every user in a temp dir.
func NewCredentials(t testing.TB) *bus.Credentials {
	t.Helper()
	creds, err := bus.LoadOrCreateCredentials(filepath.Join(t.TempDir(), "nats"), bus.UserLeaseguard, bus.UserShipper, bus.UserSIEM)
	if err != nil {
		t.Fatalf("nats credentials: %v", err)
	}
	return creds
}

// Connect opens an in-process connection as leaseguard, closed at cleanup.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	own, err := s.ConnectOptions()
	if err != nil {
		t.Fatalf("connect options: %v", err)
	}
	nc, err := nats.Connect("", append(own, opts...)...)
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

// UserOption is the connect option that authenticates as user.
func (s *Server) UserOption(t testing.TB, user string) nats.Option {
	t.Helper()
	cr, ok := s.Creds.User(user)
	if !ok {
		t.Fatalf("no credentials for %s", user)
	}
	o, err := cr.Option()
	if err != nil {
		t.Fatal(err)
	}
	return o
}
