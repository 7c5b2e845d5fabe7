package main

import (
	"context"
	"net"
	"path/filepath"
	"time"

	"github.com/leaseguard/leaseguard/ingest"
)

// AuditSourceConfig configures the direct audit sources: a Vault file audit
// device's log followed on disk, and a listener for Vault's socket audit
// device. Both publish into the audit stream like any shipper would.
// Embedded in Config.
type AuditSourceConfig struct {
	AuditFile           string        `envconfig:"LEASEGUARD_AUDIT_FILE" desc:"follow this Vault file audit log (tail -F: rotation and truncation survive, offset kept in the state store); empty: off"`
	AuditFileSubject    string        `envconfig:"LEASEGUARD_AUDIT_FILE_SUBJECT" default:"vault.audit.file" desc:"subject the followed file's entries are published on (inside LEASEGUARD_AUDIT_SUBJECT)"`
	AuditFilePoll       time.Duration `envconfig:"LEASEGUARD_AUDIT_FILE_POLL" default:"250ms" desc:"how often the followed file is looked at once read to its end"`
	AuditSocketAddr     string        `envconfig:"LEASEGUARD_AUDIT_SOCKET_ADDR" desc:"TCP host:port accepting Vault socket audit devices (one JSON entry per line); empty: off"`
	AuditSocketSubject  string        `envconfig:"LEASEGUARD_AUDIT_SOCKET_SUBJECT" default:"vault.audit.socket" desc:"subject the socket's entries are published on (inside LEASEGUARD_AUDIT_SUBJECT)"`
	AuditSocketIdle     time.Duration `envconfig:"LEASEGUARD_AUDIT_SOCKET_IDLE_TIMEOUT" default:"0s" desc:"close a socket connection idle this long (0: never); Vault reconnects on its next write"`
	AuditPublishTimeout time.Duration `envconfig:"LEASEGUARD_AUDIT_PUBLISH_TIMEOUT" default:"10s" desc:"one attempt of the direct sources to have entries stored in JetStream (then retried)"`
}

func (c Config) auditFileConfig() ingest.AuditFileConfig {
	path := c.AuditFile
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
	}
	return ingest.AuditFileConfig{DirectConfig: c.directConfig(c.AuditFileSubject), Path: path, PollInterval: c.AuditFilePoll}
}

func (c Config) auditSocketConfig() ingest.AuditSocketConfig {
	return ingest.AuditSocketConfig{DirectConfig: c.directConfig(c.AuditSocketSubject), Addr: c.AuditSocketAddr, IdleTimeout: c.AuditSocketIdle}
}

func (c Config) directConfig(subject string) ingest.DirectConfig {
	return ingest.DirectConfig{
		Subject: subject, AuditSubject: c.AuditSubject, DeadLetterSubject: c.DeadletterSubject,
		MaxLineBytes: c.MaxEntryBytes, PublishTimeout: c.AuditPublishTimeout,
	}
}

func (c Config) validateAuditSources(bad func(name, format string, args ...any)) {
	if c.AuditFile != "" {
		if err := c.auditFileConfig().Validate(); err != nil {
			bad("AUDIT_FILE", "%v", err)
		}
	}
	if c.AuditFilePoll <= 0 {
		bad("AUDIT_FILE_POLL", "must be positive")
	}
	if c.AuditSocketAddr != "" {
		if _, _, err := net.SplitHostPort(c.AuditSocketAddr); err != nil {
			bad("AUDIT_SOCKET_ADDR", "%q is not host:port", c.AuditSocketAddr)
		} else if err := c.auditSocketConfig().Validate(); err != nil {
			bad("AUDIT_SOCKET_ADDR", "%v", err)
		}
	}
	if c.AuditSocketIdle < 0 {
		bad("AUDIT_SOCKET_IDLE_TIMEOUT", "must not be negative")
	}
	if c.AuditPublishTimeout <= 0 {
		bad("AUDIT_PUBLISH_TIMEOUT", "must be positive")
	}
}

// startAuditSources starts the configured direct audit sources. The socket
// is bound before this returns, so Vault can connect once run reports ready.
// metrics may be nil (made here).
func (p *pipeline) startAuditSources(gctx context.Context, cfg Config, metrics *ingest.Metrics) error {
	if cfg.AuditFile == "" && cfg.AuditSocketAddr == "" {
		return nil
	}
	if metrics == nil {
		metrics = ingest.NewMetrics(p.registry)
	}
	if cfg.AuditFile != "" {
		f, err := ingest.NewAuditFile(cfg.auditFileConfig(), p.js, p.store, metrics, p.logger.With("part", "ingest", "transport", "file"))
		if err != nil {
			return configError{err}
		}
		p.group.Go(func() error { return f.Run(gctx) })
	}
	if cfg.AuditSocketAddr != "" {
		s, err := ingest.NewAuditSocket(cfg.auditSocketConfig(), p.js, metrics, p.logger.With("part", "ingest", "transport", "socket"))
		if err != nil {
			return configError{err}
		}
		if err := s.Listen(); err != nil {
			return err
		}
		p.group.Go(func() error { return s.Run(gctx) })
	}
	return nil
}
