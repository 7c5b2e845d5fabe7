package vaultlink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultTimeout = 10 * time.Second
)

// Config says how to reach Vault.
type Config struct {
	// Addr is Vault's address, e.g. https://vault.example:8200.
	Addr string
	// Token or TokenFile (exactly one): the token leaseguard uses. The
	// file is re-read when it changes (e.g. written by Vault Agent).
	Token     string
	TokenFile string
	// Namespace (Enterprise) of every request; empty: the root.
	Namespace string
	// CACertFile verifies Vault's certificate (default: the system pool);
	// ServerName overrides the name checked in it.
	CACertFile string
	ServerName string
	// Timeout of one request (default 10s).
	Timeout time.Duration
}

// Enabled reports whether Vault is configured at all.
func (c Config) Enabled() bool { return c.Addr != "" }

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate checks the configuration of an enabled client.
func (c Config) Validate() error {
	u, err := url.Parse(c.Addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("vault address %q is not an http(s) URL", c.Addr)
	}
	switch {
	case c.Token == "" && c.TokenFile == "":
		return errors.New("vault: a token or a token file is required")
	case c.Token != "" && c.TokenFile != "":
		return errors.New("vault: give a token or a token file, not both")
	case strings.TrimSpace(c.Token) != c.Token || strings.ContainsAny(c.Token, "\r\n"):
		return errors.New("vault: the token has surrounding white space")
	}
	if c.Timeout < 0 {
		return errors.New("vault: the timeout must not be negative")
	}
	if c.CACertFile != "" {
		if _, err := loadCA(c.CACertFile); err != nil {
			return err
		}
	}
	return nil
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vault ca cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("vault ca cert %s: no PEM certificate in it", path)
	}
	return pool, nil
}

func (c Config) tlsConfig() (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CACertFile != "" {
		pool, err := loadCA(c.CACertFile)
		if err != nil {
			return nil, err
		}
		t.RootCAs = pool
	}
	return t, nil
}
