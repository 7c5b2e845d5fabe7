package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/nodes"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/ops"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/vaultlink"
)

func (m *Main) runCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "run the pipeline: ingest, detectors, revoker, evidence relay",
		Long: "Run migrates the state store, then runs the parts LEASEGUARD_ROLES selects (ingest, detectors,\n" +
			"revoker, relay, observer, alerts) until it is stopped (SIGINT, SIGTERM). It serves /metrics,\n" +
			"/livez and /readyz on LEASEGUARD_METRICS_ADDR.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCmd(cmd.Context(), m) },
	}
}

func runCmd(ctx context.Context, m *Main) error {
	cfg, err := loadStoreConfig("run")
	if err != nil {
		return err
	}
	logger := newLevelLogger(m.Stderr, cfg.parsed().logLevel, logFormatForRun(cfg.LogFormat))
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
	// progress hears from every worker; /readyz and /livez judge them.
	progress *progress.Tracker
	group    *errgroup.Group
	groupCtx context.Context
	cancel   context.CancelFunc
	// closers run after the parts stopped.
	closers []func()
	// vault is the Vault client when LEASEGUARD_VAULT_ADDR is set.
	vault *vaultlink.Client
	// policies is the enforcement policy in force, read by every pass.
	policies *rollout.Policies
	// reconnected are called when NATS reconnects.
	reconnectMu sync.Mutex
	reconnected []func()
	// revoking counts the revoker's batches in this process (nil: no
	// revoker here); the relay gives way to them.
	revoking *revoker.Activity
}

// onNATSReconnect registers f to be called when NATS reconnects.
func (p *pipeline) onNATSReconnect(f func()) {
	p.reconnectMu.Lock()
	defer p.reconnectMu.Unlock()
	p.reconnected = append(p.reconnected, f)
}

func (p *pipeline) natsReconnected() {
	p.reconnectMu.Lock()
	fs := append([]func(){}, p.reconnected...)
	p.reconnectMu.Unlock()
	for _, f := range fs {
		f()
	}
}

// startPipeline connects everything and starts the selected parts. The
// registry may be nil (a fresh one is made).
func startPipeline(ctx context.Context, cfg Config, logger *slog.Logger, registry *prometheus.Registry) (_ *pipeline, err error) {
	if registry, err = pipelineRegistry(registry); err != nil {
		return nil, err
	}
	p := &pipeline{logger: logger, registry: registry, progress: progress.NewTracker(nil)}
	warnInsecure(logger, cfg)
	defer func() {
		if err != nil {
			p.abandon()
		}
	}()
	roles := cfg.parsed().roles
	if err := p.connect(ctx, cfg); err != nil {
		return nil, err
	}
	if err := p.startOps(cfg); err != nil {
		return nil, err
	}
	gctx := p.startGroup(ctx)
	metrics, err := p.startIngest(ctx, gctx, cfg, roles)
	if err != nil {
		return nil, err
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
		if err := p.startRelay(ctx, gctx, cfg); err != nil {
			return nil, err
		}
	}
	if roles["alerts"] {
		if err := p.startAlerts(cfg, logger.With("part", "alerts")); err != nil {
			return nil, err
		}
	}
	if err := p.startAdmin(cfg, logger.With("part", "adminapi")); err != nil {
		return nil, err
	}
	p.logRunning(cfg)
	return p, nil
}

// pipelineRegistry is registry, or a fresh one with the Go and process
// collectors when it is nil, with the build information registered.
func pipelineRegistry(registry *prometheus.Registry) (*prometheus.Registry, error) {
	if registry == nil {
		registry = prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return registry, registerBuildInfo(registry)
}

// connect opens the state store (and reads the enforcement policy in
// force), the targets and NATS.
func (p *pipeline) connect(ctx context.Context, cfg Config) (err error) {
	if p.store, err = openStore(ctx, cfg); err != nil {
		return err
	}
	if p.policies, err = bootstrapPolicies(ctx, cfg, p.store, p.logger); err != nil {
		return err
	}
	tc := cfg.parsed().targets
	if p.targets, err = target.Open(ctx, tc); err != nil {
		return err
	}
	return p.connectNATS(cfg)
}

// startOps starts the operations server, whose /readyz checks the state
// store, the targets and NATS.
func (p *pipeline) startOps(cfg Config) (err error) {
	if p.opsSrv, err = ops.New(ops.Config{Addr: cfg.MetricsAddr, Gatherer: p.registry, Logger: p.logger,
		Workers: p.progress, StallTimeout: cfg.StallTimeout, WedgeTimeout: cfg.WedgeTimeout}); err != nil {
		return err
	}
	if err := p.registry.Register(p.opsSrv.WorkerCollector()); err != nil {
		return fmt.Errorf("register worker metrics: %w", err)
	}
	p.opsSrv.AddCheck("state_store", p.store.Ping)
	p.opsSrv.AddCheck("targets", p.targets.Ping)
	p.opsSrv.AddCheck("nats", func(context.Context) error {
		if !p.nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", p.nc.Status())
		}
		return nil
	})
	return p.opsSrv.Start()
}

// startGroup makes the group the parts run in, and returns its context.
func (p *pipeline) startGroup(ctx context.Context) context.Context {
	runCtx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.group, p.groupCtx = errgroup.WithContext(runCtx)
	return p.groupCtx
}

// startIngest starts the expiry resolver and, when this process ingests,
// the NATS source and the Kafka one if configured. It returns the ingest
// metrics (nil when this process does not ingest).
func (p *pipeline) startIngest(ctx, gctx context.Context, cfg Config, roles map[string]bool) (*ingest.Metrics, error) {
	ttls := cfg.parsed().roleTTLs
	resolver := ingest.NewExpiryResolver(p.store, p.targets, ttls, p.logger.With("part", "expiry"))
	resolver.Progress = p.progress.Worker("ingest.expiry_resolver")
	resolver.PassTimeout = cfg.PassTimeout
	p.group.Go(func() error { return resolver.Run(gctx) })
	if !roles["ingest"] {
		return nil, nil
	}
	metrics := ingest.NewMetrics(p.registry)
	proc, err := ingest.NewProcessor(ingest.ProcessorConfig{
		Ledger: p.store, Router: p.targets, MaxEntryBytes: cfg.MaxEntryBytes, CommitTimeout: cfg.PassTimeout,
		Metrics: metrics, Logger: p.logger.With("part", "ingest"), OnIssued: resolver.Kick,
	})
	if err != nil {
		return nil, err
	}
	if err := p.startNATSSource(ctx, gctx, cfg, proc, metrics); err != nil {
		return nil, err
	}
	if cfg.KafkaBrokers != "" {
		if err := p.startKafkaSource(gctx, cfg, proc, metrics); err != nil {
			return nil, err
		}
	}
	return metrics, nil
}

// startNATSSource consumes the audit stream from JetStream.
func (p *pipeline) startNATSSource(ctx, gctx context.Context, cfg Config, proc *ingest.Processor, metrics *ingest.Metrics) error {
	ncfg := cfg.natsSourceConfig()
	ncfg.Progress = p.progress.Worker("ingest.nats")
	src, err := ingest.NewNATSSource(ncfg, p.js, proc, metrics, p.logger.With("part", "ingest"))
	if err != nil {
		return configError{err}
	}
	// Create the streams before reporting ready, so producers can publish.
	if _, err := src.EnsureStreams(ctx); err != nil {
		return err
	}
	p.group.Go(func() error { return src.Run(gctx) })
	return nil
}

// startKafkaSource consumes the audit topic from Kafka.
func (p *pipeline) startKafkaSource(gctx context.Context, cfg Config, proc *ingest.Processor, metrics *ingest.Metrics) error {
	tc, mech, err := cfg.kafkaSecurity()
	if err != nil {
		return configError{err}
	}
	kcfg := cfg.kafkaSourceConfig(cfg.IngestBatch, tc, mech)
	kcfg.Progress = p.progress.Worker("ingest.kafka")
	ksrc, err := ingest.NewKafkaSource(kcfg, proc, metrics, p.logger.With("part", "ingest", "transport", "kafka"))
	if err != nil {
		return configError{err}
	}
	p.opsSrv.AddCheck("kafka", ksrc.Ping)
	p.group.Go(func() error { return ksrc.Run(gctx) })
	return nil
}

// logRunning says that leaseguard runs, and with what.
func (p *pipeline) logRunning(cfg Config) {
	natsAt := redactURL(p.nc.ConnectedUrl())
	if p.embedded != nil {
		natsAt = "embedded, in-process" // the URL would be a placeholder
	}
	p.logger.Info("leaseguard running", "roles", cfg.Roles, "metrics", p.opsSrv.Addr(), "nats", natsAt, "targets", strings.Join(p.targets.AllNames(), ","))
}

// startRelay starts the evidence relay, which also appends the signed
// checkpoints.
func (p *pipeline) startRelay(ctx, gctx context.Context, cfg Config) error {
	rcfg := evidence.RelayConfig{Subject: cfg.EvidenceSubject, Replicas: cfg.StreamReplicas, Logger: p.logger.With("part", "relay"),
		StoreTimeout: cfg.PassTimeout, MaxBackoff: cfg.RelayMaxBackoff,
		Metrics: newRelayMetrics(p.registry, p.store.Pool()), Progress: p.progress.Worker("evidence.relay")}.WithDefaults()
	if p.revoking != nil {
		rcfg.GiveWay = p.revoking.Busy
	}
	if _, err := evidence.EnsureStream(ctx, p.js, rcfg); err != nil {
		return err
	}
	if err := p.ensureSIEMConsumer(ctx, cfg); err != nil {
		return err
	}
	pub, err := p.evidencePublisher(cfg, rcfg)
	if err != nil {
		return err
	}
	signer, err := evidenceSigner(cfg, p.logger)
	if err != nil {
		return err
	}
	rcfg.Checkpoints = &evidence.Checkpointing{Signer: signer, Builder: evidenceBuilder(cfg), Interval: cfg.CheckpointInterval}
	relay, err := evidence.NewRelay(p.store.Pool(), pub, rcfg)
	if err != nil {
		return err
	}
	p.onNATSReconnect(relay.Wake) // the bus is back: publish now
	p.group.Go(func() error { return relay.Run(gctx) })
	return nil
}

// evidencePublisher publishes to the sinks of LEASEGUARD_EVIDENCE_SINKS.
func (p *pipeline) evidencePublisher(cfg Config, rcfg evidence.RelayConfig) (evidence.Publisher, error) {
	sinks := cfg.parsed().sinks
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
	if err := p.joinNodes(ctx, cfg, roles, issuer, verifier); err != nil {
		return err
	}
	builder := evidenceBuilder(cfg)
	qcfg := revoker.DefaultQueueConfig()
	qcfg.Subject = cfg.RevocationSubject
	qcfg.Replicas = cfg.StreamReplicas
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
		scfg.DeadLetterReplicas = cfg.StreamReplicas
		scfg.Batch = cfg.RevocationBatch
		scfg.InFlight = cfg.RevocationInFlight
		p.revoking = &revoker.Activity{}
		scfg.Activity = p.revoking
		exec, err := revoker.NewExecutor(revoker.ExecutorDeps{
			Dropper: dropper, Verifier: verifier, Limiter: limiter, Targets: p.targets,
			State: p.store.Pool(), Evidence: builder, Logger: p.logger.With("part", "revoker"), Metrics: rm,
			RequiresApproval: p.policies.RequiresApproval, Progress: p.progress.Worker("revoker"), StateTimeout: cfg.PassTimeout,
			TargetWorkers: cfg.RevocationWorkers,
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
		exp, err := detectors.NewExpiry(detectors.ExpiryConfig{
			Grace: cfg.ExpiryGrace, Interval: cfg.DetectInterval, Batch: cfg.DetectBatch,
			ApprovalTTL: cfg.ApprovalTTL, CommandTTL: cfg.CommandTTL, PassTimeout: cfg.PassTimeout,
		}, detectors.ExpiryDeps{
			Pool: p.store.Pool(), Reader: p.targets, Issuer: issuer, Sink: queue, Vault: p.vaultLeases(), Policy: p.policies,
			Evidence: builder, Logger: p.logger.With("part", "detectors"), Metrics: dm, Progress: p.progress.Worker("detectors.expiry"),
		})
		if err != nil {
			return err
		}
		p.group.Go(func() error { return exp.Run(gctx) })
		acfg := detectors.DefaultAuditRulesConfig()
		// Checked against the configuration's modes at start; every pass
		// then acts under the policy in force.
		acfg.Modes = cfg.rolloutSpec().Modes
		acfg.Interval, acfg.Signals, acfg.ApprovalTTL = cfg.AuditRulesInterval, cfg.signalRulesConfig(), cfg.ApprovalTTL
		acfg.PassTimeout = cfg.PassTimeout
		ar, err := detectors.NewAuditRules(acfg, detectors.AuditRulesDeps{
			Pool: p.store.Pool(), Evidence: builder, Logger: p.logger.With("part", "detectors"), Metrics: dm,
			Issuer: issuer, Sink: queue, Vault: p.vaultLeases(), Policy: p.policies, Progress: p.progress.Worker("detectors.audit_rules"),
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

// joinNodes registers this process with the command keys it signs with and
// accepts, refusing to start (exit 3) when a live process sharing the state
// store would refuse its commands or it would refuse theirs.
func (p *pipeline) joinNodes(ctx context.Context, cfg Config, roles map[string]bool, issuer *revoker.Issuer, verifier *revoker.Verifier) error {
	host, _ := os.Hostname()
	self := nodes.Self{Instance: cfg.Instance, Host: host,
		IssuesCommands: roles["detectors"] || roles["observer"] || cfg.AdminAddr != "", RunsRevoker: roles["revoker"],
		SigningKeyID: issuer.KeyID(), SigningPublicKey: base64.StdEncoding.EncodeToString(issuer.PublicKey()),
		AcceptedKeyIDs: verifier.KeyIDs()}
	reg, err := nodes.Join(ctx, p.store.Pool(), self, nodes.Config{}, p.logger.With("part", "nodes"))
	if errors.Is(err, nodes.ErrIncompatible) {
		return configError{fmt.Errorf("%s / %s: %w", env("COMMAND_SIGNING_KEY"), env("COMMAND_VERIFY_KEYS"), err)}
	}
	if err != nil {
		return err
	}
	gctx := p.groupCtx
	p.group.Go(func() error { return reg.Run(gctx) })
	return nil
}

// startObserver watches the target databases (roles and sessions) and runs
// the database rules: ghost sessions, credential reuse, orphans.
func (p *pipeline) startObserver(ctx, gctx context.Context, cfg Config, issuer *revoker.Issuer, queue *revoker.Queue,
	builder evidence.Builder, dm *detectors.Metrics) error {
	managed := cfg.parsed().managed
	rules, err := detectors.NewDBRules(detectors.DBRulesConfig{ManagedPattern: managed,
		ApprovalTTL: cfg.ApprovalTTL, CommandTTL: cfg.CommandTTL},
		detectors.DBRulesDeps{Issuer: issuer, Sink: queue, Evidence: builder, Logger: p.logger.With("part", "observer"), Metrics: dm,
			Vault: p.vaultVerify(cfg), Policy: p.policies})
	if err != nil {
		return err
	}
	ocfg := observer.Config{Interval: cfg.ObserveInterval, ManagedPattern: managed, PassTimeout: cfg.PassTimeout,
		StreamReplicas: cfg.StreamReplicas}
	if err := observer.EnsureStream(ctx, p.js, ocfg); err != nil {
		return err
	}
	pub, err := observer.NewJetStreamPublisher(p.js, ocfg)
	if err != nil {
		return err
	}
	o, err := observer.New(ocfg, observer.Deps{Store: p.store, Targets: p.targets, Rules: rules, Publisher: pub,
		Logger: p.logger.With("part", "observer"), Metrics: observer.NewMetrics(p.registry), Progress: p.progress.Worker("observer")})
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
		Guard: revoker.GuardConfig{ManagedPattern: c.parsed().managed, Protected: protected,
			AllowGroupRoles: c.RevokeGroupRoles, AllowCreateRole: c.RevokeCreateRole,
			AllowSuperuser: c.RevokeMySQLSuper},
		ReassignTo:       c.ReassignOwnedTo,
		StatementTimeout: c.StatementTimeout,
		LockTimeout:      c.LockTimeout,
	}
}

// evidenceBuilder is the evidence builder of every command: this
// installation's source and this build's version.
func evidenceBuilder(c Config) evidence.Builder {
	return evidence.Builder{Source: evidenceSource(c), Version: currentBuild().Version}
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
	nc.Replicas = c.StreamReplicas
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
		nats.ReconnectHandler(func(c *nats.Conn) {
			p.logger.Info("nats reconnected", "url", redactURL(c.ConnectedUrl()))
			p.natsReconnected()
		}),
	}
	opts = append(opts, cfg.natsDeadlines()...)
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
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(cfg.NATSTimeout))
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

// abandon undoes a start that failed part way: the parts already running
// are cancelled and waited for before the store, NATS and the targets they
// use are closed under them.
func (p *pipeline) abandon() {
	if p.cancel != nil {
		p.cancel()
		_ = p.group.Wait()
	}
	p.close()
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
