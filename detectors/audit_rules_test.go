package detectors_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

const auditWindow = 2 * time.Minute

// clock is a settable clock shared by the rules under test.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }

func (f *fixture) auditRules(t *testing.T, c *clock, batch int, reg prometheus.Registerer) *detectors.AuditRules {
	t.Helper()
	cfg := detectors.DefaultAuditRulesConfig()
	cfg.UnauditedWindow, cfg.Batch, cfg.Interval, cfg.Scope = auditWindow, batch, 10*time.Millisecond, detectors.Everywhere()
	a, err := detectors.NewAuditRules(cfg, detectors.AuditRulesDeps{Pool: f.st.Pool(), Evidence: f.builder,
		Clock: c.now, Metrics: detectors.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// credsEntry is one audit entry of request id at time at.
func credsEntry(id string, at time.Time, response, isErr bool) store.CredsRecord {
	return store.CredsRecord{RequestID: id, Path: "postgres/creds/reporting", Mount: "postgres", Role: "reporting",
		EntityID: "ent-1", RemoteAddress: "10.0.0.7", DisplayName: "token-ci", Time: at, Response: response, Error: isErr}
}

func (f *fixture) applyCreds(t *testing.T, cs ...store.CredsRecord) {
	t.Helper()
	if _, err := f.st.Apply(context.Background(), store.Batch{Creds: cs}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) prefixRevoke(t *testing.T, prefix string, by schemas.RevokeMethod, at time.Time, reqID string) {
	t.Helper()
	ev := schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeasePrefix: prefix, RevokeBy: by,
		EventTime: at, VaultRequestID: reqID, Source: schemas.SourceRef{Transport: "test"}}
	if _, err := f.st.Apply(context.Background(), store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) ruleFindings(t *testing.T, rule string) []schemas.Finding {
	t.Helper()
	rows, err := f.st.Pool().Query(context.Background(), `SELECT finding FROM findings WHERE rule = $1 ORDER BY detected_at, id`, rule)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[schemas.Finding])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tick(t *testing.T, a *detectors.AuditRules) int {
	t.Helper()
	n, err := a.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUnauditedIssueEdges(t *testing.T) {
	t.Parallel()
	const us = time.Microsecond // the ledger keeps microseconds
	type entry struct {
		offset   time.Duration // from the request time
		response bool
		isErr    bool
	}
	cases := []struct {
		name    string
		entries []entry       // applied in this order
		at      time.Duration // tick time, from the request time
		want    int
	}{
		{"no response, just under the window", []entry{{0, false, false}}, auditWindow - us, 0},
		{"no response, exactly the window", []entry{{0, false, false}}, auditWindow, 0},
		{"no response, just over the window", []entry{{0, false, false}}, auditWindow + us, 1},
		{"answered in time", []entry{{0, false, false}, {20 * time.Millisecond, true, false}}, auditWindow + time.Hour, 0},
		{"answered with an error", []entry{{0, false, false}, {time.Second, true, true}}, auditWindow + time.Hour, 0},
		{"late response, before the pass", []entry{{0, false, false}, {auditWindow + time.Minute, true, false}}, auditWindow + 2*time.Minute, 0},
		{"response entry before request entry", []entry{{time.Second, true, false}, {0, false, false}}, auditWindow + time.Hour, 0},
		{"response entry only", []entry{{time.Second, true, false}}, auditWindow + time.Hour, 0},
		// Vault's clock ahead of leaseguard's: the entry is from the future.
		{"request time ahead of the clock", []entry{{0, false, false}}, -time.Minute, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			req := f.now.Add(-time.Hour)
			for _, e := range tc.entries {
				f.applyCreds(t, credsEntry("req-1", req.Add(e.offset), e.response, e.isErr))
			}
			a := f.auditRules(t, newClock(req.Add(tc.at)), 100, nil)
			if n := tick(t, a); n != tc.want {
				t.Fatalf("claimed %d, want %d", n, tc.want)
			}
			if got := len(f.ruleFindings(t, detectors.RuleUnauditedIssue)); got != tc.want {
				t.Fatalf("findings %d, want %d", got, tc.want)
			}
		})
	}
}

func TestUnauditedIssueReportedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req := f.now.Add(-time.Hour)
	f.applyCreds(t, credsEntry("req-1", req, false, false))
	c := newClock(req.Add(auditWindow + time.Second))
	reg := prometheus.NewRegistry()
	a := f.auditRules(t, c, 100, reg)

	if n := tick(t, a); n != 1 {
		t.Fatalf("first pass claimed %d, want 1", n)
	}
	fs := f.ruleFindings(t, detectors.RuleUnauditedIssue)
	if len(fs) != 1 {
		t.Fatalf("findings = %d, want 1", len(fs))
	}
	g := fs[0]
	if g.Severity != schemas.SeverityHigh || g.Mode != schemas.ModeObserve || g.Action != schemas.ActionNone ||
		g.DBUser != "" || g.Mount != "postgres" || g.Role != "reporting" || g.EntityID != "ent-1" {
		t.Fatalf("finding = %+v", g)
	}
	for k, want := range map[string]any{
		"vault_request_id": "req-1", "path": "postgres/creds/reporting", "mount": "postgres", "role": "reporting",
		"entity_id": "ent-1", "remote_address": "10.0.0.7", "requested_at": req.Format(time.RFC3339Nano),
		"window_seconds": auditWindow.Seconds(),
	} {
		if g.Facts[k] != want {
			t.Errorf("fact %s = %v, want %v", k, g.Facts[k], want)
		}
	}
	var evID string
	if err := f.st.Pool().QueryRow(context.Background(), `SELECT evidence_id FROM findings WHERE id = $1`, g.ID).Scan(&evID); err != nil || evID == "" {
		t.Fatalf("finding has no evidence: %q %v", evID, err)
	}

	// The response arrives after the finding, then the next passes: nothing new.
	f.applyCreds(t, credsEntry("req-1", req.Add(auditWindow+2*time.Second), true, false))
	c.set(c.now().Add(time.Minute))
	if n := tick(t, a); n != 0 {
		t.Fatalf("second pass claimed %d, want 0", n)
	}
	// Even without the response, a reported request is not reported again.
	f.applyCreds(t, credsEntry("req-2", req, false, false))
	if n := tick(t, a); n != 1 {
		t.Fatalf("third pass claimed %d, want 1 (req-2)", n)
	}
	if n := tick(t, a); n != 0 {
		t.Fatalf("fourth pass claimed %d, want 0", n)
	}
	if got := len(f.ruleFindings(t, detectors.RuleUnauditedIssue)); got != 2 {
		t.Fatalf("findings = %d, want 2", got)
	}
	if v := counter(t, reg, "leaseguard_findings_total", detectors.RuleUnauditedIssue); v != 2 {
		t.Fatalf("findings metric = %v, want 2", v)
	}
}

// counter sums a counter's series whose labels include value.
func counter(t *testing.T, g prometheus.Gatherer, name, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func TestMassRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	revokedAt := f.now.Add(-10 * time.Minute)
	// Issued (exp - 1h) before the revocation: covered.
	for i := range 3 {
		f.lease(t, fmt.Sprintf("postgres/creds/reporting/before%d", i), "main", fmt.Sprintf("v-b%d", i), revokedAt.Add(30*time.Minute))
	}
	// Issued after the revocation: Vault did not revoke it.
	f.lease(t, "postgres/creds/reporting/after", "main", "v-after", revokedAt.Add(2*time.Hour))
	// Another role: outside the prefix. A look-alike sibling prefix too.
	f.lease(t, "postgres/creds/other/x", "main", "v-other", revokedAt.Add(30*time.Minute))
	f.lease(t, "postgres/creds/reporting2/y", "main", "v-sib", revokedAt.Add(30*time.Minute))

	f.prefixRevoke(t, "postgres/creds/reporting/", schemas.RevokeByPrefix, revokedAt, "vreq-prefix")
	f.prefixRevoke(t, "postgres/creds/other", schemas.RevokeByForce, revokedAt.Add(time.Second), "vreq-force")

	a := f.auditRules(t, newClock(f.now), 100, nil)
	if n := tick(t, a); n != 2 {
		t.Fatalf("claimed %d, want 2", n)
	}
	fs := f.ruleFindings(t, detectors.RuleMassRevocation)
	if len(fs) != 2 {
		t.Fatalf("findings = %d, want 2", len(fs))
	}
	byPrefix := map[string]schemas.Finding{}
	for _, g := range fs {
		if g.Severity != schemas.SeverityMedium || g.Mode != schemas.ModeObserve || g.Action != schemas.ActionNone {
			t.Errorf("finding = %+v", g)
		}
		byPrefix[g.Facts["prefix"].(string)] = g
	}
	for _, want := range []struct {
		prefix, method, req string
		at                  time.Time
		leases              float64 // JSON number
	}{
		{"postgres/creds/reporting/", "revoke-prefix", "vreq-prefix", revokedAt, 3},
		{"postgres/creds/other", "revoke-force", "vreq-force", revokedAt.Add(time.Second), 1},
	} {
		g, ok := byPrefix[want.prefix]
		if !ok {
			t.Fatalf("no finding for %s", want.prefix)
		}
		if g.Facts["method"] != want.method || g.Facts["vault_request_id"] != want.req ||
			g.Facts["revoked_at"] != want.at.Format(time.RFC3339Nano) || g.Facts["leases_revoked"] != want.leases {
			t.Errorf("%s facts = %v", want.prefix, g.Facts)
		}
		if !strings.Contains(g.Summary, want.prefix) {
			t.Errorf("summary %q does not name the prefix", g.Summary)
		}
	}
	// The same revocation again (redelivery), and a second pass: once.
	f.prefixRevoke(t, "postgres/creds/reporting/", schemas.RevokeByPrefix, revokedAt, "vreq-prefix")
	if n := tick(t, a); n != 0 {
		t.Fatalf("second pass claimed %d, want 0", n)
	}
	// The same prefix revoked again later is another event.
	f.prefixRevoke(t, "postgres/creds/reporting/", schemas.RevokeByPrefix, revokedAt.Add(time.Minute), "vreq-again")
	if n := tick(t, a); n != 1 {
		t.Fatalf("third pass claimed %d, want 1", n)
	}
	if got := len(f.ruleFindings(t, detectors.RuleMassRevocation)); got != 3 {
		t.Fatalf("findings = %d, want 3", got)
	}
}

// Two instances ticking at once, in small batches, report each event once.
func TestAuditRulesConcurrentInstances(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	base := f.now.Add(-time.Hour)
	const requests, prefixes = 30, 10
	var cs []store.CredsRecord
	for i := range requests {
		cs = append(cs, credsEntry(fmt.Sprintf("req-%02d", i), base.Add(time.Duration(i)*time.Millisecond), false, false))
	}
	f.applyCreds(t, cs...)
	for i := range prefixes {
		f.prefixRevoke(t, fmt.Sprintf("postgres/creds/r%d/", i), schemas.RevokeByPrefix, base.Add(time.Duration(i)*time.Second), fmt.Sprintf("vreq-%d", i))
	}
	c := newClock(f.now)
	instances := []*detectors.AuditRules{f.auditRules(t, c, 3, nil), f.auditRules(t, c, 3, nil)}

	var claimed atomic.Int64
	var wg sync.WaitGroup
	for _, a := range instances {
		wg.Go(func() {
			for range 20 {
				n, err := a.Tick(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				claimed.Add(int64(n))
			}
		})
	}
	wg.Wait()
	if got := claimed.Load(); got != requests+prefixes {
		t.Fatalf("claimed %d in all, want %d (each event once)", got, requests+prefixes)
	}
	if got := len(f.ruleFindings(t, detectors.RuleUnauditedIssue)); got != requests {
		t.Fatalf("unaudited-issue findings = %d, want %d", got, requests)
	}
	if got := len(f.ruleFindings(t, detectors.RuleMassRevocation)); got != prefixes {
		t.Fatalf("mass-revocation findings = %d, want %d", got, prefixes)
	}
	var events int
	if err := f.st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM evidence_outbox WHERE id IN (SELECT evidence_id FROM findings)`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != requests+prefixes {
		t.Fatalf("evidence events = %d, want %d", events, requests+prefixes)
	}
}

func TestAuditRulesRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.applyCreds(t, credsEntry("req-run", f.now.Add(-time.Hour), false, false))
	f.prefixRevoke(t, "postgres/creds/reporting/", schemas.RevokeByForce, f.now.Add(-time.Minute), "vreq")
	a := f.auditRules(t, newClock(f.now), 1, nil) // batch 1: a full batch runs the next pass at once
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.ruleFindings(t, detectors.RuleUnauditedIssue))+len(f.ruleFindings(t, detectors.RuleMassRevocation)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("Run raised no findings")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAuditRulesConfig(t *testing.T) {
	t.Parallel()
	enforce, err := detectors.ParseModes("unaudited-issue=enforce")
	if err != nil {
		t.Fatal(err)
	}
	observe, err := detectors.ParseModes("unaudited-issue=observe,mass-revocation=observe")
	if err != nil {
		t.Fatal(err)
	}
	def := detectors.DefaultAuditRulesConfig()
	if def.UnauditedWindow != 2*time.Minute {
		t.Fatalf("default window = %s", def.UnauditedWindow)
	}
	with := func(m func(*detectors.AuditRulesConfig)) detectors.AuditRulesConfig { c := def; m(&c); return c }
	cases := []struct {
		name string
		cfg  detectors.AuditRulesConfig
		want string
	}{
		{"defaults", def, ""},
		{"observe named", with(func(c *detectors.AuditRulesConfig) { c.Modes = observe }), ""},
		{"zero window", with(func(c *detectors.AuditRulesConfig) { c.UnauditedWindow = 0 }), "window"},
		{"zero batch", with(func(c *detectors.AuditRulesConfig) { c.Batch = 0 }), "batch"},
		{"zero interval", with(func(c *detectors.AuditRulesConfig) { c.Interval = 0 }), "interval"},
		{"enforce refused", with(func(c *detectors.AuditRulesConfig) { c.Modes = enforce }), "only observe"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if detectors.DefaultModes[detectors.RuleUnauditedIssue] != schemas.ModeObserve ||
		detectors.DefaultModes[detectors.RuleMassRevocation] != schemas.ModeObserve {
		t.Fatal("audit rules must default to observe")
	}
}
