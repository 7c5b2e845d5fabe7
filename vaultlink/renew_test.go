package vaultlink_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/vaultlink"
)

type keeperRig struct {
	clock *clock
	vault *vaulttest.Server
	reg   *prometheus.Registry
	logs  *syncBuffer
}

func newKeeperRig(t *testing.T) *keeperRig {
	c := &clock{t: time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)}
	return &keeperRig{clock: c, vault: vaulttest.New(t, c.Now), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
}

func (k *keeperRig) keeper(t *testing.T, cfg vaultlink.Config) *vaultlink.TokenKeeper {
	t.Helper()
	cfg.Addr = k.vault.URL
	c, err := vaultlink.New(cfg, vaultlink.Deps{Clock: k.clock.Now, Metrics: vaultlink.NewMetrics(k.reg),
		Logger: slog.New(slog.NewTextHandler(k.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return vaultlink.NewTokenKeeper(c, vaultlink.KeeperConfig{ExpiryWarning: time.Hour})
}

func (k *keeperRig) gauge(t *testing.T, name string) float64 {
	return metricValue(t, k.reg, name, nil)
}

// A renewable token is renewed at two thirds of its TTL, asking for its
// creation TTL, until Vault caps it at its max TTL: then leaseguard says the
// token nears its end.
func TestTokenKeeperRenewsUntilMaxTTL(t *testing.T) {
	t.Parallel()
	k := newKeeperRig(t)
	tok := "hvs.renewable-token-value"
	k.vault.AddToken(tok, vaulttest.Token{TTL: time.Hour, Renewable: true, MaxTTL: 2*time.Hour + 30*time.Minute})
	kp := k.keeper(t, vaultlink.Config{Token: tok})
	ctx := context.Background()
	wait := kp.Step(ctx)
	if wait != time.Minute || len(k.vault.Calls("lookup-self")) != 1 || len(k.vault.Calls("renew-self")) != 0 {
		t.Fatalf("first step: wait %v, calls %+v", wait, k.vault.Calls())
	}
	if k.gauge(t, "leaseguard_vault_token_renewable") != 1 ||
		k.gauge(t, "leaseguard_vault_token_expiry_timestamp_seconds") != float64(k.clock.Now().Add(time.Hour).Unix()) {
		t.Errorf("gauges after lookup")
	}
	// Just before two thirds: no renewal.
	k.clock.Add(39 * time.Minute)
	if w := kp.Step(ctx); len(k.vault.Calls("renew-self")) != 0 || w != time.Minute {
		t.Fatalf("renewed early (wait %v)", w)
	}
	k.clock.Add(time.Minute)
	kp.Step(ctx)
	renew := k.vault.Calls("renew-self")
	if len(renew) != 1 || renew[0].Status != 200 || !k.vault.TokenExpiry(tok).Equal(k.clock.Now().Add(time.Hour)) {
		t.Fatalf("renewal: %+v, expiry %v", renew, k.vault.TokenExpiry(tok))
	}
	// Renew at each two thirds until the max TTL (2h30m from creation) caps.
	for i := 0; i < 3; i++ {
		k.clock.Add(40 * time.Minute)
		kp.Step(ctx)
	}
	if n := len(k.vault.Calls("renew-self")); n != 3 {
		t.Fatalf("renewals = %d", n)
	}
	if k.gauge(t, "leaseguard_vault_token_near_expiry") != 1 || k.gauge(t, "leaseguard_vault_token_renewable") != 0 {
		t.Errorf("near expiry %v, renewable %v", k.gauge(t, "leaseguard_vault_token_near_expiry"), k.gauge(t, "leaseguard_vault_token_renewable"))
	}
	logs := k.logs.String()
	if !strings.Contains(logs, "reached its max TTL") || !strings.Contains(logs, "expires soon") || strings.Contains(logs, tok) {
		t.Errorf("logs:\n%s", logs)
	}
	if metricValue(t, k.reg, "leaseguard_vault_token_renewals_total", map[string]string{"result": "ok"}) != 3 {
		t.Error("renewals not counted")
	}
}

// A token that is not renewable is never renewed; it is reported, and so is
// its approaching end.
func TestTokenKeeperNotRenewable(t *testing.T) {
	t.Parallel()
	k := newKeeperRig(t)
	k.vault.AddToken("hvs.batch", vaulttest.Token{TTL: 3 * time.Hour})
	kp := k.keeper(t, vaultlink.Config{Token: "hvs.batch"})
	ctx := context.Background()
	kp.Step(ctx)
	if k.gauge(t, "leaseguard_vault_token_renewable") != 0 || k.gauge(t, "leaseguard_vault_token_near_expiry") != 0 ||
		!strings.Contains(k.logs.String(), "not renewable") {
		t.Fatalf("after lookup: logs %s", k.logs.String())
	}
	k.clock.Add(2*time.Hour + time.Minute)
	kp.Step(ctx)
	if len(k.vault.Calls("renew-self")) != 0 || k.gauge(t, "leaseguard_vault_token_near_expiry") != 1 ||
		!strings.Contains(k.logs.String(), "expires soon") {
		t.Errorf("near the end: calls %+v, logs %s", k.vault.Calls(), k.logs.String())
	}
}

// A new token in the file is looked up (and renewed) in place of the old;
// a failed renewal is retried soon.
func TestTokenKeeperFollowsTokenFile(t *testing.T) {
	t.Parallel()
	k := newKeeperRig(t)
	k.vault.AddToken("hvs.old", vaulttest.Token{TTL: 30 * time.Minute})
	k.vault.AddToken("hvs.new", vaulttest.Token{TTL: 2 * time.Hour, Renewable: true})
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("hvs.old"), 0o600); err != nil {
		t.Fatal(err)
	}
	kp := k.keeper(t, vaultlink.Config{TokenFile: path})
	ctx := context.Background()
	kp.Step(ctx)
	if k.gauge(t, "leaseguard_vault_token_near_expiry") != 1 {
		t.Fatal("a 30m non-renewable token is near its end")
	}
	if err := os.WriteFile(path, []byte("hvs.new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k.clock.Add(time.Minute)
	kp.Step(ctx)
	looks := k.vault.Calls("lookup-self")
	if len(looks) != 2 || looks[1].Token != "hvs.new" || k.gauge(t, "leaseguard_vault_token_near_expiry") != 0 ||
		k.gauge(t, "leaseguard_vault_token_renewable") != 1 {
		t.Fatalf("after rotation: %+v", looks)
	}
	k.vault.SetSealed(true)
	k.clock.Add(81 * time.Minute)
	if w := kp.Step(ctx); w != 30*time.Second || metricValue(t, k.reg, "leaseguard_vault_token_renewals_total", map[string]string{"result": "error"}) != 1 {
		t.Errorf("failed renewal: wait %v", w)
	}
	k.vault.SetSealed(false)
	k.clock.Add(30 * time.Second)
	kp.Step(ctx)
	if r := k.vault.Calls("renew-self"); len(r) != 2 || r[1].Status != 200 || r[1].Token != "hvs.new" {
		t.Errorf("renewals: %+v", r)
	}
	if strings.Contains(k.logs.String(), "hvs.") {
		t.Errorf("a token is in the logs:\n%s", k.logs.String())
	}
}
