package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"time"

	"github.com/leaseguard/leaseguard/adminapi"
	"github.com/leaseguard/leaseguard/operator"
)

// AdminConfig configures the authenticated admin HTTP API. Embedded in
// Config.
type AdminConfig struct {
	AdminAddr           string        `env:"LEASEGUARD_ADMIN_ADDR" desc:"listen address of the admin API (POST /v1/revocations, GET leases, findings, evidence, the enforcement scope and the pilot report); empty: off"`
	AdminTokens         string        `env:"LEASEGUARD_ADMIN_TOKENS" desc:"principals: name:sha256:<hex of the token's SHA-256>:scopes;… (scopes read,revoke), or name:mtls:scopes for certificate-only principals"`
	AdminTLSCertFile    string        `env:"LEASEGUARD_ADMIN_TLS_CERT_FILE" desc:"server certificate of the admin API (empty: plain HTTP)"`
	AdminTLSKeyFile     string        `env:"LEASEGUARD_ADMIN_TLS_KEY_FILE" desc:"server key of the admin API"`
	AdminClientCAFile   string        `env:"LEASEGUARD_ADMIN_CLIENT_CA_FILE" desc:"CA bundle of client certificates: mutual TLS, the certificate's CN names the principal (needs the server certificate)"`
	AdminRatePerMinute  int           `env:"LEASEGUARD_ADMIN_RATE_PER_MINUTE" envDefault:"60" desc:"requests per principal per minute (and burst)"`
	AdminMaxBodyBytes   int64         `env:"LEASEGUARD_ADMIN_MAX_BODY_BYTES" envDefault:"65536" desc:"request body limit"`
	AdminRequestTimeout time.Duration `env:"LEASEGUARD_ADMIN_REQUEST_TIMEOUT" envDefault:"2m" desc:"time limit for planning and executing one revocation request"`
	AdminAuthFailures   int           `env:"LEASEGUARD_ADMIN_AUTH_FAILURES" envDefault:"10" desc:"failed authentications (wrong token, certificate of no principal) from one client address within LEASEGUARD_ADMIN_AUTH_FAILURE_WINDOW before that address gets 429 for the window, its credentials not even examined"`
	AdminAuthWindow     time.Duration `env:"LEASEGUARD_ADMIN_AUTH_FAILURE_WINDOW" envDefault:"1m" desc:"window of LEASEGUARD_ADMIN_AUTH_FAILURES, and how long an address that reached it is turned away"`
}

func (a AdminConfig) validate(bad func(name, format string, args ...any)) {
	if a.AdminAddr == "" {
		return
	}
	if _, err := a.apiConfig(); err != nil {
		badSetting(bad, "ADMIN_ADDR", err)
	}
	if a.AdminAuthFailures < 1 {
		bad("ADMIN_AUTH_FAILURES", "must be positive")
	}
	if a.AdminAuthWindow <= 0 {
		bad("ADMIN_AUTH_FAILURE_WINDOW", "must be positive")
	}
}

func (a AdminConfig) apiConfig() (adminapi.Config, error) {
	c := adminapi.Config{Addr: a.AdminAddr, RatePerMinute: a.AdminRatePerMinute, MaxBodyBytes: a.AdminMaxBodyBytes,
		RequestTimeout: a.AdminRequestTimeout, AuthFailures: a.AdminAuthFailures, AuthFailureWindow: a.AdminAuthWindow}
	var err error
	if c.Tokens, err = adminapi.ParseTokens(a.AdminTokens); err != nil {
		return c, settingErr{"ADMIN_TOKENS", err}
	}
	if a.AdminTLSCertFile != "" {
		if c.TLSCert, err = tls.LoadX509KeyPair(a.AdminTLSCertFile, a.AdminTLSKeyFile); err != nil {
			return c, settingErr{"ADMIN_TLS_CERT_FILE", err}
		}
	}
	if a.AdminClientCAFile != "" {
		pem, err := os.ReadFile(a.AdminClientCAFile)
		if err != nil {
			return c, settingErr{"ADMIN_CLIENT_CA_FILE", err}
		}
		if c.ClientCA, err = adminapi.ParseClientCA(pem); err != nil {
			return c, settingErr{"ADMIN_CLIENT_CA_FILE", err}
		}
	}
	return c, c.Validate()
}

// startAdmin serves the admin API when LEASEGUARD_ADMIN_ADDR is set. Its
// revocations go through the same operator path as `leaseguard revoke`.
func (p *pipeline) startAdmin(cfg Config, logger *slog.Logger) error {
	if cfg.AdminAddr == "" {
		return nil
	}
	acfg, err := cfg.apiConfig()
	if err != nil {
		return configError{err}
	}
	exec, err := newOperatorExecutor(cfg, p.store, p.targets, logger)
	if err != nil {
		return err
	}
	svc, err := operator.New(operator.Deps{State: p.store.Pool(), Targets: p.targets, Guard: cfg.dropperConfig().Guard,
		Executor: exec.executor, Issuer: exec.issuer, Batch: cfg.RevocationBatch, Logger: logger})
	if err != nil {
		return err
	}
	approvals, err := newApprovals(cfg, p.store.Pool(), &exec, logger)
	if err != nil {
		return err
	}
	api, err := adminapi.New(acfg, adminapi.Deps{Operator: svc, Approvals: approvals, State: p.store.Pool(),
		Rollout: p.policies, Registerer: p.registry, Logger: logger})
	if err != nil {
		return configError{err}
	}
	if err := api.Start(); err != nil {
		return err
	}
	// Before the store closes: requests in flight finish and record.
	p.closers = append([]func(){func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = api.Shutdown(ctx)
	}}, p.closers...)
	logger.Info("admin API listening", "addr", api.Addr(), "tls", cfg.AdminTLSCertFile != "", "mtls", cfg.AdminClientCAFile != "")
	return nil
}
