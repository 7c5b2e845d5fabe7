package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/approval"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
)

// ApprovalConfig configures owner approval (rule mode approve). Embedded in
// Config.
type ApprovalConfig struct {
	ApprovalTTL           time.Duration `env:"LEASEGUARD_APPROVAL_TTL" envDefault:"24h" desc:"how long a revocation of a rule in approve mode waits for an owner (leaseguard approve/reject, or the admin API) before it expires and nothing is dropped"`
	ApprovalSweepInterval time.Duration `env:"LEASEGUARD_APPROVAL_SWEEP_INTERVAL" envDefault:"10s" desc:"how often run records expired pending revocations and resends approved ones whose revocation has no outcome"`
}

func (a ApprovalConfig) validate(bad func(name, format string, args ...any)) {
	if a.ApprovalTTL < time.Minute {
		bad("APPROVAL_TTL", "below 1m: nobody could answer in time")
	}
	if a.ApprovalSweepInterval < 100*time.Millisecond {
		bad("APPROVAL_SWEEP_INTERVAL", "must be at least 100ms")
	}
}

// strandedAfter is how long an approved revocation may go without an
// outcome before run sends its command to the revoker again.
const strandedAfter = 2 * time.Minute

// newApprovals builds the deciding service; without an executor it can
// reject and expire but not approve.
func newApprovals(cfg Config, pool *pgxpool.Pool, exec *operatorExecutor, logger *slog.Logger) (*approval.Approvals, error) {
	d := approval.ApprovalDeps{State: pool, Evidence: evidenceBuilder(cfg), Logger: logger}
	if exec != nil {
		d.Executor, d.Issuer = exec.executor, exec.issuer
	}
	return approval.NewApprovals(d)
}

// startApprovals runs the approval sweep in `leaseguard run` (with the
// detectors): pending revocations past their time are recorded expired,
// and approved commands left without an outcome are queued again.
func (p *pipeline) startApprovals(cfg Config, queue interface {
	Submit(context.Context, []schemas.RevocationCommand) error
}) error {
	logger := p.logger.With("part", "approvals")
	ap, err := newApprovals(cfg, p.store.Pool(), nil, logger)
	if err != nil {
		return err
	}
	gctx := p.groupCtx
	w := p.progress.Worker("approvals.sweep")
	p.group.Go(func() error {
		pause.Repeat(gctx, cfg.ApprovalSweepInterval, func() bool {
			w.Start()
			sctx, cancel := context.WithTimeout(gctx, cfg.PassTimeout)
			_, _, err := ap.Sweep(sctx, queue.Submit, strandedAfter, 100)
			cancel()
			w.Finish(err)
			if err != nil && gctx.Err() == nil {
				logger.Warn("approval sweep failed; will retry", "err", err)
			}
			return false
		})
		return nil
	})
	return nil
}

var _ interface {
	Submit(context.Context, []schemas.RevocationCommand) error
} = (*revoker.Queue)(nil)
