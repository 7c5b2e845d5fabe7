package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/evidence"
)

// natsCredentialsDir holds the embedded server's nkeys under DATA_DIR.
func (c Config) natsCredentialsDir() string { return filepath.Join(c.DataDir, "nats") }

// natsAccess is what a shipper and a SIEM reader reach on the embedded
// server's listener: the configured ingest and evidence subjects.
func (c Config) natsAccess() bus.Access {
	a := bus.DefaultAccess()
	a.IngestSubjects = []string{c.AuditSubject}
	if c.LeaseSubject != "" {
		a.IngestSubjects = append(a.IngestSubjects, c.LeaseSubject)
	}
	a.EvidenceSubject = c.EvidenceSubject
	a.EvidenceStream = evidence.DefaultStream
	return a
}

// startEmbeddedNATS starts the embedded JetStream server: with no
// listener by default, or listening on NATS_LISTEN for a shipper and SIEM
// readers, each with its own nkey generated in DATA_DIR/nats. Only paths
// and public keys are logged, never a seed.
func startEmbeddedNATS(cfg Config, logger *slog.Logger) (*bus.Embedded, error) {
	store := filepath.Join(cfg.DataDir, "jetstream")
	if err := os.MkdirAll(store, 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", env("DATA_DIR"), err)
	}
	users := []string{bus.UserLeaseguard}
	if cfg.NATSListen != "" {
		users = append(users, bus.UserShipper, bus.UserSIEM)
	}
	creds, err := bus.LoadOrCreateCredentials(cfg.natsCredentialsDir(), users...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", env("DATA_DIR"), err)
	}
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: store, Listen: cfg.NATSListen, Credentials: creds, Access: cfg.natsAccess()})
	if err != nil {
		return nil, err
	}
	if cfg.NATSListen == "" {
		logger.Info("embedded JetStream started", "store", store, "listen", "none (in-process only)")
		return e, nil
	}
	logger.Info("embedded JetStream started", "store", store, "listen", e.URL())
	for _, u := range users {
		cr, _ := creds.User(u)
		logger.Info("embedded JetStream credential", "user", u, "nkey_seed_file", cr.SeedFile, "nkey", cr.PublicKey)
	}
	return e, nil
}

// ensureSIEMConsumer creates the consumer SIEM readers pull evidence from
// when the embedded server listens for them; they cannot create one.
func (p *pipeline) ensureSIEMConsumer(ctx context.Context, cfg Config) error {
	if p.embedded == nil || cfg.NATSListen == "" {
		return nil
	}
	return bus.EnsureSIEMConsumer(ctx, p.js, cfg.natsAccess())
}

// validateNATSListen: a listener belongs to the embedded server only, and
// its address and the subjects it exposes must be usable as they are.
func (c Config) validateNATSListen(bad func(name, format string, args ...any)) {
	if c.NATSListen == "" {
		return
	}
	if c.NATSURL != "" {
		bad("NATS_LISTEN", "only for the embedded server: unset it or LEASEGUARD_NATS_URL")
		return
	}
	if err := bus.ValidateListen(c.NATSListen); err != nil {
		bad("NATS_LISTEN", "%v", err)
	}
	if err := c.natsAccess().Validate(); err != nil {
		bad("NATS_LISTEN", "%v", err)
	}
}
