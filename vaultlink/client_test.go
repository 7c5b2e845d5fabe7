package vaultlink_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/vaultlink"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  vaultlink.Config
		want string
	}{
		{vaultlink.Config{Addr: "https://vault:8200", Token: "t"}, ""},
		{vaultlink.Config{Addr: "https://vault:8200", TokenFile: "/run/token"}, ""},
		{vaultlink.Config{Addr: "vault:8200", Token: "t"}, "not an http(s) URL"},
		{vaultlink.Config{Addr: "https://vault:8200"}, "token or a token file is required"},
		{vaultlink.Config{Addr: "https://vault:8200", Token: "t", TokenFile: "f"}, "not both"},
		{vaultlink.Config{Addr: "https://vault:8200", Token: "t\n"}, "white space"},
		{vaultlink.Config{Addr: "https://vault:8200", Token: "t", CACertFile: notPEM}, "no PEM certificate"},
		{vaultlink.Config{Addr: "https://vault:8200", Token: "t", CACertFile: filepath.Join(dir, "missing")}, "no such file"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// The token comes from the file, is re-read when the file is replaced, and
// Vault's own environment (VAULT_TOKEN, VAULT_NAMESPACE) is ignored.
func TestClientTokenFileAndEnvironment(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "hvs.from-the-environment")
	t.Setenv("VAULT_NAMESPACE", "env-ns")
	c := &clock{t: time.Now()}
	v := vaulttest.New(t, c.Now)
	v.AddToken("hvs.first", vaulttest.Token{TTL: time.Hour, Renewable: true})
	v.AddToken("hvs.second", vaulttest.Token{TTL: time.Hour, Renewable: true})
	v.AddAuditDevice("file", []byte("salt"))
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("hvs.first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := vaultlink.New(vaultlink.Config{Addr: v.URL, TokenFile: path, Namespace: "team-a"}, vaultlink.Deps{Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cl.AuditHash(ctx, "file", "x"); err != nil {
		t.Fatal(err)
	}
	// Replaced by rename, as Vault Agent writes it.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("hvs.second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	c.Add(2 * time.Second)
	if _, err := cl.AuditHash(ctx, "file", "x"); err != nil {
		t.Fatal(err)
	}
	// A file being replaced (missing for a moment) keeps the last token.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c.Add(2 * time.Second)
	if _, err := cl.AuditHash(ctx, "file", "x"); err != nil {
		t.Fatal(err)
	}
	calls := v.Calls("audit-hash")
	if len(calls) != 3 || calls[0].Token != "hvs.first" || calls[1].Token != "hvs.second" || calls[2].Token != "hvs.second" {
		t.Fatalf("tokens used = %+v", calls)
	}
	for _, call := range calls {
		if call.Namespace != "team-a" {
			t.Errorf("namespace = %q", call.Namespace)
		}
	}
}

// Each endpoint as Vault answers it, and how errors are classified.
func TestClientEndpoints(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)}
	v := vaulttest.New(t, c.Now)
	v.AddToken("hvs.ok", vaulttest.Token{TTL: time.Hour, Renewable: true, Sudo: true})
	v.AddToken("hvs.nosudo", vaulttest.Token{TTL: time.Hour, Renewable: true, Deny: map[string]bool{"audit-hash": true}})
	v.AddAuditDevice("file", []byte("salt"))
	live, expired := "database/creds/ro/"+strings.Repeat("a", 24), "database/creds/ro/"+strings.Repeat("b", 24)
	v.AddLease(live, vaulttest.Lease{IssueTime: c.Now().Add(-time.Minute), ExpireTime: c.Now().Add(time.Hour)})
	v.AddLease(expired, vaulttest.Lease{IssueTime: c.Now().Add(-2 * time.Hour), ExpireTime: c.Now().Add(-time.Hour)})
	reg := prometheus.NewRegistry()
	cl, err := vaultlink.New(vaultlink.Config{Addr: v.URL, Token: "hvs.ok"}, vaultlink.Deps{Clock: c.Now, Metrics: vaultlink.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	h, err := cl.AuditHash(ctx, "file", "v-token-ro-x")
	if err != nil || h != vaulttest.Hash([]byte("salt"), "v-token-ro-x") {
		t.Errorf("AuditHash = %q, %v", h, err)
	}
	if _, err := cl.AuditHash(ctx, "syslog", "x"); vaultlink.Status(err) != 400 || !strings.Contains(err.Error(), "unknown audit backend") {
		t.Errorf("AuditHash of an unknown device: %v", err)
	}
	ids, err := cl.ListLeases(ctx, "database/creds/ro")
	if err != nil || len(ids) != 2 || ids[0] != live || ids[1] != expired {
		t.Errorf("ListLeases = %v, %v", ids, err)
	}
	if ids, err := cl.ListLeases(ctx, "database/creds/none/"); err != nil || len(ids) != 0 {
		t.Errorf("ListLeases of nothing (404) = %v, %v", ids, err)
	}
	found, isLive, issued, err := cl.LookupLiveLease(ctx, live)
	if err != nil || !found || !isLive || !issued.Equal(c.Now().Add(-time.Minute)) {
		t.Errorf("LookupLiveLease(live) = %v %v %v %v", found, isLive, issued, err)
	}
	if found, isLive, _, err := cl.LookupLiveLease(ctx, expired); err != nil || !found || isLive {
		t.Errorf("LookupLiveLease(expired, still held) = %v %v %v", found, isLive, err)
	}
	if found, _, _, err := cl.LookupLiveLease(ctx, "database/creds/ro/"+strings.Repeat("c", 24)); err != nil || found {
		t.Errorf("LookupLiveLease(unknown: 400 invalid lease) = %v %v", found, err)
	}
	if err := cl.Revoke(ctx, live); err != nil || v.HasLease(live) {
		t.Errorf("Revoke = %v", err)
	}
	if err := cl.Revoke(ctx, live); err != nil {
		t.Errorf("Revoke of a lease Vault no longer holds = %v", err)
	}

	v.SetSealed(true)
	err = cl.Revoke(ctx, expired)
	var ve *vaultlink.Error
	if !errors.As(err, &ve) || ve.Status != 503 || !ve.Unreachable() || !vaultlink.IsUnreachable(err) {
		t.Errorf("sealed: %v", err)
	}
	v.SetSealed(false)

	denied, err := vaultlink.New(vaultlink.Config{Addr: v.URL, Token: "hvs.nosudo"}, vaultlink.Deps{Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := denied.ListLeases(ctx, "database/creds/ro/"); !errors.As(err, &ve) || !ve.PermissionDenied() || ve.Unreachable() {
		t.Errorf("list without sudo: %v", err)
	}
	if _, err := denied.AuditHash(ctx, "file", "x"); vaultlink.Status(err) != 403 {
		t.Errorf("audit-hash denied: %v", err)
	}
	if n := metricValue(t, reg, "leaseguard_vault_requests_total", map[string]string{"op": "revoke", "result": "204"}); n != 2 {
		t.Errorf("revoke 204 counted %v", n)
	}
}

// metricValue reads one sample of a counter or gauge from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TLS: Vault's certificate is verified against the configured CA bundle,
// for the address's host or the configured server name.
func TestClientTLS(t *testing.T) {
	t.Parallel()
	v := vaulttest.NewTLS(t, nil)
	v.AddToken("hvs.tls", vaulttest.Token{TTL: time.Hour, Renewable: true})
	v.AddAuditDevice("file", []byte("s"))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, v.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		ca, server string
		ok         bool
	}{
		{"system roots only", "", "", false},
		{"ca bundle", ca, "", true},
		{"ca bundle, name in the certificate", ca, "example.com", true},
		{"ca bundle, wrong name", ca, "vault.other.test", false},
	} {
		c, err := vaultlink.New(vaultlink.Config{Addr: v.URL, Token: "hvs.tls", CACertFile: tc.ca, ServerName: tc.server}, vaultlink.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.AuditHash(context.Background(), "file", "x")
		if (err == nil) != tc.ok || (err != nil && !vaultlink.IsUnreachable(err)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if n := len(v.Calls("audit-hash")); n != 2 {
		t.Errorf("%d calls reached the server", n)
	}
}
