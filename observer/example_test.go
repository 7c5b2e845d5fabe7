package observer_test

import (
	"context"
	"log/slog"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// How a process wires the observer and its rules: the same managed pattern,
// modes, scope, command issuer, queue, evidence builder and detector
// metrics as the expiry detector.
func Example() {
	var (
		ctx      context.Context
		st       *store.Store
		targets  *target.Set
		js       jetstream.JetStream
		issuer   *revoker.Issuer // revoker.NewIssuer(signer, targets, ttl, nil)
		queue    *revoker.Queue
		builder  evidence.Builder
		reg      prometheus.Registerer
		dm       *detectors.Metrics // detectors.NewMetrics(reg), shared with the expiry detector
		logger   *slog.Logger
		modes    detectors.Modes // detectors.ParseModes(LEASEGUARD_RULE_MODES)
		scope    detectors.Scope // detectors.ParseScope(LEASEGUARD_ENFORCE_SCOPE); empty enforces nowhere
		managed  = regexp.MustCompile(`^v-`)
		interval = 5 * time.Second // LEASEGUARD_OBSERVE_INTERVAL
	)
	if ctx == nil {
		return // the wiring only: nothing here is connected
	}
	rules, err := detectors.NewDBRules(detectors.DBRulesConfig{Modes: modes, Scope: scope, ManagedPattern: managed},
		detectors.DBRulesDeps{Issuer: issuer, Sink: queue, Evidence: builder, Logger: logger, Metrics: dm})
	if err != nil {
		panic(err)
	}
	cfg := observer.Config{Interval: interval, ManagedPattern: managed}
	if err := observer.EnsureStream(ctx, js, cfg); err != nil {
		panic(err)
	}
	pub, err := observer.NewJetStreamPublisher(js, cfg)
	if err != nil {
		panic(err)
	}
	o, err := observer.New(cfg, observer.Deps{Store: st, Targets: targets, Rules: rules, Publisher: pub,
		Logger: logger, Metrics: observer.NewMetrics(reg)})
	if err != nil {
		panic(err)
	}
	_ = o.Run(ctx) // until ctx ends; releases its duties
}
