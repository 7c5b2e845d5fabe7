package revoker

import "sync"

// InFlight is how the revoker service carries out batches n at a time:
// feed hands each batch it gets to hand, which gives it to a free worker
// of n, each calling work on one batch at a time. A worker that waits
// holds only its own batch, never one fed after it. InFlight returns
// feed's error once every batch handed over is done.
func InFlight[B any](n int, feed func(hand func(B)) error, work func(B)) error {
	batches := make(chan B)
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Go(func() {
			for b := range batches {
				work(b)
			}
		})
	}
	err := feed(func(b B) { batches <- b })
	close(batches)
	wg.Wait()
	return err
}
