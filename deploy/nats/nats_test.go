// Package natsconf_test runs the shipped nats-server configuration in a real
// nats-server (the version go.mod pins, built by
// scripts/ensure-nats-server.sh; the test builds it when missing and fails,
// never skips, when it cannot) and checks what each user may do.
package natsconf_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/revoker"
)

const configFile = "nats-server.conf"

// natsServerBin builds or finds the pinned nats-server.
func natsServerBin(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("bash", "../../scripts/ensure-nats-server.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/ensure-nats-server.sh: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// TestShippedConfig starts nats-server with nats-server.conf (and the
// accounts.conf it includes) as shipped, with test keys and a test
// certificate in its environment, then checks every user's access.
func TestShippedConfig(t *testing.T) {
	bin := natsServerBin(t)
	creds := natstest.NewCredentials(t)
	tlsEnv, caFile := testCertificate(t)
	port := freePort(t)
	env := append(keyEnv(creds), tlsEnv...)
	startServer(t, bin, env, "-c", configCopy(t), "-a", "127.0.0.1", "-p", strconv.Itoa(port))

	option := func(user string) nats.Option {
		cr, _ := creds.User(user)
		o, err := cr.Option()
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	u := natstest.Users{
		URL:        "tls://127.0.0.1:" + strconv.Itoa(port),
		Common:     []nats.Option{nats.RootCAs(caFile)},
		Leaseguard: option(bus.UserLeaseguard),
		Shipper:    option(bus.UserShipper),
		SIEM:       option(bus.UserSIEM),
	}
	lg := waitReady(t, u)
	ensureLeaseguardStreams(t, lg.JS)
	natstest.CheckAccess(t, u)
}

// A key left out of the environment stops the server instead of leaving a
// user without one.
func TestShippedConfigNeedsEveryKey(t *testing.T) {
	bin := natsServerBin(t)
	tlsEnv, _ := testCertificate(t)
	env := keyEnv(natstest.NewCredentials(t))
	for i := range env {
		partial := append(append(append([]string{}, env[:i]...), env[i+1:]...), tlsEnv...)
		cmd := exec.Command(bin, "-t", "-c", configFile)
		cmd.Env = append(baseEnv(), partial...)
		out, err := cmd.CombinedOutput()
		name, _, _ := strings.Cut(env[i], "=")
		if err == nil {
			t.Errorf("without %s the configuration passes: %s", name, out)
		} else if !strings.Contains(string(out), name) {
			t.Errorf("without %s: %s", name, out)
		}
	}
	cmd := exec.Command(bin, "-t", "-c", configFile)
	cmd.Env = append(append(baseEnv(), env...), tlsEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("with every variable the configuration fails: %v\n%s", err, out)
	}
}

// configCopy copies the configuration files into a temp dir, with the
// JetStream store there too; nothing else changes.
func configCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	conf, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	const store = `store_dir: "/var/lib/nats/jetstream"`
	if !bytes.Contains(conf, []byte(store)) {
		t.Fatalf("%s no longer says %s", configFile, store)
	}
	conf = bytes.Replace(conf, []byte(store), []byte("store_dir: "+strconv.Quote(filepath.Join(dir, "jetstream"))), 1)
	accounts, err := os.ReadFile("accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{configFile: conf, "accounts.conf": accounts} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, configFile)
}

// ensureLeaseguardStreams creates, as leaseguard and with leaseguard's own
// code, every stream it keeps, and the consumer SIEM readers pull from.
func ensureLeaseguardStreams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := ingest.NewNATSSource(ingest.DefaultNATSConfig(), js, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.EnsureStreams(ctx); err != nil {
		t.Fatalf("audit and dead-letter streams: %v", err)
	}
	q, err := revoker.NewQueue(revoker.DefaultQueueConfig(), js)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.EnsureStream(ctx); err != nil {
		t.Fatalf("revocation stream: %v", err)
	}
	if _, err := evidence.EnsureStream(ctx, js, evidence.RelayConfig{}); err != nil {
		t.Fatalf("evidence stream: %v", err)
	}
	if err := observer.EnsureStream(ctx, js, observer.Config{}); err != nil {
		t.Fatalf("observer stream: %v", err)
	}
	if err := bus.EnsureSIEMConsumer(ctx, js, bus.DefaultAccess()); err != nil {
		t.Fatalf("siem consumer: %v", err)
	}
}

func keyEnv(creds *bus.Credentials) []string {
	var env []string
	for user, name := range map[string]string{bus.UserLeaseguard: "NATS_LEASEGUARD_NKEY", bus.UserShipper: "SHIPPER_NKEY", bus.UserSIEM: "SIEM_NKEY"} {
		cr, _ := creds.User(user)
		env = append(env, name+"="+cr.PublicKey)
	}
	return env
}

// baseEnv is this process's environment without the variables the
// configuration reads, so that only the test's values count.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "NATS_LEASEGUARD_NKEY", "SHIPPER_NKEY", "SIEM_NKEY", "NATS_TLS_CERT", "NATS_TLS_KEY":
		default:
			out = append(out, kv)
		}
	}
	return out
}

// startServer runs nats-server until the test ends.
func startServer(t *testing.T, bin string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(baseEnv(), env...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("nats-server output:\n%s", out.String())
		}
	})
}

// waitReady connects as leaseguard once the server accepts clients.
func waitReady(t *testing.T, u natstest.Users) *natstest.Client {
	t.Helper()
	opts := append(append([]nats.Option{}, u.Common...), u.Leaseguard)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := natstest.Dial(t, u.URL, opts...)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not accept leaseguard within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling the server's port
	}
}

// testCertificate makes a self-signed certificate for 127.0.0.1 and
// returns the environment naming its files, and the file to trust.
func testCertificate(t *testing.T) (env []string, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "leaseguard-nats-test"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return []string{"NATS_TLS_CERT=" + certFile, "NATS_TLS_KEY=" + keyFile}, certFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
