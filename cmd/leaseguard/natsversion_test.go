package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// debianNATSServer is the distribution's nats-server, 2.9 on Debian 12:
// older than leaseguard needs.
const debianNATSServer = "/usr/sbin/nats-server"

// TestRunOnAnOldNATSServerSaysWhichVersionIsNeeded: run against
// nats-server 2.9 stops with an error naming the version it needs, not
// the server's "multiple consumer filter subjects not supported".
func TestRunOnAnOldNATSServerSaysWhichVersionIsNeeded(t *testing.T) {
	out, err := exec.Command(debianNATSServer, "--version").Output()
	if err != nil {
		t.Fatalf("%s (Debian's nats-server package, which the test set-up installs): %v", debianNATSServer, err)
	}
	if !strings.Contains(string(out), "v2.9.") {
		t.Fatalf("%s is %s; this test needs a server older than 2.10", debianNATSServer, strings.TrimSpace(string(out)))
	}
	url := startOldNATS(t)
	cfg, err := loadWith(t, map[string]string{
		"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_oldnats"),
		"LEASEGUARD_DATA_DIR": t.TempDir(), "LEASEGUARD_ROLES": "ingest", "LEASEGUARD_METRICS_ADDR": "127.0.0.1:0",
		"LEASEGUARD_NATS_URL": url, "LEASEGUARD_ALLOW_INSECURE": "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err == nil {
		p.stop()
		t.Fatal("run started against nats-server 2.9")
	}
	want := "is version 2.9.10; leaseguard needs nats-server 2.10.0 or later"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
}

// startOldNATS runs Debian's nats-server with JetStream on a free port
// until the test ends, and returns its URL once it accepts clients.
func startOldNATS(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(debianNATSServer, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server 2.9 did not accept clients: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling the server's port
	}
}
