package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/store"
)

// expiryStore is a fake ExpiryStore: resolve stands in for the ledger.
type expiryStore struct {
	resolve func() (int, error)
}

func (s expiryStore) ResolveExpiry(context.Context, store.ValidUntilReader, store.RoleTTLs, time.Time, int) (int, error) {
	return s.resolve()
}

// TestExpiryResolverRunsOnKickAndNotAtStart: with an interval that never
// comes in the test, a pass runs on a kick only (ingest committed an issue
// or renewal), not before.
func TestExpiryResolverRunsOnKickAndNotAtStart(t *testing.T) {
	passes := make(chan struct{}, 10)
	r := NewExpiryResolver(expiryStore{resolve: func() (int, error) {
		passes <- struct{}{}
		return 0, nil
	}}, nil, nil, nil)
	r.Interval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	r.Kick()
	select {
	case <-passes:
	case <-time.After(10 * time.Second):
		t.Fatal("no pass after a kick")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v; want nil when ctx ends", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return when ctx ended")
	}
	if n := len(passes); n != 0 {
		t.Fatalf("%d passes more than the kick's: the resolver must wait for a kick or the interval", n)
	}
}
