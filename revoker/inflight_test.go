package revoker_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/revoker"
)

// TestInFlightCarriesOutNAtOnce: with n in flight, n batches are worked on
// at once (each of the first two waits until the other has started), and
// feed's error comes back once every batch handed over is done.
func TestInFlightCarriesOutNAtOnce(t *testing.T) {
	t.Parallel()
	errFeed := errors.New("feed ended")
	var started sync.WaitGroup
	started.Add(2)
	bothStarted := make(chan struct{})
	go func() { started.Wait(); close(bothStarted) }()
	var mu sync.Mutex
	var done []int
	feed := func(hand func(int)) error {
		for b := range 4 {
			hand(b)
		}
		return errFeed
	}
	work := func(b int) {
		if b < 2 {
			started.Done()
			select {
			case <-bothStarted:
			case <-time.After(10 * time.Second):
				t.Errorf("batch %d: the other of the first two batches never started beside it", b)
			}
		}
		mu.Lock()
		done = append(done, b)
		mu.Unlock()
	}
	if err := revoker.InFlight(2, feed, work); !errors.Is(err, errFeed) {
		t.Fatalf("InFlight returned %v, want feed's error", err)
	}
	if len(done) != 4 {
		t.Fatalf("%d batches done when InFlight returned, want 4: %v", len(done), done)
	}
}
