package bus_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/internal/natstest"
)

// Without Listen the server opens no socket of any kind; leaseguard still
// connects, in-process, and only with its nkey.
func TestEmbeddedWithoutListenerOpensNoSocket(t *testing.T) {
	srv := natstest.Start(t)
	s := srv.Server()
	if srv.URL() != "" || s.Addr() != nil {
		t.Errorf("client listener open: %q %v", srv.URL(), s.Addr())
	}
	if s.MonitorAddr() != nil || s.ClusterAddr() != nil || s.ProfilerAddr() != nil || s.GatewayAddr() != nil {
		t.Errorf("a listener is open: monitor %v cluster %v profiler %v gateway %v",
			s.MonitorAddr(), s.ClusterAddr(), s.ProfilerAddr(), s.GatewayAddr())
	}
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatalf("leaseguard in-process: %v", err)
	}
	// In-process clients authenticate too. A refused in-process client
	// only learns it when the server's write deadline (10 s) cuts the pipe:
	// both wait at once.
	for name, opts := range map[string][]nats.Option{
		"anonymous": {nats.InProcessServer(srv)},
		"shipper":   {nats.InProcessServer(srv), srv.UserOption(t, bus.UserShipper)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if nc, err := nats.Connect("", opts...); err == nil {
				nc.Close()
				t.Errorf("%s connected in-process to a server without a listener for it", name)
			}
		})
	}
}

// With a listener: anonymous and unknown clients are refused; leaseguard,
// the shipper and the SIEM can do what they need and no more.
func TestEmbeddedListenerAccess(t *testing.T) {
	srv := natstest.StartWith(t, natstest.Config{Listen: "127.0.0.1:0"})
	if srv.URL() == "" {
		t.Fatal("no listener")
	}
	natstest.CheckAccess(t, natstest.Users{
		URL:        srv.URL(),
		Leaseguard: srv.UserOption(t, bus.UserLeaseguard),
		Shipper:    srv.UserOption(t, bus.UserShipper),
		SIEM:       srv.UserOption(t, bus.UserSIEM),
	})
}

func TestEmbeddedConfigRefusals(t *testing.T) {
	lgOnly, err := bus.LoadOrCreateCredentials(filepath.Join(t.TempDir(), "n"), bus.UserLeaseguard)
	if err != nil {
		t.Fatal(err)
	}
	all := natstest.NewCredentials(t)
	for name, tc := range map[string]struct {
		cfg  bus.EmbeddedConfig
		want string
	}{
		"no credentials":         {bus.EmbeddedConfig{StoreDir: t.TempDir()}, "credentials of user leaseguard"},
		"listener without users": {bus.EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Credentials: lgOnly}, "shipper and siem"},
		"listen without host":    {bus.EmbeddedConfig{StoreDir: t.TempDir(), Listen: ":4222", Credentials: all}, "name the host"},
		"listen not host:port":   {bus.EmbeddedConfig{StoreDir: t.TempDir(), Listen: "localhost", Credentials: all}, "listen address"},
		"subject breaks config":  {bus.EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Credentials: all, Access: bus.Access{IngestSubjects: []string{`a" }`}, EvidenceSubject: "e", EvidenceStream: "E", SIEMConsumer: "s"}}, "not a plain subject"},
		"no store":               {bus.EmbeddedConfig{Credentials: all}, "store dir"},
	} {
		t.Run(name, func(t *testing.T) {
			e, err := bus.StartEmbedded(tc.cfg)
			if err == nil {
				e.Shutdown()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// Streams that an earlier version kept in the server's global account are
// leaseguard's after the upgrade, messages and all.
func TestEmbeddedAdoptsGlobalAccountStreams(t *testing.T) {
	dir := t.TempDir()
	old, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go old.Start()
	if !old.ReadyForConnections(10 * time.Second) {
		t.Fatal("old server not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := nats.Connect("", nats.InProcessServer(old))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LEASEGUARD_REVOCATIONS", Subjects: []string{"leaseguard.revocations"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "leaseguard.revocations", []byte("pending command")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()

	srv := natstest.StartWith(t, natstest.Config{StoreDir: dir})
	_, js = srv.Connect(t)
	s, err := js.Stream(ctx, "LEASEGUARD_REVOCATIONS")
	if err != nil {
		t.Fatalf("the old stream is gone: %v", err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("the old stream holds %d messages, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream", "$G")); !os.IsNotExist(err) {
		t.Errorf("the global account's store is still there: %v", err)
	}
}
