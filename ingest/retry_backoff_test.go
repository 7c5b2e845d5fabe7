package ingest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/ingest"
)

// TestRetryBackoffIsCapped: a batch that failed on the ledger (the state
// store down or silent) is retried at most 5 s apart however long the
// failure lasted, so ingest resumes within seconds of the store's return
// (the waits went up to a minute before).
func TestRetryBackoffIsCapped(t *testing.T) {
	t.Parallel()
	for name, backoff := range map[string][]time.Duration{
		"nats":  ingest.DefaultNATSConfig().Backoff,
		"kafka": ingest.DefaultKafkaConfig().Backoff,
	} {
		if len(backoff) == 0 || slices.Max(backoff) > 5*time.Second {
			t.Errorf("%s: retry waits %v, want none over 5s", name, backoff)
		}
	}
}
