package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/store"
)

const fixture = "../../ingest/testdata/vault-1.21-audit.log"

func runMain(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	m := NewMain(strings.NewReader(stdin), &out, &errb)
	code := m.Run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestReplayDryRunFixture(t *testing.T) {
	code, out, stderr := runMain(t, "", "replay", "--dry-run", "-o", "json", fixture)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if rep.Entries != 28 || rep.Rejected != 0 || rep.Leases != (replayLeases{Issued: 2, Renewed: 1, Revoked: 1}) {
		t.Errorf("report = %+v", rep)
	}
	if rep.ByKind["issue"] != 2 || rep.ByKind["audit_test"] != 1 || rep.ByKind["error"] != 2 {
		t.Errorf("by_kind = %v", rep.ByKind)
	}
	if strings.Contains(out, "\n") && strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("stdout carries more than the report: %q", out)
	}
}

func TestReplayIntoLedgerWithRejections(t *testing.T) {
	schema := pgtest.Schema(t, "lg_replay")
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	fix, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(fix)), "\n")
	// A truncated entry (a shipper's size limit) and garbage between real ones.
	bad := append([]string{lines[0], lines[19][:700], "{not json"}, lines[1:]...)
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(bad, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runMain(t, "", "replay", "-o", "json", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 30 || rep.Rejected != 2 || len(rep.Rejections) != 2 || rep.Rejections[0].Line != 2 || rep.Rejections[1].Line != 3 {
		t.Fatalf("report = %+v", rep)
	}
	for _, r := range rep.Rejections {
		if r.Reason == "" {
			t.Error("rejection without a reason")
		}
	}
	st, err := store.Open(context.Background(), store.Config{URL: pgtest.URL(), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counts, err := st.CountLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts["active"] != 1 || counts["revoked"] != 1 {
		t.Errorf("ledger after replay = %v", counts)
	}
	// Replaying again changes nothing.
	if code, _, stderr := runMain(t, "", "replay", path); code != 0 {
		t.Fatalf("second replay exit %d: %s", code, stderr)
	}
	again, _ := st.CountLeases(context.Background())
	if again["active"] != 1 || again["revoked"] != 1 {
		t.Errorf("ledger after second replay = %v", again)
	}
}

func TestReplayFromStdinAndUsage(t *testing.T) {
	fix, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := runMain(t, string(fix), "replay", "--dry-run", "-o", "json", "-")
	if code != 0 || !strings.Contains(out, `"entries":28`) {
		t.Errorf("stdin replay: exit %d, %s", code, out)
	}
	if code, _, _ := runMain(t, "", "replay"); code != exitUsage {
		t.Errorf("replay without files: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := runMain(t, "", "nope"); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
}

func TestInvalidConfigurationNamesTheVariable(t *testing.T) {
	cases := map[string]string{
		"LEASEGUARD_METRICS_ADDR":               "not-an-address",
		"LEASEGUARD_INGEST_BATCH":               "0",
		"LEASEGUARD_ROLE_TTLS":                  "readonly=forever",
		"LEASEGUARD_MANAGED_ROLE_PATTERN":       "([",
		"LEASEGUARD_RULE_MODES":                 "lease-expired-not-revoked=maybe",
		"LEASEGUARD_TARGETS":                    "a=postgres://x/a,a=postgres://x/b",
		"LEASEGUARD_ROLES":                      "ingest,dance",
		"LEASEGUARD_COMMAND_VERIFY_KEYS":        "not-base64!",
		"LEASEGUARD_EXPIRY_GRACE":               "soon",
		"LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE": "0",
		"LEASEGUARD_DEADLETTER_MAX_AGE":         "0s",
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

func TestConfigRedactsSecrets(t *testing.T) {
	t.Setenv("LEASEGUARD_DATABASE_URL", "postgres://lg:s3cr3t-pw@db.example:5432/state")
	code, out, stderr := runMain(t, "", "config")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(out, "s3cr3t-pw") || !strings.Contains(out, "xxxxx") {
		t.Errorf("config output leaks or does not redact: %s", out)
	}
}
