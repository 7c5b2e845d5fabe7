package main

import (
	"time"
)

// HealthConfig configures what /readyz and /livez say about the workers.
// Embedded in Config.
type HealthConfig struct {
	StallTimeout time.Duration `env:"LEASEGUARD_STALL_TIMEOUT" envDefault:"2m" desc:"/readyz fails, naming the worker, when one that has work (an ingest source, a detector, the revoker, the relay, the observer, the alerts, a Vault link loop) has made no progress for this long; an idle worker never fails it"`
	WedgeTimeout time.Duration `env:"LEASEGUARD_WEDGE_TIMEOUT" envDefault:"10m" desc:"/livez (and /healthz) fails when a worker has held one unit of work this long without progress or a retry (blocked in a call), so that the orchestrator restarts the process; at least LEASEGUARD_STALL_TIMEOUT"`
}

func (h HealthConfig) validate(bad func(name, format string, args ...any)) {
	if h.StallTimeout < time.Second {
		bad("STALL_TIMEOUT", "below 1s")
	}
	if h.WedgeTimeout < h.StallTimeout {
		bad("WEDGE_TIMEOUT", "shorter than LEASEGUARD_STALL_TIMEOUT %s", shortDuration(h.StallTimeout))
	}
}
