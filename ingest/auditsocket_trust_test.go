package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/ingest"
)

// logBuffer collects log output written from the source's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runSocket binds and serves cfg; stop ends Run and reports its error
// (also called at cleanup, once).
func runSocket(t *testing.T, cfg ingest.AuditSocketConfig, js jetstream.JetStream, metrics *ingest.Metrics, logger *slog.Logger) (s *ingest.AuditSocket, stop func()) {
	t.Helper()
	s, err := ingest.NewAuditSocket(cfg, js, metrics, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("socket: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("socket source did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func socketConfig(addr string) ingest.AuditSocketConfig {
	return ingest.AuditSocketConfig{DirectConfig: directConfig("vault.audit.socket"), Addr: addr}
}

// closedByPeer reports whether the server closed c: a read ends in EOF or
// a reset rather than the deadline.
func closedByPeer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// A peer outside the allow-list is closed on at once, counted and logged
// by address; nothing it sent is read, so nothing reaches a stream.
func TestAuditSocketRefusesPeersOutsideTheAllowList(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	reg := prometheus.NewRegistry()
	logs := &logBuffer{}
	cfg := socketConfig("127.0.0.1:0")
	cfg.AllowedNets = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	s, _ := runSocket(t, cfg, js, ingest.NewMetrics(reg), slog.New(slog.NewJSONHandler(logs, nil)))

	forged := entries("forged", 3)
	c := dial(t, s.Addr().String())
	_, _ = c.Write([]byte(lines(forged...))) // may already be refused
	if !closedByPeer(t, c) {
		t.Fatal("a connection from outside the allow-list stayed open")
	}
	waitMetric(t, reg, "leaseguard_ingest_audit_socket_refused_total", nil, 1)

	if got := streamMessages(t, js, directStream, "vault.audit.socket"); len(got) != 0 {
		t.Errorf("a refused peer's lines were stored: %v", dataOf(got))
	}
	if got := streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit"); len(got) != 0 {
		t.Errorf("a refused peer's lines were dead-lettered: %v", dataOf(got))
	}
	if v, _ := metricValue(t, reg, "leaseguard_ingest_audit_socket_connections_total", nil); v != 0 {
		t.Errorf("a refused connection counted as accepted: %v", v)
	}
	if v, _ := metricValue(t, reg, "leaseguard_ingest_audit_socket_clients", nil); v != 0 {
		t.Errorf("a refused connection counted as a client: %v", v)
	}
	log := logs.String()
	if !strings.Contains(log, "refused") || !strings.Contains(log, `"peer":"127.0.0.1:`) {
		t.Errorf("the refusal is not logged with the peer's address:\n%s", log)
	}
	if strings.Contains(log, "forged-") {
		t.Errorf("the refused peer's data reached the log:\n%s", log)
	}

	// A second refused peer counts again.
	c2 := dial(t, s.Addr().String())
	if !closedByPeer(t, c2) {
		t.Fatal("the second refused connection stayed open")
	}
	waitMetric(t, reg, "leaseguard_ingest_audit_socket_refused_total", nil, 2)
}

// A peer inside the allow-list is served; an IPv4 peer of a dual-stack
// listener (an IPv4-mapped IPv6 address) is matched as IPv4.
func TestAuditSocketAcceptsAllowedPeers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, addr, nets string }{
		{"loopback listener, exact allow-list", "127.0.0.1:0", "127.0.0.1/32"},
		{"dual-stack listener, IPv4 allow-list", ":0", "::1/128,127.0.0.0/8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js := directStreams(t, 2*time.Minute)
			reg := prometheus.NewRegistry()
			cfg := socketConfig(tc.addr)
			for _, n := range strings.Split(tc.nets, ",") {
				cfg.AllowedNets = append(cfg.AllowedNets, netip.MustParsePrefix(n))
			}
			s, _ := runSocket(t, cfg, js, ingest.NewMetrics(reg), nil)
			_, port, _ := net.SplitHostPort(s.Addr().String())
			c := dial(t, net.JoinHostPort("127.0.0.1", port))
			e := entries("allowed", 2)
			send(t, c, lines(e...))
			waitLines(t, js, "vault.audit.socket", e)
			if v, _ := metricValue(t, reg, "leaseguard_ingest_audit_socket_refused_total", nil); v != 0 {
				t.Errorf("refused %v connections of an allowed peer", v)
			}
		})
	}
}

// Vault's socket device with socket_type=unix: the socket file gets the
// configured mode, entries flow, and the file is removed at shutdown.
func TestAuditSocketUnixEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode os.FileMode
		want os.FileMode
	}{
		{"default mode", 0, 0o660},
		{"configured mode", 0o640, 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js := directStreams(t, 2*time.Minute)
			path := filepath.Join(t.TempDir(), "audit.sock")
			cfg := socketConfig("unix:" + path)
			cfg.Mode = tc.mode
			reg := prometheus.NewRegistry()
			s, stop := runSocket(t, cfg, js, ingest.NewMetrics(reg), nil)
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != tc.want {
				t.Errorf("socket file mode %v, want a socket with %v", fi.Mode(), tc.want)
			}
			if got := s.Addr().String(); got != path {
				t.Errorf("Addr %q, want %q", got, path)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) != 0 {
				t.Errorf("files left beside the socket: %v", left)
			}
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			e := entries("unix", 3)
			send(t, c, lines(e...))
			waitLines(t, js, "vault.audit.socket", e)
			waitMetric(t, reg, "leaseguard_ingest_audit_socket_connections_total", nil, 1)
			stop()
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file after shutdown: %v", err)
			}
		})
	}
}

// A socket file left by a crash is replaced; one something still listens
// on, or a file that is not a socket, is left alone and Listen fails.
func TestAuditSocketUnixExistingFile(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)

	t.Run("stale socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		_ = ln.Close() // as a crash leaves it
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("no stale socket to test with: %v", err)
		}
		_, _ = runSocket(t, socketConfig("unix:"+path), js, nil, nil)
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("the socket replacing a stale one: %v", err)
		}
		_ = c.Close()
	})

	t.Run("socket in use", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		s, err := ingest.NewAuditSocket(socketConfig("unix:"+path), js, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("Listen on a socket in use: %v", err)
		}
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_ = c.Close()
			}
			accepted <- err
		}()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("the other listener lost its socket: %v", err)
		}
		_ = c.Close()
		if err := <-accepted; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.sock")
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := ingest.NewAuditSocket(socketConfig("unix:"+path), js, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("Listen over a regular file: %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "precious" {
			t.Errorf("the file was changed: %q", b)
		}
	})
}

// The shutdown removes the socket file only while it is still the one
// bound: a file another process put there since is left alone.
func TestAuditSocketUnixShutdownKeepsAReplacedFile(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	path := filepath.Join(t.TempDir(), "audit.sock")
	_, stop := runSocket(t, socketConfig("unix:"+path), js, nil, nil)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	stop()
	if b, err := os.ReadFile(path); err != nil || string(b) != "someone else's" {
		t.Errorf("shutdown removed or changed a file it did not create: %q, %v", b, err)
	}
}

func TestAuditSocketConfigValidate(t *testing.T) {
	t.Parallel()
	long := "/" + strings.Repeat("d", 100) + "/audit.sock"
	for _, tc := range []struct {
		name string
		edit func(c *ingest.AuditSocketConfig)
		want string // "" = valid
	}{
		{"tcp", func(c *ingest.AuditSocketConfig) {}, ""},
		{"unix", func(c *ingest.AuditSocketConfig) { c.Addr = "unix:/run/leaseguard/audit.sock"; c.Mode = 0o600 }, ""},
		{"tcp without port", func(c *ingest.AuditSocketConfig) { c.Addr = "127.0.0.1" }, "address"},
		{"unix without path", func(c *ingest.AuditSocketConfig) { c.Addr = "unix:" }, "absolute"},
		{"unix relative path", func(c *ingest.AuditSocketConfig) { c.Addr = "unix:run/audit.sock" }, "absolute"},
		{"unix path too long", func(c *ingest.AuditSocketConfig) { c.Addr = "unix:" + long }, "long"},
		{"mode beyond permissions", func(c *ingest.AuditSocketConfig) { c.Addr = "unix:/run/a.sock"; c.Mode = 0o4660 }, "mode"},
		{"invalid prefix", func(c *ingest.AuditSocketConfig) { c.AllowedNets = []netip.Prefix{{}} }, "allowed"},
		{"negative idle timeout", func(c *ingest.AuditSocketConfig) { c.IdleTimeout = -time.Second }, "idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := socketConfig("127.0.0.1:9090")
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("valid configuration refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one about %q", err, tc.want)
			}
		})
	}
}
