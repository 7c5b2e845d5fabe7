package pause

import (
	"context"
	"time"
)

// Every calls f on each beat of a ticker of interval (the time f takes
// counts toward the next beat), and whenever wake fires (nil: never),
// until ctx ends. The first call waits for the first beat or wake-up.
func Every(ctx context.Context, interval time.Duration, wake <-chan struct{}, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		f()
	}
}

// Repeat calls f at once, then on each beat of a ticker of interval, until
// ctx ends. While f reports more work waiting (it took a full batch), it is
// called again at once rather than at the next beat.
func Repeat(ctx context.Context, interval time.Duration, f func() (more bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if f() && ctx.Err() == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
