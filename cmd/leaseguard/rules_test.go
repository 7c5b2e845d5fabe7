package main

import (
	"strings"
	"testing"
	"time"
)

func TestSignalRulesConfigInvalid(t *testing.T) {
	cases := map[string]string{
		"LEASEGUARD_ALLOWED_CIDRS":                  "readonly=10.0.0.0/8,192.168.0.300/16",
		"LEASEGUARD_MAX_TTLS":                       "readonly=forever",
		"LEASEGUARD_ISSUANCE_BURST_WINDOW":          "90s",
		"LEASEGUARD_DENIED_BURST_THRESHOLD":         "0",
		"LEASEGUARD_ISSUANCE_BURST_BASELINE_FACTOR": "1",
		"LEASEGUARD_AUDIT_SILENCE_WINDOW":           "0s",
		"LEASEGUARD_RULE_MODES":                     "issuance-burst=enforce",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, value)
			code, _, stderr := runMain(t, "", "config")
			if code != exitConfig {
				t.Errorf("exit %d, want %d", code, exitConfig)
			}
			if !strings.Contains(stderr, name) {
				t.Errorf("error does not name %s: %s", name, stderr)
			}
		})
	}
}

func TestSignalRulesConfigMapping(t *testing.T) {
	t.Setenv("LEASEGUARD_ALLOWED_CIDRS", "readonly=10.0.0.0/8,192.168.0.0/16;postgres/app=127.0.0.1")
	t.Setenv("LEASEGUARD_MAX_TTLS", "readonly=24h")
	t.Setenv("LEASEGUARD_ISSUANCE_BURST_BASELINE_PERIOD", "0s")
	t.Setenv("LEASEGUARD_RULE_MODES", "credential-foreign-address=enforce")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	sc := c.signalRulesConfig()
	if got := sc.Allowed("postgres", "readonly"); len(got) != 2 || got[1].String() != "192.168.0.0/16" {
		t.Errorf("readonly CIDRs = %v", got)
	}
	if got := sc.Allowed("postgres", "app"); len(got) != 1 || got[0].String() != "127.0.0.1/32" {
		t.Errorf("app CIDRs = %v", got)
	}
	if sc.MaxTTL("postgres", "readonly") != 24*time.Hour || sc.MaxTTL("postgres", "app") != 768*time.Hour {
		t.Errorf("max TTLs = %v / %v", sc.MaxTTL("postgres", "readonly"), sc.MaxTTL("postgres", "app"))
	}
	if sc.IssuanceFactor >= 0 {
		t.Errorf("a zero baseline period leaves the baseline on (factor %g)", sc.IssuanceFactor)
	}
	if sc.IssuanceWindow != 5*time.Minute || sc.IssuanceThreshold != 50 || sc.DeniedThreshold != 10 || sc.SilenceWindow != 15*time.Minute {
		t.Errorf("defaults = %+v", sc)
	}
}
