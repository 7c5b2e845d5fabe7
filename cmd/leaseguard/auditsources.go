package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/ingest"
)

// AuditSourceConfig configures the direct audit sources: a Vault file audit
// device's log followed on disk, and a listener for Vault's socket audit
// device. Both publish into the audit stream like any shipper would.
// Embedded in Config.
type AuditSourceConfig struct {
	AuditFile           string        `env:"LEASEGUARD_AUDIT_FILE" desc:"follow this Vault file audit log (tail -F: rotation and truncation survive, offset kept in the state store); empty: off"`
	AuditFileSubject    string        `env:"LEASEGUARD_AUDIT_FILE_SUBJECT" envDefault:"vault.audit.file" desc:"subject the followed file's entries are published on (inside LEASEGUARD_AUDIT_SUBJECT)"`
	AuditFilePoll       time.Duration `env:"LEASEGUARD_AUDIT_FILE_POLL" envDefault:"250ms" desc:"how often the followed file is looked at once read to its end"`
	AuditSocketAddr     string        `env:"LEASEGUARD_AUDIT_SOCKET_ADDR" desc:"TCP host:port, or unix:<absolute path> of a unix socket, accepting Vault socket audit devices (one JSON entry per line); empty: off"`
	AuditSocketSubject  string        `env:"LEASEGUARD_AUDIT_SOCKET_SUBJECT" envDefault:"vault.audit.socket" desc:"subject the socket's entries are published on (inside LEASEGUARD_AUDIT_SUBJECT)"`
	AuditSocketIdle     time.Duration `env:"LEASEGUARD_AUDIT_SOCKET_IDLE_TIMEOUT" envDefault:"0s" desc:"close a socket connection idle this long (0: never); Vault reconnects on its next write"`
	AuditSocketAllowed  string        `env:"LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS" envDefault:"127.0.0.0/8,::1/128" desc:"comma-separated CIDRs (or addresses) whose TCP connections the socket source serves; others are closed unread, logged and counted (leaseguard_ingest_audit_socket_refused_total); not used for a unix socket"`
	AuditSocketMode     string        `env:"LEASEGUARD_AUDIT_SOCKET_MODE" envDefault:"0660" desc:"octal file mode of a unix audit socket (who may connect: Vault's user or group); world-writable is refused unless LEASEGUARD_ALLOW_INSECURE=true"`
	AuditPublishTimeout time.Duration `env:"LEASEGUARD_AUDIT_PUBLISH_TIMEOUT" envDefault:"10s" desc:"one attempt of the direct sources to have entries stored in JetStream (then retried)"`
}

func (c Config) auditFileConfig() ingest.AuditFileConfig {
	path := c.AuditFile
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
	}
	return ingest.AuditFileConfig{DirectConfig: c.directConfig(c.AuditFileSubject), Path: path, PollInterval: c.AuditFilePoll,
		StoreTimeout: c.PassTimeout}
}

// auditSocketConfig is the socket source's configuration; an allow-list
// or mode that does not parse (refused by Validate) is left empty.
func (c Config) auditSocketConfig() ingest.AuditSocketConfig {
	t := c.parsed()
	return ingest.AuditSocketConfig{DirectConfig: c.directConfig(c.AuditSocketSubject), Addr: c.AuditSocketAddr, IdleTimeout: c.AuditSocketIdle,
		AllowedNets: t.socketNets, Mode: t.socketMode}
}

// parseAllowedNets reads "10.0.0.0/8,192.168.1.7,::1/128": CIDRs, or
// single addresses. At least one is needed (0.0.0.0/0,::/0 allows every
// peer), so that an empty value is not mistaken for "anyone".
func parseAllowedNets(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		p, err := netip.ParsePrefix(e)
		if !strings.Contains(e, "/") {
			var a netip.Addr
			if a, err = netip.ParseAddr(e); err == nil {
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", e)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, errors.New("no network: list at least one (0.0.0.0/0,::/0 to serve every peer)")
	}
	return out, nil
}

// parseSocketMode reads an octal permission mode ("0660", "660"). The
// owner or the group must be able to write, or nobody but root could
// connect.
func parseSocketMode(s string) (os.FileMode, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not an octal mode such as 0660", s)
	case n&^0o777 != 0:
		return 0, fmt.Errorf("%#o has bits beyond the permission bits (0777)", n)
	case n&0o220 == 0:
		return 0, fmt.Errorf("%#o lets neither the owner nor the group write, so nobody but root could connect", n)
	}
	return os.FileMode(n), nil
}

func (c Config) directConfig(subject string) ingest.DirectConfig {
	return ingest.DirectConfig{
		Subject: subject, AuditSubject: c.AuditSubject, DeadLetterSubject: c.DeadletterSubject,
		MaxLineBytes: c.MaxEntryBytes, PublishTimeout: c.AuditPublishTimeout,
	}
}

func (c Config) validateAuditSources(t *typedSettings, bad func(name, format string, args ...any)) {
	var err error
	if t.socketNets, err = parseAllowedNets(c.AuditSocketAllowed); err != nil {
		bad("AUDIT_SOCKET_ALLOWED_CIDRS", "%v", err)
	}
	if t.socketMode, err = parseSocketMode(c.AuditSocketMode); err != nil {
		bad("AUDIT_SOCKET_MODE", "%v", err)
	}
	if c.AuditFile != "" {
		if err := c.auditFileConfig().Validate(); err != nil {
			bad("AUDIT_FILE", "%v", err)
		}
	}
	if c.AuditFilePoll <= 0 {
		bad("AUDIT_FILE_POLL", "must be positive")
	}
	if c.AuditSocketAddr != "" {
		_, unix := c.auditSocketConfig().UnixPath()
		if _, _, err := net.SplitHostPort(c.AuditSocketAddr); err != nil && !unix {
			bad("AUDIT_SOCKET_ADDR", "neither host:port nor unix:<absolute path>")
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
		fcfg := cfg.auditFileConfig()
		fcfg.Progress = p.progress.Worker("ingest.audit_file")
		f, err := ingest.NewAuditFile(fcfg, p.js, p.store, metrics, p.logger.With("part", "ingest", "transport", "file"))
		if err != nil {
			return configError{err}
		}
		p.group.Go(func() error { return f.Run(gctx) })
	}
	if cfg.AuditSocketAddr != "" {
		scfg := cfg.auditSocketConfig()
		scfg.Progress = p.progress.Worker("ingest.audit_socket")
		s, err := ingest.NewAuditSocket(scfg, p.js, metrics, p.logger.With("part", "ingest", "transport", "socket"))
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
