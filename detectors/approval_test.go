package detectors_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target"
)

// TestExpiryApproveMode: in approve mode, a due lease in scope gives a
// finding that requests approval and a pending revocation holding the
// command enforce queues as an unsigned proposal (signed only when an owner
// approves it); nothing is queued. Out of scope, the rule records what it
// would have done (would_drop) and holds nothing.
func TestExpiryApproveMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	past := time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)

	// The command enforce would have queued, for comparison.
	enf := newFixture(t)
	enf.lease(t, "postgres/creds/reporting/a", "main", "v-a", past)
	if _, err := enf.detector(t, "", "*").Tick(ctx); err != nil {
		t.Fatal(err)
	}
	want := enf.sink.all()
	if len(want) != 1 {
		t.Fatalf("enforce queued %d commands", len(want))
	}

	f := newFixture(t)
	f.reader["other"] = map[string]target.Role{}
	f.lease(t, "postgres/creds/reporting/a", "main", "v-a", past)
	f.lease(t, "postgres/creds/reporting/b", "other", "v-b", past)
	d, err := detectors.NewExpiry(detectors.ExpiryConfig{Grace: 30 * time.Second, Interval: time.Second, Batch: 100,
		Modes: mustModes(t, detectors.RuleLeaseExpired+"=approve"), Scope: detectors.Scope{Databases: []string{"main"}},
		ApprovalTTL: 90 * time.Minute},
		detectors.ExpiryDeps{Pool: f.st.Pool(), Reader: f.reader, Issuer: f.issuer, Sink: f.sink, Evidence: f.builder,
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
	// Out of scope: a pilot, noting that the drop would have waited for
	// an owner.
	if b.Action != schemas.ActionWouldDrop || b.CommandID != "" || b.InScope || b.Facts["would_need_approval"] != true {
		t.Errorf("out-of-scope finding = %+v", b)
	}
	for _, fd := range fs {
		if err := schemas.ValidateValue("finding", fd); err != nil {
			t.Errorf("finding %s: %v", fd.ID, err)
		}
	}
	pend, err := pending.List(ctx, f.st.Pool(), pending.Page{State: schemas.ApprovalPending, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 1 {
		t.Fatalf("pending = %+v", pend)
	}
	p := pend[0]
	got := p.Command
	// The held proposal is enforce's command before it is issued: same id,
	// rule, user, role oid and corroboration; no signature, no lifetime.
	if got.ID != want[0].ID || got.Rule != want[0].Rule || got.Issuer != "detector" || got.Database != "main" ||
		got.DBUser != "v-a" || got.LeaseID != want[0].LeaseID || got.FindingID != a.ID || got.Reason != want[0].Reason ||
		got.RoleOID != want[0].RoleOID || got.Corroboration != want[0].Corroboration || got.Action != schemas.ActionDropRole {
		t.Errorf("held command %+v, enforce's %+v", got, want[0])
	}
	if got.Signature != "" || got.KeyID != "" || !got.ExpiresAt.IsZero() {
		t.Errorf("the held proposal is signed or issued: %+v", got)
	}
	if err := f.verify.Verify(got); err == nil {
		t.Error("the held proposal verifies as a command")
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

// TestObserverRulesApproveMode: credential reuse in approve mode holds the
// command it would queue in enforce mode, once for a lasting condition; a
// ghost session in approve mode is reported, never terminated.
func TestObserverRulesApproveMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.lease(t, "postgres/creds/reporting/r1", "main", "v-r1", f.now.Add(time.Hour))
	f.revoke(t, "postgres/creds/reporting/r1", f.now.Add(-time.Minute))
	r := f.rules(t, detectors.RuleReuseAfterRevoke+"=approve,"+detectors.RuleGhostSession+"=approve",
		func(c *detectors.DBRulesConfig) { c.ApprovalTTL = 2 * time.Hour })
	pass := &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-2 * time.Hour),
		Roles: []observed.Role{expiredRole("v-r1", 16001, f.now.Add(-time.Hour), f.now.Add(-time.Minute))},
		Sessions: []observed.Session{liveSession(101, "v-r1", 16001, f.now.Add(-2*time.Minute)),
			ghostSession(201, "v-g1", 16100, f.now.Add(-time.Hour))}}
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil || len(rep.Findings) != 2 || rep.Commands != 0 {
		t.Fatalf("pass: %+v, %v", rep, err)
	}
	if len(f.sink.all()) != 0 {
		t.Fatalf("approve mode acted: commands %+v", f.sink.all())
	}
	var reuse, ghost schemas.Finding
	for _, fd := range f.findings(t) {
		switch fd.Rule {
		case detectors.RuleReuseAfterRevoke:
			reuse = fd
		case detectors.RuleGhostSession:
			ghost = fd
		}
	}
	if reuse.Action != schemas.ActionApprovalRequested || reuse.Mode != schemas.ModeApprove || reuse.CommandID == "" {
		t.Errorf("reuse finding %+v", reuse)
	}
	if ghost.Action != schemas.ActionNone || !strings.HasPrefix(fmt.Sprint(ghost.Facts["termination"]), "not attempted: approve mode") {
		t.Errorf("ghost finding %+v", ghost)
	}
	p, err := pending.Get(ctx, f.st.Pool(), reuse.CommandID)
	if err != nil || p.State != schemas.ApprovalPending || p.Command.DBUser != "v-r1" || p.Command.Rule != detectors.RuleReuseAfterRevoke ||
		p.FindingID != reuse.ID || !p.ExpiresAt.Equal(f.now.Add(2*time.Hour)) {
		t.Fatalf("pending %+v, %v", p, err)
	}
	if p.Command.Signature != "" || p.Command.Corroboration.Source != schemas.CorroboratedByValidUntil {
		t.Errorf("held proposal %+v: want it unsigned, corroborated by rolvaliduntil", p.Command)
	}
	// A lasting condition is one finding and one pending revocation.
	if rep, err := f.evaluate(t, r, pass, false); err != nil || len(rep.Findings) != 0 {
		t.Errorf("second pass: %+v, %v", rep, err)
	}
	if ps, err := pending.List(ctx, f.st.Pool(), pending.Page{State: schemas.ApprovalPending, Limit: 10}); err != nil || len(ps) != 1 {
		t.Errorf("pending after two passes: %d, %v", len(ps), err)
	}
}
