package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestRunServesAdminAPI: with LEASEGUARD_ADMIN_ADDR set, run serves the
// admin API, and it refuses callers without a configured token.
func TestRunServesAdminAPI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	token := "tok-" + pgtest.Suffix()
	sum := sha256.Sum256([]byte(token))
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_admin"))
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	t.Setenv("LEASEGUARD_ROLES", "ingest,relay")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_ADMIN_ADDR", addr)
	t.Setenv("LEASEGUARD_ADMIN_TOKENS", "dash:sha256:"+hex.EncodeToString(sum[:])+":read")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	get := func(tok string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/leases", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code := get("wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code := get(token); code != http.StatusOK {
		t.Errorf("read token: %d, want 200", code)
	}
}

// TestAdminAuthFailureSettings: the failed-authentication limit reaches
// the API's configuration, and a non-positive value is refused.
func TestAdminAuthFailureSettings(t *testing.T) {
	admin := map[string]string{"LEASEGUARD_ADMIN_ADDR": "127.0.0.1:8443", "LEASEGUARD_ADMIN_TOKENS": digestSpec}
	cfg, err := loadWith(t, admin, map[string]string{"LEASEGUARD_ADMIN_AUTH_FAILURES": "5", "LEASEGUARD_ADMIN_AUTH_FAILURE_WINDOW": "10m"})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := cfg.apiConfig()
	if err != nil {
		t.Fatal(err)
	}
	if ac.AuthFailures != 5 || ac.AuthFailureWindow != 10*time.Minute {
		t.Errorf("auth failures %d within %s, want 5 within 10m", ac.AuthFailures, ac.AuthFailureWindow)
	}
	for name, value := range map[string]string{"LEASEGUARD_ADMIN_AUTH_FAILURES": "0", "LEASEGUARD_ADMIN_AUTH_FAILURE_WINDOW": "0s"} {
		if _, err := loadWith(t, admin, map[string]string{name: value}); err == nil || !problemAbout(err.Error(), name) {
			t.Errorf("%s=%s: %v, want an error naming it", name, value, err)
		}
	}
}
