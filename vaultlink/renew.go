package vaultlink

import (
	"context"
	"time"

	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
)

// KeeperConfig configures the TokenKeeper.
type KeeperConfig struct {
	// ExpiryWarning: a token that expires within this and cannot be renewed
	// past it is logged and shows in leaseguard_vault_token_near_expiry.
	// Default 1h.
	ExpiryWarning time.Duration
	// Retry is the wait after a failed lookup or renewal (default 30s; never
	// later than a third of the time the token has left).
	Retry time.Duration
	// Recheck is the longest wait between looks at the token (a new token
	// file is noticed at the latest then). Default 1m.
	Recheck time.Duration
	// Progress hears of each step (nil: nobody). A step always counts as
	// progress: a failed lookup or renewal is retried on the keeper's own
	// schedule and shows in its metrics and log.
	Progress *progress.Worker
}

func (c KeeperConfig) withDefaults() KeeperConfig {
	if c.ExpiryWarning <= 0 {
		c.ExpiryWarning = time.Hour
	}
	if c.Retry <= 0 {
		c.Retry = 30 * time.Second
	}
	if c.Recheck <= 0 {
		c.Recheck = time.Minute
	}
	return c
}

// TokenKeeper keeps leaseguard's token alive while it runs: it looks the
// token up (again whenever the token file brings a new one), renews a
// renewable token (renew-self) when two thirds of its TTL have passed, and
// reports a token that is not renewable or that nears an end it cannot
// renew past (its max TTL).
type TokenKeeper struct {
	c   *Client
	cfg KeeperConfig

	generation int
	known      bool
	info       TokenInfo
	renewAt    time.Time
	warned     string
}

// NewTokenKeeper builds a keeper for c's token.
func NewTokenKeeper(c *Client, cfg KeeperConfig) *TokenKeeper {
	return &TokenKeeper{c: c, cfg: cfg.withDefaults()}
}

// Run keeps the token until ctx ends.
func (k *TokenKeeper) Run(ctx context.Context) error {
	for {
		k.cfg.Progress.Start()
		wait := k.Step(ctx)
		k.cfg.Progress.Finish(nil)
		if !pause.For(ctx, wait, nil) {
			return nil
		}
	}
}

// Step does what is due now and returns how long to wait before the next
// step.
func (k *TokenKeeper) Step(ctx context.Context) time.Duration {
	now := k.c.now()
	_, gen, err := k.c.tokens.Token()
	if err != nil {
		k.c.logger.Error("vault token unavailable", "err", err)
		return k.cfg.Retry
	}
	if !k.known || gen != k.generation {
		info, err := k.c.LookupSelf(ctx)
		if err != nil {
			k.c.logger.Warn("vault token lookup failed; will retry", "err", err)
			return k.retry(now)
		}
		if k.known {
			k.c.logger.Info("vault token changed (token file)")
		}
		k.known, k.generation, k.warned = true, gen, ""
		k.set(info, now)
	}
	if k.info.Renewable && k.info.TTL > 0 && !now.Before(k.renewAt) {
		inc := k.info.CreationTTL
		if inc <= 0 {
			inc = k.info.TTL
		}
		info, err := k.c.RenewSelf(ctx, inc)
		if err != nil {
			k.c.metrics.renewals.WithLabelValues("error").Inc()
			k.c.logger.Warn("vault token renewal failed; will retry", "err", err, "expires_at", k.info.ExpireTime)
			k.report(now)
			return k.retry(now)
		}
		k.c.metrics.renewals.WithLabelValues("ok").Inc()
		info.CreationTTL = k.info.CreationTTL
		capped := info.TTL > 0 && info.TTL < inc
		k.set(info, now)
		if capped {
			// Vault granted less than asked: the token is at its max TTL.
			k.info.Renewable = false
			k.c.metrics.tokenRenewable.Set(0)
			k.c.logger.Warn("vault token reached its max TTL: renewals no longer extend it; give leaseguard a new token",
				"expires_at", k.info.ExpireTime)
		}
	}
	k.report(now)
	next := k.cfg.Recheck
	if k.info.Renewable && k.info.TTL > 0 {
		if d := k.renewAt.Sub(now); d < next {
			next = max(d, time.Second)
		}
	}
	return next
}

func (k *TokenKeeper) set(info TokenInfo, now time.Time) {
	k.info = info
	k.renewAt = now.Add(info.TTL * 2 / 3)
	k.c.metrics.tokenRenewable.Set(b2f(info.Renewable))
	if info.ExpireTime.IsZero() {
		k.c.metrics.tokenExpiry.Set(0)
	} else {
		k.c.metrics.tokenExpiry.Set(float64(info.ExpireTime.Unix()))
	}
}

// report logs (once per state) a token that is not renewable or whose end is
// near, and sets the near-expiry gauge.
func (k *TokenKeeper) report(now time.Time) {
	never := k.info.ExpireTime.IsZero()
	near := !never && k.info.ExpireTime.Sub(now) < k.cfg.ExpiryWarning
	k.c.metrics.tokenNearEnd.Set(b2f(near && !k.info.Renewable))
	state := ""
	switch {
	case never:
	case near && !k.info.Renewable:
		state = "near-expiry"
	case !k.info.Renewable:
		state = "not-renewable"
	}
	if state == "" || state == k.warned {
		return
	}
	k.warned = state
	if state == "near-expiry" {
		k.c.logger.Error("vault token expires soon and cannot be renewed: give leaseguard a new token",
			"expires_at", k.info.ExpireTime, "left", k.info.ExpireTime.Sub(now).Round(time.Second))
		return
	}
	k.c.logger.Warn("vault token is not renewable: it ends at its expiry", "expires_at", k.info.ExpireTime, "type", k.info.Type)
}

// retry is the wait after a failure: Retry, or less when the token ends
// sooner.
func (k *TokenKeeper) retry(now time.Time) time.Duration {
	d := k.cfg.Retry
	if k.known && !k.info.ExpireTime.IsZero() {
		if left := k.info.ExpireTime.Sub(now) / 3; left < d {
			d = max(left, time.Second)
		}
	}
	return d
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
