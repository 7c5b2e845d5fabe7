package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/ops"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/vaultlink"
)

func runCmd(ctx context.Context, m *Main, args []string) error {
	fs := m.flags("run", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	logger := newLogger(m.Stderr, cfg.LogLevel, logFormatForRun(cfg.LogFormat))
	p, err := startPipeline(ctx, cfg, logger, nil)
	if err != nil {
		return err
	}
	return p.wait()
}

func logFormatForRun(f string) string {
	if f == "auto" {
		return "json"
	}
	return f
}

// pipeline is a running leaseguard: the parts selected by LEASEGUARD_ROLES
// plus the operations server.
type pipeline struct {
	logger   *slog.Logger
	registry *prometheus.Registry
	store    *store.Store
	targets  *target.Set
	embedded *bus.Embedded
	nc       *nats.Conn
	js       jetstream.JetStream
	opsSrv   *ops.Server
	group    *errgroup.Group
	groupCtx context.Context
	cancel   context.CancelFunc
	// closers run after the parts stopped.
	closers []func()
	// vault is the Vault client when LEASEGUARD_VAULT_ADDR is set.
	vault *vaultlink.Client
}

// startPipeline connects everything and starts the selected parts. The
// registry may be nil (a fresh one is made).
func startPipeline(ctx context.Context, cfg Config, logger *slog.Logger, registry *prometheus.Registry) (_ *pipeline, err error) {
	if registry == nil {
		registry = prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	p := &pipeline{logger: logger, registry: registry}
	warnInsecure(logger, cfg)
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	roles, _ := parseRoles(cfg.Roles)

	if p.store, err = openStore(ctx, cfg); err != nil {
		return nil, err
	}
	tc, _ := cfg.targetConfig()
	if p.targets, err = target.Open(ctx, tc); err != nil {
		return nil, err
	}
	if err := p.connectNATS(cfg); err != nil {
		return nil, err
	}

	if p.opsSrv, err = ops.New(ops.Config{Addr: cfg.MetricsAddr, Gatherer: registry, Logger: logger}); err != nil {
		return nil, err
	}
	p.opsSrv.AddCheck("state_store", p.store.Ping)
	p.opsSrv.AddCheck("targets", p.targets.Ping)
	p.opsSrv.AddCheck("nats", func(context.Context) error {
		if !p.nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", p.nc.Status())
		}
		return nil
	})
	if err := p.opsSrv.Start(); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	g, gctx := errgroup.WithContext(runCtx)
	p.group, p.groupCtx = g, gctx

	ttls, _ := parseRoleTTLs(cfg.RoleTTLs)
	resolver := ingest.NewExpiryResolver(p.store, p.targets, ttls, logger.With("part", "expiry"))
	g.Go(func() error { return resolver.Run(gctx) })

	var metrics *ingest.Metrics
	if roles["ingest"] {
		metrics = ingest.NewMetrics(registry)
		proc, err := ingest.NewProcessor(ingest.ProcessorConfig{
			Ledger: p.store, Router: p.targets, MaxEntryBytes: cfg.MaxEntryBytes,
			Metrics: metrics, Logger: logger.With("part", "ingest"), OnIssued: resolver.Kick,
		})
		if err != nil {
			return nil, err
		}
		src, err := ingest.NewNATSSource(cfg.natsSourceConfig(), p.js, proc, metrics, logger.With("part", "ingest"))
		if err != nil {
			return nil, configError{err}
		}
		// Create the streams before reporting ready, so producers can publish.
		if _, err := src.EnsureStreams(ctx); err != nil {
			return nil, err
		}
		g.Go(func() error { return src.Run(gctx) })
		if cfg.KafkaBrokers != "" {
			tc, mech, err := cfg.kafkaSecurity()
			if err != nil {
				return nil, configError{err}
			}
			ksrc, err := ingest.NewKafkaSource(cfg.kafkaSourceConfig(cfg.IngestBatch, tc, mech), proc, metrics, logger.With("part", "ingest", "transport", "kafka"))
			if err != nil {
				return nil, configError{err}
			}
			g.Go(func() error { return ksrc.Run(gctx) })
		}
	}
	if err := p.startAuditSources(gctx, cfg, metrics); err != nil {
		return nil, err
	}
	if err := p.startVault(cfg, roles); err != nil {
		return nil, err
	}
	if roles["detectors"] || roles["revoker"] || roles["observer"] {
		if err := p.startEnforcement(ctx, gctx, cfg, roles); err != nil {
			return nil, err
		}
	}
	if roles["relay"] {
		rcfg := evidence.RelayConfig{Subject: cfg.EvidenceSubject, Logger: logger.With("part", "relay"),
			Metrics: newRelayMetrics(p.registry, p.store.Pool())}.WithDefaults()
		if _, err := evidence.EnsureStream(ctx, p.js, rcfg); err != nil {
			return nil, err
		}
		if err := p.ensureSIEMConsumer(ctx, cfg); err != nil {
			return nil, err
		}
		pub, err := p.evidencePublisher(cfg, rcfg)
		if err != nil {
			return nil, err
		}
		relay, err := evidence.NewRelay(p.store.Pool(), pub, rcfg)
		if err != nil {
			return nil, err
		}
		g.Go(func() error { return relay.Run(gctx) })
	}
	if roles["alerts"] {
		if err := p.startAlerts(cfg, logger.With("part", "alerts")); err != nil {
			return nil, err
		}
	}
	if err := p.startAdmin(cfg, logger.With("part", "adminapi")); err != nil {
		return nil, err
	}
	natsAt := redactURL(p.nc.ConnectedUrl())
	if p.embedded != nil {
		natsAt = "embedded, in-process" // the URL would be a placeholder
	}
	logger.Info("leaseguard running", "roles", cfg.Roles, "metrics", p.opsSrv.Addr(), "nats", natsAt, "targets", strings.Join(p.targets.Names(), ","))
	return p, nil
}

// evidencePublisher publishes to the sinks of LEASEGUARD_EVIDENCE_SINKS.
func (p *pipeline) evidencePublisher(cfg Config, rcfg evidence.RelayConfig) (evidence.Publisher, error) {
	sinks, _ := parseSinks(cfg.EvidenceSinks)
	var out evidence.Fanout
	if sinks["nats"] {
		pub, err := evidence.NewJetStreamPublisher(p.js, rcfg)
		if err != nil {
			return nil, err
		}
		out = append(out, pub)
	}
	if sinks["kafka"] {
		tc, mech, err := cfg.kafkaSecurity()
		if err != nil {
			return nil, configError{err}
		}
		kp, err := evidence.NewKafkaPublisher(cfg.evidenceKafkaConfig(tc, mech))
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, func() { _ = kp.Close() })
		out = append(out, kp)
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}

// startEnforcement starts the expiry detector and the revoker.
func (p *pipeline) startEnforcement(ctx, gctx context.Context, cfg Config, roles map[string]bool) error {
	issuer, verifier, err := commandAuth(cfg, p.logger, p.targets)
	if err != nil {
		return err
	}
	builder := evidence.Builder{Source: evidenceSource(cfg)}
	qcfg := revoker.DefaultQueueConfig()
	qcfg.Subject = cfg.RevocationSubject
	queue, err := revoker.NewQueue(qcfg, p.js)
	if err != nil {
		return err
	}
	if err := queue.EnsureStream(ctx); err != nil {
		return err
	}
	if roles["revoker"] {
		rm := revoker.NewMetrics(p.registry)
		// The executor reports throttling (rm.Throttling) while it waits.
		limiter, err := revoker.NewLimiter(revoker.LimiterConfig{PerMinute: cfg.MaxRevocationsPerMin})
		if err != nil {
			return err
		}
		dropper, err := revoker.NewDropper(cfg.dropperConfig())
		if err != nil {
			return configError{err}
		}
		scfg := revoker.DefaultServiceConfig()
		scfg.Queue = qcfg
		scfg.DeadLetterSubject = cfg.DeadletterSubject
		scfg.DeadLetterMaxAge = cfg.DeadletterMaxAge
		scfg.Batch = cfg.RevocationBatch
		exec, err := revoker.NewExecutor(revoker.ExecutorDeps{
			Dropper: dropper, Verifier: verifier, Limiter: limiter, Targets: p.targets,
			State: p.store.Pool(), Evidence: builder, Logger: p.logger.With("part", "revoker"), Metrics: rm,
			RequiresApproval: cfg.requiresApproval(),
		})
		if err != nil {
			return err
		}
		svc, err := revoker.NewService(scfg, p.js, exec)
		if err != nil {
			return err
		}
		if _, err := svc.EnsureConsumer(ctx); err != nil {
			return err
		}
		p.group.Go(func() error { return svc.Run(gctx) })
	}
	dm := detectors.NewMetrics(p.registry)
	if roles["observer"] {
		if err := p.startObserver(ctx, gctx, cfg, issuer, queue, builder, dm); err != nil {
			return err
		}
	}
	if roles["detectors"] {
		modes, _ := detectors.ParseModes(cfg.RuleModes)
		scope, _ := detectors.ParseScope(cfg.EnforceScope)
		exp, err := detectors.NewExpiry(detectors.ExpiryConfig{
			Grace: cfg.ExpiryGrace, Interval: cfg.DetectInterval, Batch: cfg.DetectBatch, Modes: modes, Scope: scope,
			ApprovalTTL: cfg.ApprovalTTL, CommandTTL: cfg.CommandTTL,
		}, detectors.ExpiryDeps{
			Pool: p.store.Pool(), Reader: p.targets, Issuer: issuer, Sink: queue, Vault: p.vaultLeases(),
			Evidence: builder, Logger: p.logger.With("part", "detectors"), Metrics: dm,
		})
		if err != nil {
			return err
		}
		p.group.Go(func() error { return exp.Run(gctx) })
		acfg := detectors.DefaultAuditRulesConfig()
		acfg.Modes, acfg.Scope = modes, scope
		acfg.Interval, acfg.Signals, acfg.ApprovalTTL = cfg.AuditRulesInterval, cfg.signalRulesConfig(), cfg.ApprovalTTL
		ar, err := detectors.NewAuditRules(acfg, detectors.AuditRulesDeps{
			Pool: p.store.Pool(), Evidence: builder, Logger: p.logger.With("part", "detectors"), Metrics: dm,
			Issuer: issuer, Sink: queue, Vault: p.vaultLeases(),
		})
		if err != nil {
			return configError{err}
		}
		p.group.Go(func() error { return ar.Run(gctx) })
		if err := p.startApprovals(cfg, queue); err != nil {
			return err
		}
	}
	return nil
}

// startObserver watches the target databases (roles and sessions) and runs
// the database rules: ghost sessions, credential reuse, orphans.
func (p *pipeline) startObserver(ctx, gctx context.Context, cfg Config, issuer *revoker.Issuer, queue *revoker.Queue,
	builder evidence.Builder, dm *detectors.Metrics) error {
	managed := regexp.MustCompile(cfg.ManagedRolePattern)
	modes, _ := detectors.ParseModes(cfg.RuleModes)
	scope, _ := detectors.ParseScope(cfg.EnforceScope)
	rules, err := detectors.NewDBRules(detectors.DBRulesConfig{Modes: modes, Scope: scope, ManagedPattern: managed,
		ApprovalTTL: cfg.ApprovalTTL},
		detectors.DBRulesDeps{Issuer: issuer, Sink: queue, Evidence: builder, Logger: p.logger.With("part", "observer"), Metrics: dm, Vault: p.vaultVerify(cfg)})
	if err != nil {
		return err
	}
	ocfg := observer.Config{Interval: cfg.ObserveInterval, ManagedPattern: managed}
	if err := observer.EnsureStream(ctx, p.js, ocfg); err != nil {
		return err
	}
	pub, err := observer.NewJetStreamPublisher(p.js, ocfg)
	if err != nil {
		return err
	}
	o, err := observer.New(ocfg, observer.Deps{Store: p.store, Targets: p.targets, Rules: rules, Publisher: pub,
		Logger: p.logger.With("part", "observer"), Metrics: observer.NewMetrics(p.registry)})
	if err != nil {
		return configError{err}
	}
	p.group.Go(func() error { return o.Run(gctx) })
	return nil
}

func (c Config) dropperConfig() revoker.DropperConfig {
	var protected []string
	for _, r := range strings.Split(c.ProtectedRoles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			protected = append(protected, r)
		}
	}
	return revoker.DropperConfig{
		Guard: revoker.GuardConfig{ManagedPattern: regexp.MustCompile(c.ManagedRolePattern), Protected: protected,
			AllowGroupRoles: c.RevokeGroupRoles, AllowCreateRole: c.RevokeCreateRole},
		ReassignTo:       c.ReassignOwnedTo,
		StatementTimeout: c.StatementTimeout,
		LockTimeout:      c.LockTimeout,
	}
}

// evidenceSource is the CloudEvents source of this installation.
func evidenceSource(c Config) string {
	name := c.Instance
	if name == "" {
		name, _ = os.Hostname()
	}
	if name == "" {
		name = "leaseguard"
	}
	return "urn:leaseguard:" + name
}

func (c Config) natsSourceConfig() ingest.NATSConfig {
	nc := ingest.DefaultNATSConfig()
	nc.Stream = c.AuditStream
	nc.AuditSubject = c.AuditSubject
	nc.LeaseSubject = c.LeaseSubject
	nc.Consumer = c.IngestConsumer
	nc.DeadLetterSubject = c.DeadletterSubject
	nc.DeadLetterMaxAge = c.DeadletterMaxAge
	nc.MaxAge = c.AuditMaxAge
	nc.Batch = c.IngestBatch
	nc.MaxAckPending = c.MaxAckPending
	return nc
}

// connectNATS joins the configured cluster, or starts an embedded server
// with its store under DATA_DIR and connects to it in-process.
func (p *pipeline) connectNATS(cfg Config) error {
	url := cfg.NATSURL
	opts := []nats.Option{
		nats.Name("leaseguard"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				p.logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { p.logger.Info("nats reconnected", "url", redactURL(c.ConnectedUrl())) }),
	}
	var sec []nats.Option
	var err error
	if url == "" {
		if p.embedded, err = startEmbeddedNATS(cfg, p.logger); err != nil {
			return err
		}
		sec, err = p.embedded.ConnectOptions()
	} else if sec, err = cfg.natsOptions(); err != nil {
		err = configError{err}
	}
	if err != nil {
		return err
	}
	opts = append(opts, sec...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	p.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	p.js = js
	return nil
}

// wait blocks until the parts stop (context cancelled or one failed), then
// shuts everything down.
func (p *pipeline) wait() error {
	err := p.group.Wait()
	p.logger.Info("leaseguard stopping")
	p.close()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// stop cancels the parts and waits for them.
func (p *pipeline) stop() error {
	if p.cancel != nil {
		p.cancel()
	}
	return p.wait()
}

func (p *pipeline) close() {
	for _, c := range p.closers {
		c()
	}
	p.closers = nil
	if p.opsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = p.opsSrv.Shutdown(ctx)
		cancel()
		p.opsSrv = nil
	}
	if p.nc != nil {
		_ = p.nc.Drain()
		p.nc = nil
	}
	if p.embedded != nil {
		p.embedded.Shutdown()
		p.embedded = nil
	}
	if p.targets != nil {
		p.targets.Close()
		p.targets = nil
	}
	if p.store != nil {
		p.store.Close()
		p.store = nil
	}
}
