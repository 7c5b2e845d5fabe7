package vaultlink

import (
	"context"
	"log/slog"
	"time"
)

// every runs pass, then waits interval, until ctx ends. A failed pass is
// logged as what and tried again at the next interval.
func every(ctx context.Context, interval time.Duration, logger *slog.Logger, what string, pass func(context.Context) error) error {
	for {
		if err := pass(ctx); err != nil && ctx.Err() == nil {
			logger.Warn(what+" failed", "err", err)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
