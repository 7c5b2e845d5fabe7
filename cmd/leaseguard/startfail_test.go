package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestFailedStartStopsWhatItStarted: a part that fails to start after
// others are running (here the admin API, whose address is taken) must
// not leave those running against a store it has closed: startPipeline
// cancels them and waits for them before it returns the error.
func TestFailedStartStopsWhatItStarted(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	sum := sha256.Sum256([]byte("tok-" + pgtest.Suffix()))
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_startfail"))
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	t.Setenv("LEASEGUARD_ROLES", "ingest,relay")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_ADMIN_ADDR", taken.Addr().String())
	t.Setenv("LEASEGUARD_ADMIN_TOKENS", "dash:sha256:"+hex.EncodeToString(sum[:])+":read")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err == nil {
		p.stop()
		t.Fatal("the pipeline started although the admin API's address is taken")
	}
	// The parts ran in the pipeline's group: none may still be running.
	// Goroutines of the parts are named by their Run methods.
	if left := runningParts(); left != "" {
		t.Fatalf("after a failed start, parts still run:\n%s", left)
	}
}

// runningParts lists the goroutines still inside a leaseguard part's Run
// or loop (an empty string: none).
func runningParts() string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "leaseguard/ingest.(*ExpiryResolver).Run") ||
			strings.Contains(g, "leaseguard/ingest.(*NATSSource)") ||
			strings.Contains(g, "leaseguard/evidence.(*Relay)") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
