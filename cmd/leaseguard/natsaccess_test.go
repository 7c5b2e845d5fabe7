package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// startEmbeddedPipeline runs the pipeline on its embedded JetStream with
// the given extra environment; the caller stops it.
func startEmbeddedPipeline(t *testing.T, ctx context.Context, dataDir string, env map[string]string) (*pipeline, *syncBuffer) {
	t.Helper()
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_natsaccess"))
	t.Setenv("LEASEGUARD_DATA_DIR", dataDir)
	t.Setenv("LEASEGUARD_ROLES", "ingest,relay")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p, err := startPipeline(ctx, cfg, newLogger(logs, "debug", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, logs
}

// attackAnonymously is what an unauthenticated local client tried on the
// embedded server: connect, list the streams, delete the evidence stream.
// It reports what it managed to do.
func attackAnonymously(t *testing.T, ctx context.Context, url string) []string {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return nil
	}
	defer nc.Close()
	did := []string{"connected anonymously to " + url}
	js, err := jetstream.New(nc)
	if err != nil {
		return did
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if names := js.StreamNames(ctx); names.Err() == nil {
		for n := range names.Name() {
			did = append(did, "listed stream "+n)
		}
	}
	if err := js.DeleteStream(ctx, "LEASEGUARD_EVIDENCE"); err == nil {
		did = append(did, "deleted LEASEGUARD_EVIDENCE")
	}
	return did
}

// By default the embedded JetStream opens no socket: nothing outside the
// process can reach it, let alone without credentials.
func TestEmbeddedNATSDefaultHasNoListener(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, _ := startEmbeddedPipeline(t, ctx, t.TempDir(), nil)
	defer p.stop()
	if url := p.embedded.URL(); url != "" {
		t.Errorf("embedded JetStream listens on %s with no LEASEGUARD_NATS_LISTEN", url)
		if did := attackAnonymously(t, ctx, url); len(did) > 0 {
			t.Errorf("an anonymous client: %s", strings.Join(did, "; "))
		}
	}
	// leaseguard itself still works, in-process.
	if _, err := p.js.Stream(ctx, "LEASEGUARD_EVIDENCE"); err != nil {
		t.Errorf("leaseguard's own connection: %v", err)
	}
}

// With LEASEGUARD_NATS_LISTEN the embedded server listens, refuses
// anonymous clients, and leaseguard generates the users' nkeys in
// DATA_DIR (0600 in a 0700 directory), logs their paths but never a seed,
// and reuses them after a restart.
func TestEmbeddedNATSListenRequiresCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dataDir := t.TempDir()
	env := map[string]string{"LEASEGUARD_NATS_LISTEN": "127.0.0.1:0"}
	p, logs := startEmbeddedPipeline(t, ctx, dataDir, env)
	url := p.embedded.URL()
	if url == "" {
		p.stop()
		t.Fatal("LEASEGUARD_NATS_LISTEN set, but the embedded server has no listener")
	}
	if did := attackAnonymously(t, ctx, url); len(did) > 0 {
		t.Errorf("an anonymous client: %s", strings.Join(did, "; "))
	}
	first := credentialFiles(t, dataDir)
	shipAndRead(t, ctx, url, dataDir)
	for user, seed := range first {
		path := filepath.Join(dataDir, "nats", user+".nk")
		if !strings.Contains(logs.String(), path) {
			t.Errorf("the log does not name %s", path)
		}
		if strings.Contains(logs.String(), seed) {
			t.Errorf("the log holds the seed of %s", user)
		}
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}

	p, _ = startEmbeddedPipeline(t, ctx, dataDir, env)
	defer p.stop()
	for user, seed := range credentialFiles(t, dataDir) {
		if seed != first[user] {
			t.Errorf("the seed of %s changed across a restart", user)
		}
	}
}

// shipAndRead: with the generated seed files, a shipper publishes an audit
// entry with a JetStream ack and a SIEM reader pulls evidence from the
// consumer leaseguard made for it.
func shipAndRead(t *testing.T, ctx context.Context, url, dataDir string) {
	t.Helper()
	seed := func(user string) nats.Option {
		o, err := nats.NkeyOptionFromSeed(filepath.Join(dataDir, "nats", user+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	shipper := natstest.MustDial(t, url, seed("shipper"))
	if ack, err := shipper.JS.Publish(ctx, "vault.audit.file", []byte(`{"type":"request"}`)); err != nil || ack.Stream != "VAULT_AUDIT" {
		t.Errorf("shipper publishes an audit entry: %+v %v", ack, err)
	}
	shipper.ExpectPublishDenied(t, "leaseguard.revocations")
	siem := natstest.MustDial(t, url, seed("siem"))
	c, err := siem.JS.Consumer(ctx, "LEASEGUARD_EVIDENCE", "siem")
	if err != nil {
		t.Fatalf("siem's consumer: %v", err)
	}
	if _, err := c.Info(ctx); err != nil {
		t.Errorf("siem reads its consumer: %v", err)
	}
	siem.ExpectPublishDenied(t, "leaseguard.evidence")
}

// credentialFiles checks the nkey directory and files and returns each
// user's seed.
func credentialFiles(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	dir := filepath.Join(dataDir, "nats")
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("credentials directory: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("%s has mode %v, want 0700", dir, perm)
	}
	out := map[string]string{}
	for _, user := range []string{"leaseguard", "shipper", "siem"} {
		path := filepath.Join(dir, user+".nk")
		info, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			t.Errorf("no credentials for %s at %s", user, path)
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", path, perm)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		seed := strings.TrimSpace(string(b))
		if !strings.HasPrefix(seed, "SU") {
			t.Errorf("%s holds no user nkey seed", path)
		}
		out[user] = seed
	}
	return out
}

// A listener address that cannot be used as written, or one given with an
// outside cluster (where it would mean nothing), is refused and named.
func TestNATSListenRefused(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no port":       {"LEASEGUARD_NATS_LISTEN": "localhost"},
		"no host":       {"LEASEGUARD_NATS_LISTEN": ":4222"},
		"bad port":      {"LEASEGUARD_NATS_LISTEN": "127.0.0.1:http"},
		"with NATS_URL": {"LEASEGUARD_NATS_LISTEN": "127.0.0.1:4222", "LEASEGUARD_NATS_URL": "nats://nats-1:4222"},
		"odd subject":   {"LEASEGUARD_NATS_LISTEN": "127.0.0.1:4222", "LEASEGUARD_AUDIT_SUBJECT": `vault.audit.> ] }`},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			code, _, stderr := runMain(t, "", "config")
			if code != exitConfig || !strings.Contains(stderr, "LEASEGUARD_NATS_LISTEN") {
				t.Errorf("exit %d, want %d naming LEASEGUARD_NATS_LISTEN: %s", code, exitConfig, stderr)
			}
		})
	}
}
