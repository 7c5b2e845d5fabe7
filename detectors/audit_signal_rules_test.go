package detectors_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// signalRules builds the audit rules with the given modes and signal
// configuration (zero fields: defaults), at clock c.
func (f *fixture) signalRules(t *testing.T, c *clock, modes string, sc detectors.SignalRulesConfig) *detectors.AuditRules {
	t.Helper()
	return f.signalRulesWith(t, c, modes, sc, nil)
}

// signalRulesWith is signalRules with Vault to corroborate the rules that act.
func (f *fixture) signalRulesWith(t *testing.T, c *clock, modes string, sc detectors.SignalRulesConfig, vault detectors.VaultLeases) *detectors.AuditRules {
	t.Helper()
	m, err := detectors.ParseModes(modes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := detectors.DefaultAuditRulesConfig()
	cfg.Modes, cfg.Scope, cfg.UnauditedWindow, cfg.Interval, cfg.Signals = m, detectors.Everywhere(), auditWindow, 10*time.Millisecond, sc
	a, err := detectors.NewAuditRules(cfg, detectors.AuditRulesDeps{Pool: f.st.Pool(), Evidence: f.builder, Clock: c.now,
		Issuer: f.issuer, Sink: f.sink, Vault: vault})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// issueAt records leases issued at the given times to one entity for
// postgres/reporting, as ingest does.
func (f *fixture) issueAt(t *testing.T, prefix, entity string, times ...time.Time) {
	t.Helper()
	var evs []schemas.LeaseEvent
	for i, at := range times {
		at := at
		evs = append(evs, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued,
			LeaseID: fmt.Sprintf("postgres/creds/reporting/%s%04d", prefix, i), Mount: "postgres", Role: "reporting",
			Database: "main", DBUser: fmt.Sprintf("v-%s-%d", prefix, i), IssueTime: &at, EventTime: at, EntityID: entity,
			RemoteAddress: "10.0.0.7", VaultRequestID: fmt.Sprintf("req-%s-%d", prefix, i), Source: schemas.SourceRef{Transport: "test"}})
	}
	if _, err := f.st.Apply(context.Background(), store.Batch{Leases: evs}); err != nil {
		t.Fatal(err)
	}
}

func spread(from time.Time, n int, step time.Duration) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = from.Add(time.Duration(i) * step)
	}
	return out
}

func TestIssuanceBurstEdges(t *testing.T) {
	t.Parallel()
	noBaseline := detectors.SignalRulesConfig{IssuanceWindow: 2 * time.Minute, IssuanceThreshold: 5, IssuanceFactor: -1}
	cases := []struct {
		name string
		// batches are applied in order; times are offsets from t0.
		batches [][]time.Duration
		tickAt  time.Duration
		want    int
	}{
		{"just under the threshold", [][]time.Duration{{0, 10 * time.Second, 20 * time.Second, 30 * time.Second, 100 * time.Second}}, 3 * time.Minute, 0},
		{"just over the threshold", [][]time.Duration{{0, 10 * time.Second, 20 * time.Second, 30 * time.Second, 100 * time.Second, 110 * time.Second}}, 3 * time.Minute, 1},
		{"six, but not within one window", [][]time.Duration{{0, 10 * time.Second, 20 * time.Second}, {2 * time.Minute, 130 * time.Second, 140 * time.Second}}, 5 * time.Minute, 0},
		// The sixth entry of the window arrives late, after a pass that saw five.
		{"out of order, late entry completes the burst", [][]time.Duration{{0, 10 * time.Second, 20 * time.Second, 30 * time.Second, 100 * time.Second}, {5 * time.Second}}, 3 * time.Minute, 1},
		// Vault's clock runs ahead of leaseguard's: the burst is in the future.
		{"Vault clock ahead", [][]time.Duration{{0, 1, 2, 3, 4, 5}}, -10 * time.Minute, 1},
		// Entries older than the lookback are counted, not judged.
		{"older than the lookback", [][]time.Duration{{0, 1, 2, 3, 4, 5}}, 2 * time.Hour, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			base := f.now.Truncate(time.Minute)
			c := newClock(base.Add(tc.tickAt))
			a := f.signalRules(t, c, "", noBaseline)
			for i, b := range tc.batches {
				var times []time.Time
				for _, d := range b {
					times = append(times, base.Add(d))
				}
				f.issueAt(t, fmt.Sprintf("b%d", i), "ent-1", times...)
				tick(t, a)
			}
			got := f.ruleFindings(t, detectors.RuleIssuanceBurst)
			if len(got) != tc.want {
				t.Fatalf("%d findings, want %d: %+v", len(got), tc.want, got)
			}
			for _, fd := range got {
				if fd.Severity != schemas.SeverityHigh || fd.EntityID != "ent-1" || fd.Mount != "postgres" || fd.Role != "reporting" ||
					fd.Facts["count"] != float64(6) || fd.Facts["trigger"] != "threshold" {
					t.Errorf("finding = %+v", fd)
				}
			}
		})
	}
}

func TestIssuanceBurstOncePerWindowAndBaseline(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	base := f.now.Truncate(time.Minute)
	c := newClock(base.Add(2 * time.Hour))
	sc := detectors.SignalRulesConfig{IssuanceWindow: 2 * time.Minute, IssuanceThreshold: 1000, IssuanceFactor: 5,
		IssuanceBaseline: time.Hour, IssuanceBaselineMin: 5, Lookback: 3 * time.Hour}
	a := f.signalRules(t, c, "", sc)
	// History: one credential a minute for an hour (2 per window).
	f.issueAt(t, "h", "ent-1", spread(base, 60, time.Minute)...)
	// Then 10 in a window (5x the average): not above it.
	f.issueAt(t, "p", "ent-1", spread(base.Add(61*time.Minute), 10, time.Second)...)
	tick(t, a)
	if got := f.ruleFindings(t, detectors.RuleIssuanceBurst); len(got) != 0 {
		t.Fatalf("at 5x the baseline: %+v", got)
	}
	// One more: 11 > 10.
	f.issueAt(t, "q", "ent-1", base.Add(61*time.Minute+30*time.Second))
	tick(t, a)
	tick(t, a)
	got := f.ruleFindings(t, detectors.RuleIssuanceBurst)
	if len(got) != 1 || got[0].Facts["trigger"] != "baseline" || got[0].Facts["count"] != float64(11) {
		t.Fatalf("above 5x the baseline: %+v", got)
	}
	// Another entity with no history and the same burst: not a baseline
	// burst (no baseline), under the absolute threshold.
	f.issueAt(t, "n", "ent-2", spread(base.Add(61*time.Minute), 11, time.Second)...)
	tick(t, a)
	if got := f.ruleFindings(t, detectors.RuleIssuanceBurst); len(got) != 1 {
		t.Fatalf("new entity: %+v", got)
	}
	// The burst goes on in the next minute: the same window is not
	// reported again; a burst in a later, disjoint window is.
	f.issueAt(t, "r", "ent-1", spread(base.Add(62*time.Minute), 3, time.Second)...)
	tick(t, a)
	if got := f.ruleFindings(t, detectors.RuleIssuanceBurst); len(got) != 1 {
		t.Fatalf("overlapping window reported again: %d", len(got))
	}
	f.issueAt(t, "s", "ent-1", spread(base.Add(64*time.Minute), 20, time.Second)...)
	tick(t, a)
	if got := f.ruleFindings(t, detectors.RuleIssuanceBurst); len(got) != 2 {
		t.Fatalf("disjoint window: %d findings, want 2", len(got))
	}
}

func (f *fixture) applySignals(t *testing.T, sigs ...store.AuditSignal) {
	t.Helper()
	var s store.AuditSignals
	for i := range sigs {
		s.Observe(sigs[i].Time, &sigs[i], nil)
	}
	if _, err := f.st.Apply(context.Background(), store.Batch{Signals: s}); err != nil {
		t.Fatal(err)
	}
}

func TestPermissionDeniedBurst(t *testing.T) {
	t.Parallel()
	const threshold = 10
	mk := func(at time.Time, remote string) store.AuditSignal {
		return store.AuditSignal{Kind: store.SignalDeniedCreds, Time: at, Mount: "postgres", Role: "r" + at.Format("05"),
			TokenAccessor: "hmac-sha256:acc", RemoteAddress: remote, RequestID: "req-" + at.Format("150405.000")}
	}
	cases := []struct {
		name   string
		n      int
		remote func(i int) string
		want   int
	}{
		{"just under", threshold, func(int) string { return "10.0.0.5" }, 0},
		{"just over", threshold + 1, func(int) string { return "10.0.0.5" }, 1},
		{"over, but from two addresses", threshold + 1, func(i int) string { return fmt.Sprintf("10.0.0.%d", i%2) }, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			base := f.now.Truncate(time.Minute)
			var sigs []store.AuditSignal
			for i := 0; i < tc.n; i++ {
				// Across roles: probing several roles is one burst.
				sigs = append(sigs, mk(base.Add(time.Duration(i)*10*time.Second), tc.remote(i)))
			}
			// Out of order: the last first.
			sigs[0], sigs[len(sigs)-1] = sigs[len(sigs)-1], sigs[0]
			for _, s := range sigs {
				f.applySignals(t, s)
			}
			a := f.signalRules(t, newClock(base.Add(5*time.Minute)), "", detectors.SignalRulesConfig{DeniedThreshold: threshold})
			tick(t, a)
			tick(t, a)
			got := f.ruleFindings(t, detectors.RuleDeniedBurst)
			if len(got) != tc.want {
				t.Fatalf("%d findings, want %d", len(got), tc.want)
			}
			if tc.want > 0 && (got[0].Severity != schemas.SeverityMedium || got[0].Facts["remote_address"] != "10.0.0.5" ||
				got[0].Facts["token_accessor"] != "hmac-sha256:acc") {
				t.Errorf("finding = %+v", got[0])
			}
		})
	}
}

// TestReplayRealVaultLog runs the real Vault 1.21.0 audit log through the
// ingest processor: the root token's requests on the database mount, the
// enabled file device and alice's refused creds request reach the rules.
func TestReplayRealVaultLog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	data, err := os.ReadFile("../ingest/testdata/vault-1.21-audit.log")
	if err != nil {
		t.Fatal(err)
	}
	proc, err := ingest.NewProcessor(ingest.ProcessorConfig{Ledger: f.st})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []ingest.Message
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		msgs = append(msgs, ingest.Message{Data: []byte(line), Source: schemas.SourceRef{Transport: "file", Offset: int64(i + 1)}})
	}
	if _, err := proc.Process(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	logged := time.Date(2026, 11, 25, 19, 23, 40, 0, time.UTC)
	a := f.signalRules(t, newClock(logged.Add(auditWindow+time.Minute)), "", detectors.SignalRulesConfig{})
	tick(t, a)
	root := f.ruleFindings(t, detectors.RuleRootTokenUse)
	if len(root) != 1 || root[0].Mount != "postgres" || root[0].Facts["count"] != float64(2) || root[0].Severity != schemas.SeverityHigh ||
		!strings.HasPrefix(fmt.Sprint(root[0].Facts["token_accessor"]), "hmac-sha256:") {
		t.Fatalf("root-token-use = %+v", root)
	}
	dev := f.ruleFindings(t, detectors.RuleAuditDeviceDisabled)
	if len(dev) != 1 || dev[0].Severity != schemas.SeverityLow || dev[0].Facts["operation"] != "enable" || dev[0].Facts["device_path"] != "file" {
		t.Fatalf("audit-device = %+v", dev)
	}
	if got := f.ruleFindings(t, detectors.RuleDeniedBurst); len(got) != 0 {
		t.Fatalf("one refusal is no burst: %+v", got)
	}
}
