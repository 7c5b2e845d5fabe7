package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestProcessesWithKeysTheOtherRefusesDoNotStart: two processes sharing a
// state store, each with a key of its own (as two data directories give
// them): the second refuses to start (exit 3) and says which setting to fix
// on which side; a process that neither issues nor carries out commands
// joins.
func TestProcessesWithKeysTheOtherRefusesDoNotStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	schema := pgtest.Schema(t, "lg_nodes")
	start := func(roles string) (*pipeline, error) {
		t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
		t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
		t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir()) // a key of its own
		t.Setenv("LEASEGUARD_NATS_URL", "")
		t.Setenv("LEASEGUARD_TARGETS", "")
		t.Setenv("LEASEGUARD_COMMAND_SIGNING_KEY", "")
		t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
		t.Setenv("LEASEGUARD_ROLES", roles)
		t.Setenv("LEASEGUARD_MANAGED_ROLE_PATTERN", "^v-nodes-test-never-")
		cfg, err := loadConfig()
		if err != nil {
			t.Fatal(err)
		}
		return startPipeline(ctx, cfg, newLogger(io.Discard, "info", "json"), nil)
	}
	first, err := start("detectors,revoker")
	if err != nil {
		t.Fatal(err)
	}
	defer first.stop()
	_, err = start("detectors,revoker")
	var ce configError
	if !errors.As(err, &ce) || !containsAll(err.Error(), "LEASEGUARD_COMMAND_VERIFY_KEYS", "does not accept this process's signing key",
		"this process does not accept the signing key") {
		t.Fatalf("second process with its own key: %v, want a configuration error naming the settings", err)
	}
	relay, err := start("ingest,relay")
	if err != nil {
		t.Fatalf("an ingest-only process did not join: %v", err)
	}
	_ = relay.stop()
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
