package vaultlink

import (
	"context"
	"log/slog"
	"time"

	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
)

// every runs pass, then waits interval, until ctx ends. A failed pass is
// logged as what and tried again at the next interval. w hears of each
// pass.
func every(ctx context.Context, interval time.Duration, logger *slog.Logger, what string, w *progress.Worker,
	pass func(context.Context) error) error {
	for {
		w.Start()
		err := pass(ctx)
		w.Finish(err)
		if err != nil && ctx.Err() == nil {
			logger.Warn(what+" failed", "err", err)
		}
		if !pause.For(ctx, interval, nil) {
			return nil
		}
	}
}
