// Package rules_test checks the Prometheus alerting rules shipped in this
// directory with promtool (installed by scripts/ensure-tools.sh, `make
// tools`; the tests fail, never skip, without it).
package rules_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const (
	rulesFile = "leaseguard-rules.yml"
	testsFile = "leaseguard-rules.test.yml"
)

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed; run `make tools` (scripts/ensure-tools.sh installs Debian's prometheus)")
	}
	return p
}

func run(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRulesCheck(t *testing.T) {
	out, err := run(t, ".", "check", "rules", rulesFile)
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS: 14 rules found") {
		t.Errorf("promtool check rules:\n%s", out)
	}
}

func TestRulesUnitTests(t *testing.T) {
	out, err := run(t, ".", "test", "rules", testsFile)
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// The unit tests notice a changed rule: the gap alert waiting longer
// than its test expects, the silent-source window widened, or a stalled
// worker tolerated longer.
func TestRulesUnitTestsCatchChanges(t *testing.T) {
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(testsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, old, new, failing string }{
		{"gap alert waits 3m", "[5m]) > 0\n        for: 1m\n", "[5m]) > 0\n        for: 3m\n", "LeaseguardAuditSocketGap"},
		{"silent window 30m", "> 900", "> 1800", "LeaseguardAuditSourceSilent"},
		{"critical findings only", `severity="critical"}[10m]`, `severity="high"}[10m]`, "LeaseguardCriticalFinding"},
		{"stall threshold 10m", "(leaseguard_worker_stalled_seconds) > 60", "(leaseguard_worker_stalled_seconds) > 600", "LeaseguardWorkerStalled"},
		{"ingest lag threshold 10m", "[5m]))) > 60\n", "[5m]))) > 600\n", "LeaseguardIngestLagging"},
		{"failed revocations ignored", `increase(leaseguard_revocations_total{outcome="failed"}[15m])) > 0`, `increase(leaseguard_revocations_total{outcome="failed"}[15m])) > 5`, "LeaseguardRevocationsFailed"},
		{"new failed series ignored", `offset 15m) > 0`, `offset 15m) > 1`, "LeaseguardRevocationsFailed"},
		{"dead letters ignored", `increase(leaseguard_revocation_dead_letters_total[15m])) > 0`, `increase(leaseguard_revocation_dead_letters_total[15m])) > 1`, "LeaseguardRevocationsFailed"},
		{"throttling ignored", "(leaseguard_revocation_throttling) == 1", "(leaseguard_revocation_throttling) == 2", "LeaseguardRevocationsThrottled"},
		{"pending alerts ignored", "leaseguard_alerts_pending > 0", "leaseguard_alerts_pending > 5", "LeaseguardAlertDeliveryFailing"},
		{"token warning ignored", "\n          leaseguard_vault_token_near_expiry == 1\n        for: 1m", "\n          leaseguard_vault_token_near_expiry == 2\n        for: 1m", "LeaseguardVaultTokenNearExpiry"},
		{"token critical at 10m", "- time() < 900", "- time() < 600", "LeaseguardVaultTokenExpiring"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(string(rules), c.old) != 1 {
				t.Fatalf("%q is not in the rules exactly once", c.old)
			}
			dir := t.TempDir()
			changed := strings.Replace(string(rules), c.old, c.new, 1)
			if err := os.WriteFile(filepath.Join(dir, rulesFile), []byte(changed), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, testsFile), tests, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := run(t, dir, "test", "rules", testsFile)
			if err == nil {
				t.Fatalf("promtool test rules passed with the rule changed (%s):\n%s", c.name, out)
			}
			if !strings.Contains(out, "alertname: "+c.failing) {
				t.Errorf("the failure does not name %s:\n%s", c.failing, out)
			}
		})
	}
}

// Every leaseguard metric the rules name (expressions and runbooks) is one
// leaseguard's code registers.
func TestRulesNameExistingMetrics(t *testing.T) {
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`leaseguard_[a-z_]+[a-z]`)
	literal := regexp.MustCompile(`"(leaseguard_[a-z_]+[a-z])"`)
	defined := map[string]bool{}
	root := filepath.Join("..", "..")
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "e2e" || d.Name() == "tools") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range name.FindAllString(string(rules), -1) {
		used[m] = true
	}
	var missing []string
	for m := range used {
		// A histogram's series are its name and a suffix.
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
		if !defined[m] && !defined[base] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the rules name metrics no code defines: %v", missing)
	}
	if len(used) < 10 {
		t.Errorf("only %d metric names found in the rules: %v", len(used), used)
	}
}
