package detectors_test

import (
	"context"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

func (f *fixture) applyDevice(t *testing.T, entries int, ds ...store.AuditDeviceChange) {
	t.Helper()
	var s store.AuditSignals
	for i := range ds {
		s.Observe(ds[i].Time, nil, &ds[i])
	}
	for i := 0; i < entries; i++ {
		s.Observe(t1, nil, nil)
	}
	if _, err := f.st.Apply(context.Background(), store.Batch{Signals: s}); err != nil {
		t.Fatal(err)
	}
}

func TestAuditDeviceDisabled(t *testing.T) {
	t.Parallel()
	dev := func(id string, resp bool, op string, at time.Time, isErr bool) store.AuditDeviceChange {
		return store.AuditDeviceChange{RequestID: id, Response: resp, DevicePath: "file", Operation: op, Time: at, Error: isErr,
			DisplayName: "root", RemoteAddress: "10.0.0.1"}
	}
	cases := []struct {
		name    string
		entries []store.AuditDeviceChange // applied in this order, one batch each
		at      time.Duration             // tick time after t
		want    []schemas.Severity
	}{
		{"disabled: response", []store.AuditDeviceChange{dev("r1", false, "disable", t1, false), dev("r1", true, "disable", t1, false)},
			0, []schemas.Severity{schemas.SeverityCritical}},
		{"response before request", []store.AuditDeviceChange{dev("r1", true, "disable", t1, false), dev("r1", false, "disable", t1, false)},
			auditWindow + time.Minute, []schemas.Severity{schemas.SeverityCritical}},
		{"request only, just under the window", []store.AuditDeviceChange{dev("r1", false, "disable", t1, false)},
			auditWindow - time.Microsecond, nil},
		{"request only, just over the window", []store.AuditDeviceChange{dev("r1", false, "disable", t1, false)},
			auditWindow + time.Microsecond, []schemas.Severity{schemas.SeverityCritical}},
		{"refused", []store.AuditDeviceChange{dev("r1", false, "disable", t1, true), dev("r1", true, "disable", t1, true)},
			0, []schemas.Severity{schemas.SeverityMedium}},
		{"enabled", []store.AuditDeviceChange{dev("r1", true, "enable", t1, false)}, 0, []schemas.Severity{schemas.SeverityLow}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			a := f.signalRules(t, newClock(t1.Add(tc.at)), "", detectors.SignalRulesConfig{})
			for _, e := range tc.entries {
				f.applyDevice(t, 0, e)
				tick(t, a)
			}
			got := f.ruleFindings(t, detectors.RuleAuditDeviceDisabled)
			if len(got) != len(tc.want) {
				t.Fatalf("%d findings, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, s := range tc.want {
				if got[i].Severity != s || got[i].Facts["vault_request_id"] != "r1" {
					t.Errorf("finding %d = %+v", i, got[i])
				}
			}
			// A later pass reports what waited for its response, and
			// nothing twice.
			tick(t, f.signalRules(t, newClock(t1.Add(time.Hour)), "", detectors.SignalRulesConfig{}))
			want := len(tc.want)
			if want == 0 {
				want = 1
			}
			if got := f.ruleFindings(t, detectors.RuleAuditDeviceDisabled); len(got) != want {
				t.Fatalf("after a later pass: %d findings, want %d", len(got), want)
			}
		})
	}
}

var t1 = time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)

func TestAuditSilence(t *testing.T) {
	t.Parallel()
	const window = 3 * time.Minute
	cases := []struct {
		name     string
		sessions bool
		after    time.Duration // tick, after the last entry was received
		want     int
	}{
		{"just under the window", true, window - time.Second, 0},
		{"just over the window", true, window + time.Second, 1},
		{"silent, no session", false, time.Hour, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ctx := context.Background()
			// One batch of entries that change nothing: the stream is alive.
			f.applyDevice(t, 3)
			live, err := store.ReadAuditLiveness(ctx, f.st.Pool())
			if err != nil || live.ReceivedAt.IsZero() {
				t.Fatalf("liveness %+v, %v", live, err)
			}
			at := live.ReceivedAt.Add(tc.after)
			// The observer watches "main" and saw a session.
			if _, err := f.st.Pool().Exec(ctx, `INSERT INTO observer_targets (database, epoch, holder, acquired_at, first_pass_at, last_pass_at)
				VALUES ('main', 1, 'test', $1, $1, $1)`, at.Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
			if tc.sessions {
				if _, err := f.st.Pool().Exec(ctx, `INSERT INTO db_sessions (database, pid, backend_start, user_oid, user_name, client_addr, first_seen_at)
					VALUES ('main', 77, $1, 16000, 'v-x', '10.0.0.1', $1)`, at.Add(-time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			a := f.signalRules(t, newClock(at), "", detectors.SignalRulesConfig{SilenceWindow: window})
			tick(t, a)
			tick(t, a)
			got := f.ruleFindings(t, detectors.RuleAuditSilence)
			if len(got) != tc.want {
				t.Fatalf("%d findings, want %d", len(got), tc.want)
			}
			if tc.want > 0 && (got[0].Severity != schemas.SeverityHigh || got[0].Facts["silent_since"] == nil) {
				t.Errorf("finding = %+v", got[0])
			}
		})
	}
}

func TestRenewalPastMaxTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	issued := f.now.Add(-2 * time.Hour)
	exp := issued.Add(time.Hour)
	ev := func(kind schemas.LeaseEventKind, id string, at, exp time.Time) schemas.LeaseEvent {
		e := schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: kind, LeaseID: "postgres/creds/reporting/" + id,
			Mount: "postgres", Role: "reporting", Database: "main", EventTime: at, ExpireTime: &exp,
			ExpireSource: schemas.ExpireFromEvent, VaultRequestID: "req-" + id + at.Format("150405"), Source: schemas.SourceRef{Transport: "test"}}
		if kind == schemas.LeaseIssued {
			e.IssueTime, e.DBUser = &at, "v-"+id
		}
		return e
	}
	apply := func(evs ...schemas.LeaseEvent) {
		t.Helper()
		if _, err := f.st.Apply(ctx, store.Batch{Leases: evs}); err != nil {
			t.Fatal(err)
		}
	}
	sc := detectors.SignalRulesConfig{MaxTTLs: map[string]time.Duration{"reporting": 4 * time.Hour}}
	// Vault's own record agrees the lease outlives its max TTL; a lease the
	// audit stream says was renewed past it while Vault says otherwise (a
	// forged renewal) is not acted on.
	vault := vaultLeases{
		"postgres/creds/reporting/past":   {IssueTime: issued, ExpireTime: tptr(issued.Add(5 * time.Hour))},
		"postgres/creds/reporting/forged": {IssueTime: issued, ExpireTime: tptr(issued.Add(time.Hour))},
	}
	a := f.signalRulesWith(t, newClock(f.now), "renewal-past-max-ttl=enforce", sc, vault)
	apply(ev(schemas.LeaseIssued, "forged", issued, exp), ev(schemas.LeaseRenewed, "forged", f.now.Add(-time.Minute), issued.Add(9*time.Hour)))
	// Renewed within the max TTL, and renewed to exactly it (+1 s): nothing.
	apply(ev(schemas.LeaseIssued, "ok", issued, exp), ev(schemas.LeaseRenewed, "ok", f.now.Add(-time.Minute), issued.Add(3*time.Hour)))
	apply(ev(schemas.LeaseIssued, "edge", issued, exp), ev(schemas.LeaseRenewed, "edge", f.now.Add(-time.Minute), issued.Add(4*time.Hour+time.Second)))
	// Renewed past it; the renewal arrives before its issue (out of order).
	apply(ev(schemas.LeaseRenewed, "past", f.now.Add(-time.Minute), issued.Add(5*time.Hour)))
	apply(ev(schemas.LeaseIssued, "past", issued, exp))
	tick(t, a)
	tick(t, a)
	byLease := map[string]schemas.Finding{}
	for _, fd := range f.ruleFindings(t, detectors.RuleRenewalPastMaxTTL) {
		byLease[fd.LeaseID] = fd
	}
	if len(byLease) != 2 || byLease["postgres/creds/reporting/forged"].Action != schemas.ActionUnconfirmed {
		t.Fatalf("findings = %+v", byLease)
	}
	got := []schemas.Finding{byLease["postgres/creds/reporting/past"]}
	if got[0].LeaseID != "postgres/creds/reporting/past" || got[0].Severity != schemas.SeverityHigh ||
		got[0].Action != schemas.ActionRevocationRequested || got[0].Facts["excess_seconds"] != 3600.0 {
		t.Fatalf("findings = %+v", got)
	}
	cmds := f.sink.all()
	if len(cmds) != 1 || cmds[0].DBUser != "v-past" || cmds[0].Database != "main" || cmds[0].Rule != detectors.RuleRenewalPastMaxTTL {
		t.Fatalf("commands = %+v", cmds)
	}
	if err := f.verify.Verify(cmds[0]); err != nil {
		t.Fatalf("command signature: %v", err)
	}
	// Renewed further still: a new finding.
	apply(ev(schemas.LeaseRenewed, "past", f.now, issued.Add(6*time.Hour)))
	vault["postgres/creds/reporting/past"] = schemas.VaultLease{IssueTime: issued, ExpireTime: tptr(issued.Add(6 * time.Hour))}
	tick(t, a)
	if got := f.ruleFindings(t, detectors.RuleRenewalPastMaxTTL); len(got) != 3 {
		t.Fatalf("after a further renewal: %d findings", len(got))
	}
}

// TestRenewalPastMaxTTLApprove: in approve mode the signed command waits
// for an owner as a pending revocation; nothing is queued.
func TestRenewalPastMaxTTLApprove(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	issued := f.now.Add(-2 * time.Hour)
	exp := issued.Add(800 * time.Hour)
	evs := []schemas.LeaseEvent{
		{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: "postgres/creds/reporting/ap", Mount: "postgres",
			Role: "reporting", Database: "main", DBUser: "v-ap", IssueTime: &issued, EventTime: issued,
			VaultRequestID: "req-ap", Source: schemas.SourceRef{Transport: "test"}},
		{Type: schemas.LeaseEventType, Kind: schemas.LeaseRenewed, LeaseID: "postgres/creds/reporting/ap", EventTime: f.now,
			ExpireTime: &exp, ExpireSource: schemas.ExpireFromEvent, VaultRequestID: "req-ap-renew", Source: schemas.SourceRef{Transport: "test"}},
	}
	if _, err := f.st.Apply(ctx, store.Batch{Leases: evs}); err != nil {
		t.Fatal(err)
	}
	vault := vaultLeases{"postgres/creds/reporting/ap": {IssueTime: issued, ExpireTime: &exp}}
	tick(t, f.signalRulesWith(t, newClock(f.now), "renewal-past-max-ttl=approve", detectors.SignalRulesConfig{}, vault))
	got := f.ruleFindings(t, detectors.RuleRenewalPastMaxTTL)
	if len(got) != 1 || got[0].Mode != schemas.ModeApprove || got[0].Action != schemas.ActionApprovalRequested || got[0].CommandID == "" {
		t.Fatalf("findings = %+v", got)
	}
	if cmds := f.sink.all(); len(cmds) != 0 {
		t.Fatalf("queued %d commands in approve mode", len(cmds))
	}
	ps, err := pending.List(ctx, f.st.Pool(), pending.Page{State: schemas.ApprovalPending, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].ID != got[0].CommandID || ps[0].DBUser != "v-ap" || ps[0].State != schemas.ApprovalPending {
		t.Fatalf("pending = %+v", ps)
	}
	// observe-only rules refuse approve.
	if _, err := detectors.ParseModes("issuance-burst=approve"); err != nil {
		t.Fatal(err)
	}
	m, _ := detectors.ParseModes("issuance-burst=approve")
	if err := detectors.CheckSignalModes(m); err == nil {
		t.Error("issuance-burst=approve accepted")
	}
}
