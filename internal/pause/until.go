package pause

import (
	"context"
	"time"
)

// Until calls check until it reports done, ctx ends or within has passed,
// pausing between calls 2 ms, doubling up to 100 ms: for a condition that
// is expected soon (a terminated backend leaving pg_stat_activity). It
// returns check's last value; check's error ends it at once. An ended ctx
// is not an error: the caller judges the last value.
func Until[T any](ctx context.Context, within time.Duration, check func() (T, bool, error)) (T, error) {
	deadline := time.Now().Add(within)
	wait := 2 * time.Millisecond
	for {
		v, done, err := check()
		if err != nil || done || !time.Now().Before(deadline) {
			return v, err
		}
		if !For(ctx, min(wait, time.Until(deadline)), nil) {
			return v, nil
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}
