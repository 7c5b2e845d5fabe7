package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leaseguard/leaseguard/target"
)

// insecureSetting is a setting that would put a secret (a token, a
// password) or leaseguard's command and audit channels on the network in
// clear, or open them to anyone on the host. Validate refuses each unless
// LEASEGUARD_ALLOW_INSECURE=true; run then logs each at start.
type insecureSetting struct {
	// name is the variable without its prefix.
	name string
	// problem says what is wrong; it holds no secret.
	problem string
}

// insecureSettings lists the production-posture violations of c.
// "Loopback" is 127.0.0.0/8, ::1 and localhost; an unspecified address
// (":8443", "0.0.0.0", "::") is every interface, not loopback.
func (c Config) insecureSettings() []insecureSetting {
	var out []insecureSetting
	add := func(name, format string, args ...any) {
		out = append(out, insecureSetting{name: name, problem: fmt.Sprintf(format, args...)})
	}
	c.adminPosture(add)
	c.kafkaPosture(add)
	c.vaultPosture(add)
	c.natsPosture(add)
	postgresPosture("DATABASE_URL", "the state store", c.DatabaseURL, add)
	if strings.TrimSpace(c.Targets) != "" {
		if ts, err := target.ParseTargets(c.Targets); err == nil {
			for _, t := range ts {
				postgresPosture("TARGETS", "target "+t.Name, t.URL, add)
			}
		}
	}
	c.auditSocketPosture(add)
	return out
}

// validatePosture refuses the insecure settings unless the override is on.
func (c Config) validatePosture(bad func(name, format string, args ...any)) {
	if c.AllowInsecure {
		return
	}
	for _, s := range c.insecureSettings() {
		bad(s.name, "%s; refused outside loopback (set %s=true to accept it)", s.problem, env("ALLOW_INSECURE"))
	}
}

// warnInsecure logs each insecure setting the override let through, so
// that it shows in the log of every start.
func warnInsecure(logger *slog.Logger, c Config) {
	if !c.AllowInsecure {
		return
	}
	for _, s := range c.insecureSettings() {
		logger.Warn("insecure setting accepted because "+env("ALLOW_INSECURE")+"=true", "setting", env(s.name), "problem", s.problem)
	}
}

type addFunc func(name, format string, args ...any)

func (c Config) adminPosture(add addFunc) {
	if c.AdminAddr == "" || c.AdminTLSCertFile != "" {
		return
	}
	host, _, err := net.SplitHostPort(c.AdminAddr)
	if err == nil && !isLoopbackHost(host) {
		add("ADMIN_ADDR", "the admin API listens on %s, not a loopback address, without TLS (%s): bearer tokens and revocation requests would cross the network in clear",
			c.AdminAddr, env("ADMIN_TLS_CERT_FILE"))
	}
}

func (c Config) kafkaPosture(add addFunc) {
	if c.KafkaSASLMechanism == "" || c.KafkaTLS || c.KafkaTLSCAFile != "" || c.KafkaTLSCertFile != "" {
		return
	}
	for _, b := range c.brokers() {
		if host, _, err := net.SplitHostPort(b); err != nil || !isLoopbackHost(host) {
			add("KAFKA_SASL_MECHANISM", "SASL %s without TLS (%s=true) to broker %s, not a loopback address: the SASL exchange and every record would cross the network in clear",
				c.KafkaSASLMechanism, env("KAFKA_TLS"), b)
			return
		}
	}
}

func (c Config) vaultPosture(add addFunc) {
	u, err := url.Parse(c.VaultAddr)
	if c.VaultAddr == "" || err != nil || u.Scheme != "http" || isLoopbackHost(u.Hostname()) {
		return
	}
	add("VAULT_ADDR", "Vault over http at %s, not a loopback address: leaseguard's Vault token would cross the network in clear (use https)", u.Host)
}

// natsPosture: a NATS server off loopback needs TLS (tls:// or wss://, or
// a CA or client certificate) or credentials that never cross the wire
// (a creds file or an nkey: the server's nonce is signed). A user and
// password or a token in the URL would cross it in clear, so they do not
// count without TLS.
func (c Config) natsPosture(add addFunc) {
	tls := c.NATSTLSCAFile != "" || c.NATSTLSCertFile != ""
	signed := c.NATSCredsFile != "" || c.NATSNkeyFile != ""
	for _, raw := range strings.Split(c.NATSURL, ",") {
		if raw = strings.TrimSpace(raw); raw == "" {
			continue
		}
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || isLoopbackHost(u.Hostname()) || tls || u.Scheme == "tls" || u.Scheme == "wss" {
			continue
		}
		switch {
		case u.User != nil:
			add("NATS_URL", "%s, not a loopback address, gets the URL's user password or token in clear: add TLS (tls:// or %s)", u.Host, env("NATS_TLS_CA_FILE"))
		case !signed:
			add("NATS_URL", "%s, not a loopback address, has neither TLS (tls:// or %s) nor credentials (%s or %s)",
				u.Host, env("NATS_TLS_CA_FILE"), env("NATS_CREDS_FILE"), env("NATS_NKEY_FILE"))
		}
	}
}

// postgresPosture: a connection string whose first attempt is plaintext
// (sslmode=disable or allow) to a host that is neither loopback nor a unix
// socket sends the password and every query in clear.
func postgresPosture(name, what, connString string, add addFunc) {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil || cfg.TLSConfig != nil {
		return // unparsable: refused by its own check; TLS: fine
	}
	hosts := []string{cfg.Host}
	for _, fb := range cfg.Fallbacks {
		hosts = append(hosts, fb.Host)
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h, "/") && !isLoopbackHost(h) {
			add(name, "%s connects to %s, not a loopback address, without TLS (sslmode=disable or allow): its password and queries would cross the network in clear (use sslmode=verify-full)", what, h)
			return
		}
	}
}

func (c Config) auditSocketPosture(add addFunc) {
	if _, unix := c.auditSocketConfig().UnixPath(); !unix {
		return
	}
	if mode := c.parsed().socketMode; mode&0o002 != 0 {
		add("AUDIT_SOCKET_MODE", "%#o lets every local user connect to the audit socket and write audit entries into the ledger", uint32(mode))
	}
}

// isLoopbackHost reports whether host is 127.0.0.0/8, ::1 or localhost.
// An empty host or an unspecified address is every interface.
func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
