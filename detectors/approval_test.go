package detectors_test

import (
	"context"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// TestExpiryApproveMode: in approve mode, a due lease in scope gives a
// finding that requests approval and a pending revocation holding exactly
// the signed command enforce queues; nothing is queued. Out of scope, the
// rule only observes.
func TestExpiryApproveMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	past := time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)

	// The command enforce would have queued, for comparison.
	enf := newFixture(t)
	enf.lease(t, "postgres/creds/reporting/a", "main", "v-a", past)
	if _, err := enf.detector(t, "", "").Tick(ctx); err != nil {
		t.Fatal(err)
	}
	want := enf.sink.all()
	if len(want) != 1 {
		t.Fatalf("enforce queued %d commands", len(want))
	}

	f := newFixture(t)
	f.reader["other"] = map[string]time.Time{}
	f.lease(t, "postgres/creds/reporting/a", "main", "v-a", past)
	f.lease(t, "postgres/creds/reporting/b", "other", "v-b", past)
	d, err := detectors.NewExpiry(detectors.ExpiryConfig{Grace: 30 * time.Second, Interval: time.Second, Batch: 100,
		Modes: mustModes(t, detectors.RuleLeaseExpired+"=approve"), Scope: detectors.Scope{Databases: []string{"main"}},
		ApprovalTTL: 90 * time.Minute},
		detectors.ExpiryDeps{Pool: f.st.Pool(), Reader: f.reader, Signer: f.signer, Sink: f.sink, Evidence: f.builder,
			Clock: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := d.Tick(ctx); err != nil || n != 2 {
		t.Fatalf("Tick = %d, %v", n, err)
	}
	if cmds := f.sink.all(); len(cmds) != 0 {
		t.Fatalf("approve mode queued %+v", cmds)
	}
	fs := f.findings(t)
	if len(fs) != 2 {
		t.Fatalf("findings = %+v", fs)
	}
	a, b := fs[0], fs[1]
	if a.Mode != schemas.ModeApprove || a.Action != schemas.ActionApprovalRequested || a.CommandID != want[0].ID {
		t.Errorf("in-scope finding = %+v", a)
	}
	if b.Action != schemas.ActionNone || b.CommandID != "" || b.InScope {
		t.Errorf("out-of-scope finding = %+v", b)
	}
	for _, fd := range fs {
		if err := schemas.ValidateValue("finding", fd); err != nil {
			t.Errorf("finding %s: %v", fd.ID, err)
		}
	}
	pend, err := store.ListPending(ctx, f.st.Pool(), store.PendingPage{State: schemas.ApprovalPending, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 1 {
		t.Fatalf("pending = %+v", pend)
	}
	p := pend[0]
	got := p.Command
	// The held command is enforce's but for the signature time and key.
	if got.ID != want[0].ID || got.Rule != want[0].Rule || got.Issuer != "detector" || got.Database != "main" ||
		got.DBUser != "v-a" || got.LeaseID != want[0].LeaseID || got.FindingID != a.ID || got.Reason != want[0].Reason {
		t.Errorf("held command %+v, enforce's %+v", got, want[0])
	}
	if err := f.verify.Verify(got); err != nil {
		t.Errorf("held command does not verify: %v", err)
	}
	if p.FindingID != a.ID || p.State != schemas.ApprovalPending || !p.ExpiresAt.Equal(f.now.Add(90*time.Minute)) ||
		p.Severity != schemas.SeverityHigh {
		t.Errorf("pending = %+v", p)
	}
}

func mustModes(t *testing.T, s string) detectors.Modes {
	t.Helper()
	m, err := detectors.ParseModes(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestApproveModeParses(t *testing.T) {
	t.Parallel()
	m := mustModes(t, "orphan-role=approve")
	if m.Mode(detectors.RuleOrphanRole) != schemas.ModeApprove || !detectors.Acts(schemas.ModeApprove) ||
		detectors.Acts(schemas.ModeObserve) || !detectors.Acts(schemas.ModeEnforce) {
		t.Errorf("modes %v", m)
	}
	if _, err := detectors.NewAuditRules(detectors.AuditRulesConfig{Modes: mustModes(t, detectors.RuleMassRevocation+"=approve"),
		UnauditedWindow: time.Minute, Batch: 1, Interval: time.Second}, detectors.AuditRulesDeps{}); err == nil {
		t.Error("an audit-log rule in approve mode is accepted")
	}
}
