package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// VaultConfig configures leaseguard's calls to Vault. Embedded in Config.
type VaultConfig struct {
	VaultAddr          string        `env:"LEASEGUARD_VAULT_ADDR" desc:"Vault address (https://vault:8200); empty: leaseguard never calls Vault"`
	VaultToken         string        `env:"LEASEGUARD_VAULT_TOKEN" secret:"true" desc:"Vault token of leaseguard (prefer LEASEGUARD_VAULT_TOKEN_FILE); never logged"`
	VaultTokenFile     string        `env:"LEASEGUARD_VAULT_TOKEN_FILE" desc:"file holding the Vault token, re-read when it changes (e.g. written by Vault Agent)"`
	VaultNamespace     string        `env:"LEASEGUARD_VAULT_NAMESPACE" desc:"Vault Enterprise namespace of every call; empty: root"`
	VaultCACertFile    string        `env:"LEASEGUARD_VAULT_CA_CERT_FILE" desc:"CA bundle verifying Vault's certificate (default: the system's)"`
	VaultServerName    string        `env:"LEASEGUARD_VAULT_TLS_SERVER_NAME" desc:"name to verify in Vault's certificate (default: the address's host)"`
	VaultTimeout       time.Duration `env:"LEASEGUARD_VAULT_TIMEOUT" envDefault:"10s" desc:"timeout of one Vault call"`
	VaultTokenWarning  time.Duration `env:"LEASEGUARD_VAULT_TOKEN_EXPIRY_WARNING" envDefault:"1h" desc:"a token expiring within this that cannot be renewed past it is logged and raises leaseguard_vault_token_near_expiry"`
	VaultRevoke        bool          `env:"LEASEGUARD_VAULT_REVOKE" envDefault:"true" desc:"after a drop, revoke the lease in Vault (sys/leases/revoke) so Vault stops retrying and counting it; retried durably"`
	VaultForce         bool          `env:"LEASEGUARD_VAULT_FORCE" envDefault:"true" desc:"when that revoke fails and the user is verified gone from the target (pg_roles, mysql.user), use sys/leases/revoke-force/<that exact lease id> (sudo)"`
	VaultRetryMax      time.Duration `env:"LEASEGUARD_VAULT_RETRY_MAX_BACKOFF" envDefault:"30m" desc:"longest wait between retries of a Vault revocation that failed (from 10s, doubling)"`
	VaultVerify        bool          `env:"LEASEGUARD_VAULT_VERIFY" envDefault:"true" desc:"verify-before-destroy: orphan-role and credential-reuse-unknown-lease drop nothing while Vault holds, or cannot rule out, a live lease for the user"`
	VaultVerifyRecheck time.Duration `env:"LEASEGUARD_VAULT_VERIFY_RECHECK" envDefault:"1m" desc:"how often Vault is asked again about a finding it did not clear"`
	VaultAuditDevice   string        `env:"LEASEGUARD_VAULT_AUDIT_DEVICE" desc:"paths of the audit devices whose entries leaseguard receives, comma-separated (e.g. file,socket; each device hashes with its own salt, so list every one): managed role names and lease ids are hashed through sys/audit-hash/<device> to link HMAC'd users and revocations through the API body exactly; empty: off"`
	VaultLinkRevokes   bool          `env:"LEASEGUARD_VAULT_LINK_REVOCATIONS" envDefault:"true" desc:"with LEASEGUARD_VAULT_AUDIT_DEVICE: link revocations through the API body (lease id logged as an HMAC) to their leases by hashing lease ids, each at most once per device, and apply them as plain revocations"`
	VaultHashAhead     int           `env:"LEASEGUARD_VAULT_LEASE_HASH_AHEAD" envDefault:"20" desc:"newly issued lease ids hashed per audit device per second before any revocation names them, so the link is usually immediate; 0: only when a hashed revocation waits"`
	VaultHashWanted    int           `env:"LEASEGUARD_VAULT_LEASE_HASH_WANTED" envDefault:"200" desc:"lease ids hashed per audit device per second while a hashed revocation waits for its lease (newest first, issued before the revocation)"`
	VaultConfirmRate   int           `env:"LEASEGUARD_VAULT_LEASE_CONFIRM_RATE" envDefault:"20" desc:"leases looked up in Vault per second to record that Vault holds them (a lease's end is corroborated by Vault only if Vault held it); 0: off"`
}

// auditDevices is the list in LEASEGUARD_VAULT_AUDIT_DEVICE.
func (v VaultConfig) auditDevices() []string {
	if strings.TrimSpace(v.VaultAuditDevice) == "" {
		return nil
	}
	ds, err := vaultlink.CleanDevices(strings.Split(v.VaultAuditDevice, ","))
	if err != nil {
		return nil
	}
	return ds
}

func (v VaultConfig) validate(bad func(name, format string, args ...any)) {
	if v.VaultAddr == "" {
		if v.VaultToken != "" || v.VaultTokenFile != "" || v.VaultAuditDevice != "" {
			bad("VAULT_ADDR", "must be set when a Vault token, token file or audit device is")
		}
		return
	}
	if err := v.clientConfig().Validate(); err != nil {
		bad("VAULT_ADDR", "%v", err)
	}
	if v.VaultTimeout <= 0 {
		bad("VAULT_TIMEOUT", "must be positive")
	}
	if v.VaultRetryMax < 10*time.Second {
		bad("VAULT_RETRY_MAX_BACKOFF", "must be at least 10s")
	}
	if v.VaultVerifyRecheck <= 0 {
		bad("VAULT_VERIFY_RECHECK", "must be positive")
	}
	if v.VaultAuditDevice == "" {
		return
	}
	if _, err := vaultlink.CleanDevices(strings.Split(v.VaultAuditDevice, ",")); err != nil {
		bad("VAULT_AUDIT_DEVICE", "%v", err)
	}
	if v.VaultLinkRevokes && v.VaultHashAhead < 0 {
		bad("VAULT_LEASE_HASH_AHEAD", "must not be negative")
	}
	if v.VaultLinkRevokes && v.VaultHashWanted <= 0 {
		bad("VAULT_LEASE_HASH_WANTED", "must be positive")
	}
	if v.VaultConfirmRate < 0 {
		bad("VAULT_LEASE_CONFIRM_RATE", "must not be negative")
	}
}

func (v VaultConfig) clientConfig() vaultlink.Config {
	return vaultlink.Config{Addr: v.VaultAddr, Token: v.VaultToken, TokenFile: v.VaultTokenFile, Namespace: v.VaultNamespace,
		CACertFile: v.VaultCACertFile, ServerName: v.VaultServerName, Timeout: v.VaultTimeout}
}

func (v VaultConfig) reconcilerConfig() vaultlink.ReconcilerConfig {
	c := vaultlink.DefaultReconcilerConfig()
	c.Force = v.VaultForce
	c.MaxBackoff = v.VaultRetryMax
	return c
}

// startVault connects to Vault when it is configured: the token keeper
// runs always; the reconciler with the revoker; the HMAC resolver with the
// observer.
func (p *pipeline) startVault(cfg Config, roles map[string]bool) error {
	if cfg.VaultAddr == "" {
		return nil
	}
	logger := p.logger.With("part", "vault")
	c, err := vaultlink.New(cfg.clientConfig(), vaultlink.Deps{Metrics: vaultlink.NewMetrics(p.registry), Logger: logger})
	if err != nil {
		return configError{err}
	}
	p.vault = c
	gctx := p.groupCtx
	keeper := vaultlink.NewTokenKeeper(c, vaultlink.KeeperConfig{ExpiryWarning: cfg.VaultTokenWarning,
		Progress: p.progress.Worker("vault.token_keeper")})
	p.group.Go(func() error { return keeper.Run(gctx) })
	if roles["revoker"] && cfg.VaultRevoke {
		rec, err := vaultlink.NewReconciler(cfg.reconcilerConfig(), vaultlink.ReconcilerDeps{
			Pool: p.store.Pool(), Vault: c, Targets: p.targets, Evidence: evidenceBuilder(cfg),
			Logger: logger, Metrics: c.Metrics(), Progress: p.progress.Worker("vault.reconciler"),
		})
		if err != nil {
			return err
		}
		p.group.Go(func() error { return rec.Run(gctx) })
	}
	devices := cfg.auditDevices()
	if roles["observer"] && len(devices) > 0 {
		res, err := vaultlink.NewHMACResolver(vaultlink.HMACResolverConfig{Devices: devices,
			ManagedPattern: cfg.parsed().managed, Progress: p.progress.Worker("vault.hmac_resolver")},
			p.store.Pool(), c, logger, c.Metrics(), nil)
		if err != nil {
			return err
		}
		p.group.Go(func() error { return res.Run(gctx) })
	}
	if (roles["detectors"] || roles["observer"]) && cfg.VaultConfirmRate > 0 {
		conf, err := vaultlink.NewLeaseConfirmer(vaultlink.ConfirmerConfig{PerSecond: cfg.VaultConfirmRate,
			Progress: p.progress.Worker("vault.lease_confirmer")}, p.store.Pool(), c, logger, nil)
		if err != nil {
			return err
		}
		p.group.Go(func() error { return conf.Run(gctx) })
	}
	linkRevokes := roles["ingest"] && len(devices) > 0 && cfg.VaultLinkRevokes
	if linkRevokes {
		ahead := cfg.VaultHashAhead
		if ahead == 0 {
			ahead = -1 // none ahead
		}
		lk, err := vaultlink.NewRevocationLinker(vaultlink.RevocationLinkerConfig{Devices: devices, Interval: time.Second,
			Wanted: cfg.VaultHashWanted, Ahead: ahead, Progress: p.progress.Worker("vault.revocation_linker")},
			p.store.Pool(), p.store, c, logger, c.Metrics(), nil)
		if err != nil {
			return err
		}
		p.group.Go(func() error { return lk.Run(gctx) })
	}
	logger.Info("vault link running", "addr", cfg.VaultAddr, "revoke", cfg.VaultRevoke && roles["revoker"],
		"force", cfg.VaultForce, "verify_before_destroy", cfg.VaultVerify, "audit_devices", devices, "link_revocations", linkRevokes)
	return nil
}

// vaultLeases is the Vault link the detectors ask to corroborate a drop;
// nil without one.
func (p *pipeline) vaultLeases() detectors.VaultLeases {
	if p.vault == nil {
		return nil
	}
	return p.vault
}

// vaultVerify is the observer rules' verify-before-destroy, or nil.
func (p *pipeline) vaultVerify(cfg Config) *detectors.VaultVerify {
	if p.vault == nil || !cfg.VaultVerify {
		return nil
	}
	return &detectors.VaultVerify{Leases: p.vault, AuditDevices: cfg.auditDevices(), Recheck: cfg.VaultVerifyRecheck}
}

// revokeInVault is the offline revoke path's Vault step: the leases of the
// users just dropped are revoked in Vault (for up to a minute); what fails
// stays queued for `leaseguard run`.
func revokeInVault(ctx context.Context, stderr io.Writer, cfg Config, st *store.Store, targets *target.Set, logger *slog.Logger) {
	if cfg.VaultAddr == "" || !cfg.VaultRevoke {
		return
	}
	c, err := vaultlink.New(cfg.clientConfig(), vaultlink.Deps{Logger: logger.With("part", "vault")})
	if err != nil {
		fmt.Fprintln(stderr, "vault:", err)
		return
	}
	rec, err := vaultlink.NewReconciler(cfg.reconcilerConfig(), vaultlink.ReconcilerDeps{
		Pool: st.Pool(), Vault: c, Targets: targets, Evidence: evidenceBuilder(cfg),
		Logger: logger.With("part", "vault"),
	})
	if err != nil {
		fmt.Fprintln(stderr, "vault:", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	pending, err := rec.Drain(ctx)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "vault: revoking the leases in Vault: %v (they stay queued; leaseguard run retries)\n", err)
	case pending > 0:
		fmt.Fprintf(stderr, "vault: %d lease(s) not yet revoked in Vault; leaseguard run retries them (the drops stand)\n", pending)
	}
}
