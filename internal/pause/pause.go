package pause

import (
	"context"
	"time"
)

// For waits d, or until wake fires (nil: never) or ctx ends. It reports
// false only when ctx ended, so a loop can return at once.
func For(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}
