package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestRunStopsGracefully starts `leaseguard run` on an embedded JetStream
// and stops it the way SIGTERM does (context cancelled): exit 0, parts
// stopped, nothing left running.
func TestRunStopsGracefully(t *testing.T) {
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_run"))
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	// The observer's rules act on the whole shared test server; its own
	// package tests cover it with test-unique patterns.
	t.Setenv("LEASEGUARD_ROLES", "ingest,detectors,revoker,relay")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_LOG_FORMAT", "json")
	stderr := &syncBuffer{}
	m := NewMain(strings.NewReader(""), &syncBuffer{}, stderr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- m.Run(ctx, []string{"run"}) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"leaseguard running"`) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("run did not start: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run exited %d: %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop within 20s of the signal")
	}
	if !strings.Contains(stderr.String(), `"msg":"leaseguard stopping"`) {
		t.Errorf("no shutdown log: %s", stderr.String())
	}
}
