package detectors_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// terminator is a fake GhostTerminator: it terminates the pids in ok, and
// fails with err when set.
type terminator struct {
	mu    sync.Mutex
	ok    map[int32]bool
	err   error
	calls [][]store.DBSession
}

func (t *terminator) TerminateGhosts(_ context.Context, _ string, ss []store.DBSession) (map[int32]bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, ss)
	if t.err != nil {
		return nil, t.err
	}
	out := map[int32]bool{}
	for _, s := range ss {
		if t.ok[s.PID] {
			out[s.PID] = true
		}
	}
	return out, nil
}

func (f *fixture) rules(t *testing.T, modes string, term *terminator, mod func(*detectors.DBRulesConfig)) *detectors.DBRules {
	t.Helper()
	m, err := detectors.ParseModes(modes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := detectors.DBRulesConfig{Modes: m, ManagedPattern: regexp.MustCompile(`^v-`)}
	if mod != nil {
		mod(&cfg)
	}
	r, err := detectors.NewDBRules(cfg, detectors.DBRulesDeps{Signer: f.signer, Sink: f.sink, Terminator: term, Evidence: f.builder})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// evaluate runs one evaluation in a transaction, committed unless rollback.
func (f *fixture) evaluate(t *testing.T, r *detectors.DBRules, p *store.ObservedPass, rollback bool) (detectors.DBReport, error) {
	t.Helper()
	ctx := context.Background()
	tx, err := f.st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	rep, err := r.Evaluate(ctx, tx, p)
	if err != nil || rollback {
		return rep, err
	}
	return rep, tx.Commit(ctx)
}

func (f *fixture) revoke(t *testing.T, id string, at time.Time) {
	t.Helper()
	ev := schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: id, RevokeBy: schemas.RevokeByPath,
		EventTime: at, VaultRequestID: "req-revoke-" + id, Source: schemas.SourceRef{Transport: "test"}}
	if _, err := f.st.Apply(context.Background(), store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
}

func observedRole(name string, oid uint32, first time.Time, createdAfter *time.Time) store.ObservedRole {
	return store.ObservedRole{DBRole: store.DBRole{OID: oid, Name: name, CanLogin: true}, FirstSeenAt: first, CreatedAfter: createdAfter}
}

func liveSession(pid int32, name string, oid uint32, start time.Time) store.ObservedSession {
	return store.ObservedSession{DBSession: store.DBSession{PID: pid, BackendStart: start, UserOID: oid, UserName: name,
		ClientAddr: "10.1.2.3", ClientPort: 40000, ApplicationName: "report", BackendType: "client backend"}, FirstSeenAt: start}
}

func ghostSession(pid int32, former string, oid uint32, start time.Time) store.ObservedSession {
	s := liveSession(pid, "", oid, start)
	s.Ghost, s.FormerUser = true, former
	return s
}

func TestObserverRulesReuseAfterRevokeEnforces(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/r1", "main", "v-r1", f.now.Add(time.Hour))
	r := f.rules(t, "", &terminator{}, nil)
	pass := &store.ObservedPass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-time.Hour),
		Roles:    []store.ObservedRole{observedRole("v-r1", 16001, f.now.Add(-time.Hour), nil)},
		Sessions: []store.ObservedSession{liveSession(101, "v-r1", 16001, f.now.Add(-time.Minute))}}

	// The lease is active: nothing.
	if rep, err := f.evaluate(t, r, pass, false); err != nil || len(rep.Findings) != 0 {
		t.Fatalf("active lease: %+v, %v", rep, err)
	}
	// The ledger learns the lease was revoked (after the session was
	// seen); the next pass, past the grace, raises and enforces.
	f.revoke(t, "postgres/creds/reporting/r1", f.now.Add(-11*time.Second))
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil || len(rep.Findings) != 1 || rep.Commands != 1 {
		t.Fatalf("revoked lease: %+v, %v", rep, err)
	}
	cmds := f.sink.all()
	if len(cmds) != 1 || cmds[0].Rule != detectors.RuleReuseAfterRevoke || cmds[0].DBUser != "v-r1" || cmds[0].LeaseID != "postgres/creds/reporting/r1" {
		t.Fatalf("commands = %+v", cmds)
	}
	if err := f.verify.Verify(cmds[0]); err != nil {
		t.Errorf("command does not verify: %v", err)
	}
	fs := f.findings(t)
	if len(fs) != 1 || fs[0].Action != schemas.ActionRevocationRequested || fs[0].CommandID != cmds[0].ID || fs[0].Severity != schemas.SeverityCritical ||
		fs[0].LeaseID != "postgres/creds/reporting/r1" || fs[0].Mount != "postgres" || fs[0].Facts["lease_state"] != "revoked" {
		t.Errorf("findings = %+v", fs)
	}
	if err := schemas.ValidateValue("finding", fs[0]); err != nil {
		t.Errorf("finding does not validate: %v", err)
	}
	// A lasting condition is one finding and one command.
	if rep, err := f.evaluate(t, r, pass, false); err != nil || len(rep.Findings) != 0 || len(f.sink.all()) != 1 {
		t.Errorf("third pass: %+v, %v, %d commands", rep, err, len(f.sink.all()))
	}
	if rep, err := evidence.VerifyOutbox(context.Background(), f.st.Pool()); err != nil || !rep.OK() || rep.Checked != 1 {
		t.Errorf("outbox verify = %+v, %v", rep, err)
	}
}

func TestObserverRulesObserveScopeAndSinkFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/o1", "main", "v-o1", f.now.Add(time.Hour))
	f.revoke(t, "postgres/creds/reporting/o1", f.now.Add(-time.Hour))
	pass := &store.ObservedPass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-2 * time.Hour),
		Roles:    []store.ObservedRole{observedRole("v-o1", 16002, f.now.Add(-time.Hour), nil)},
		Sessions: []store.ObservedSession{liveSession(102, "v-o1", 16002, f.now.Add(-time.Minute))}}

	// The sink is down: the pass fails and records nothing.
	f.sink.err = context.DeadlineExceeded
	if _, err := f.evaluate(t, f.rules(t, "", &terminator{}, nil), pass, false); err == nil {
		t.Fatal("a queue failure was hidden")
	}
	if len(f.findings(t)) != 0 {
		t.Fatal("findings recorded although the pass failed")
	}
	f.sink.err = nil

	// Out of scope: a finding, no command, and it says why.
	r := f.rules(t, "", &terminator{}, func(c *detectors.DBRulesConfig) { c.Scope = detectors.Scope{Databases: []string{"other"}} })
	if _, err := f.evaluate(t, r, pass, false); err != nil {
		t.Fatal(err)
	}
	// orphan-role (observe by default) also fires: the lease ended an hour ago.
	byRule := map[string]schemas.Finding{}
	for _, fd := range f.findings(t) {
		byRule[fd.Rule] = fd
	}
	reuse, orphan := byRule[detectors.RuleReuseAfterRevoke], byRule[detectors.RuleOrphanRole]
	if reuse.Action != schemas.ActionNone || reuse.InScope || reuse.Facts["not_enforced"] != "outside the enforcement scope" {
		t.Errorf("out of scope finding = %+v", reuse)
	}
	if orphan.Mode != schemas.ModeObserve || orphan.Facts["reason"] != "lease_ended" || orphan.Severity != schemas.SeverityHigh {
		t.Errorf("orphan finding = %+v", orphan)
	}
	if len(f.sink.all()) != 0 {
		t.Errorf("commands = %+v", f.sink.all())
	}
}

func TestObserverRulesGhost(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/g1", "main", "v-g1", f.now.Add(-time.Hour))
	term := &terminator{ok: map[int32]bool{201: true}}
	r := f.rules(t, "", term, nil)
	start := f.now.Add(-time.Hour)
	pass := &store.ObservedPass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-2 * time.Hour),
		Sessions: []store.ObservedSession{
			ghostSession(201, "v-g1", 16100, start),  // a Vault user dropped under its session
			ghostSession(202, "alice", 16101, start), // a human dropped under hers: not ours to end
			ghostSession(203, "", 16102, start),      // unknown to history: a client backend, ended
		}}
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil || len(rep.Findings) != 3 || rep.Terminated != 1 || rep.Commands != 0 {
		t.Fatalf("ghost pass: %+v, %v", rep, err)
	}
	if len(term.calls) != 1 || len(term.calls[0]) != 2 {
		t.Fatalf("terminator calls = %+v (want pids 201 and 203 in one call)", term.calls)
	}
	got := map[int32]schemas.Finding{}
	for _, fd := range f.findings(t) {
		got[int32(fd.Facts["pid"].(float64))] = fd
	}
	if g := got[201]; g.DBUser != "v-g1" || g.Facts["termination"] != "terminated" || g.LeaseID != "postgres/creds/reporting/g1" ||
		g.Action != schemas.ActionNone || g.Severity != schemas.SeverityCritical {
		t.Errorf("ghost of v-g1 = %+v", g)
	}
	if g := got[202]; g.Facts["termination"] != "not attempted: the former user alice does not match the managed pattern" {
		t.Errorf("ghost of alice = %+v", g.Facts)
	}
	if g := got[203]; g.DBUser != "" || g.Facts["former_user_known"] != false ||
		g.Facts["termination"] != "not terminated: the session had ended, or its pid, start or role no longer matched" {
		t.Errorf("unknown ghost = %+v", g)
	}
	// The evidence names the former user.
	evs, err := evidence.ReadOutbox(context.Background(), f.st.Pool(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	named := false
	for _, ev := range evs {
		if ev.Subject == "main/v-g1" {
			named = true
		}
	}
	if !named {
		t.Error("no evidence event names main/v-g1")
	}
}

func TestObserverRulesGhostTerminationRetriedThenRecorded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	term := &terminator{err: errors.New("permission denied to terminate process")}
	r := f.rules(t, "", term, nil)
	pass := &store.ObservedPass{Database: "main", ObservedAt: f.now, Coverage: f.now,
		Sessions: []store.ObservedSession{ghostSession(301, "v-gone", 16200, f.now.Add(-time.Minute))}}
	for i := 0; i < 2; i++ {
		if rep, err := f.evaluate(t, r, pass, false); err != nil || len(rep.Findings) != 0 {
			t.Fatalf("attempt %d: %+v, %v (want no finding yet)", i+1, rep, err)
		}
	}
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil || len(rep.Findings) != 1 {
		t.Fatalf("third attempt: %+v, %v", rep, err)
	}
	if got := rep.Findings[0].Facts["termination"]; got != "failed 3 times: permission denied to terminate process" {
		t.Errorf("termination = %v", got)
	}
}

// A pass whose transaction does not commit after it acted (a session
// terminated, a command queued) must not lose the finding: the next pass
// records it even though the condition is gone.
func TestObserverRulesCarryActedFindings(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	term := &terminator{ok: map[int32]bool{401: true}}
	r := f.rules(t, "", term, nil)
	pass := &store.ObservedPass{Database: "main", ObservedAt: f.now, Coverage: f.now,
		Sessions: []store.ObservedSession{ghostSession(401, "v-carried", 16300, f.now.Add(-time.Minute))}}
	if rep, err := f.evaluate(t, r, pass, true); err != nil || rep.Terminated != 1 {
		t.Fatalf("rolled back pass: %+v, %v", rep, err)
	}
	if len(f.findings(t)) != 0 {
		t.Fatal("rolled back finding is recorded")
	}
	// The ghost is gone now; the carried finding is recorded anyway.
	next := &store.ObservedPass{Database: "main", ObservedAt: f.now.Add(5 * time.Second), Coverage: f.now}
	rep, err := f.evaluate(t, r, next, false)
	if err != nil || len(rep.Findings) != 1 || rep.Findings[0].Facts["termination"] != "terminated" {
		t.Fatalf("next pass: %+v, %v", rep, err)
	}
	// Once seen recorded, it is no longer carried.
	if rep, err := f.evaluate(t, r, next, false); err != nil || len(rep.Findings) != 0 {
		t.Fatalf("third pass: %+v, %v", rep, err)
	}
	if n := len(f.findings(t)); n != 1 {
		t.Errorf("%d findings, want 1", n)
	}
}

func TestObserverRulesUnknownLeaseAndHMAC(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	created := f.now.Add(-10 * time.Minute)
	seen := created.Add(5 * time.Second)
	// An untuned mount: the ledger knows a lease issued while v-token-hm-…
	// was created only by the HMAC of its user.
	hmIssued := seen.Add(-2 * time.Second).Truncate(time.Second)
	hmUser := "v-token-reportin-AbCdEfGhIjKlMnOpQrSt-" + strconv.FormatInt(hmIssued.Unix(), 10)
	ev := schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: "postgres/creds/reporting/hm",
		Mount: "postgres", Role: "reporting", Database: "main", DBUser: "hmac-sha256:0011", DBUserHMAC: true, DisplayName: "token",
		IssueTime: &hmIssued, EventTime: hmIssued, VaultRequestID: "req-hm", Source: schemas.SourceRef{Transport: "test"}}
	custom := ev
	customIssued := created.Add(-time.Minute)
	custom.LeaseID, custom.DBUser, custom.IssueTime, custom.EventTime, custom.VaultRequestID = "postgres/creds/reporting/custom",
		"hmac-sha256:0022", &customIssued, customIssued, "req-custom"
	if _, err := f.st.Apply(ctx, store.Batch{Leases: []schemas.LeaseEvent{ev, custom}}); err != nil {
		t.Fatal(err)
	}
	pass := &store.ObservedPass{Database: "main", ObservedAt: f.now, Coverage: created.Add(-time.Hour),
		Roles: []store.ObservedRole{
			observedRole("v-nolease", 16400, seen, &created),
			observedRole(hmUser, 16401, seen, &created),
			observedRole("v-custom-template", 16402, seen.Add(-time.Minute), tptr(created.Add(-time.Minute))),
			observedRole("v-old", 16403, seen, nil),
		},
		Sessions: []store.ObservedSession{
			liveSession(501, "v-nolease", 16400, seen), liveSession(502, hmUser, 16401, seen),
			liveSession(503, "v-custom-template", 16402, seen.Add(-time.Minute)), liveSession(504, "v-old", 16403, seen),
		}}
	r := f.rules(t, "credential-reuse-unknown-lease=enforce", &terminator{}, nil)
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil {
		t.Fatal(err)
	}
	// v-nolease: unknown lease (critical, enforced) and orphan (observe):
	// the one HMAC'd lease of its creation window fits hmUser. hmUser:
	// probably that lease: nothing. v-old: there at the first pass:
	// nothing. v-custom-template, created earlier, while another HMAC'd
	// lease was issued that fits no name: it might be that one: nothing,
	// counted as ambiguous.
	rules := map[string]string{}
	for _, fd := range rep.Findings {
		rules[fd.Rule] = fd.DBUser
	}
	if len(rep.Findings) != 2 || rules[detectors.RuleReuseUnknownLease] != "v-nolease" || rules[detectors.RuleOrphanRole] != "v-nolease" {
		t.Errorf("findings = %+v", rep.Findings)
	}
	if rep.Ambiguous != 1 || rep.Commands != 1 || f.sink.all()[0].DBUser != "v-nolease" || f.sink.all()[0].LeaseID != "" {
		t.Errorf("report = %+v, commands %+v", rep, f.sink.all())
	}
}

// A client picks its application_name; one that looks like a password
// statement must not stop the finding from being recorded.
func TestObserverRulesWithholdApplicationName(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := ghostSession(601, "v-x", 16500, f.now.Add(-time.Minute))
	s.ApplicationName = "x PASSWORD 'hunter2'"
	r := f.rules(t, "ghost-session=observe", &terminator{}, nil)
	rep, err := f.evaluate(t, r, &store.ObservedPass{Database: "main", ObservedAt: f.now, Coverage: f.now,
		Sessions: []store.ObservedSession{s}}, false)
	if err != nil || len(rep.Findings) != 1 {
		t.Fatalf("report = %+v, %v", rep, err)
	}
	stored := f.findings(t)
	if len(stored) != 1 || stored[0].Facts["application_name"] != schemas.Withheld ||
		fmt.Sprint(stored[0].Facts["withheld"]) != "[$.facts.application_name]" {
		t.Errorf("stored finding = %+v", stored)
	}
	var n int
	if err := f.st.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM evidence_outbox WHERE convert_from(event, 'UTF8') LIKE '%hunter2%')
		+ (SELECT count(*) FROM findings WHERE finding::text LIKE '%hunter2%')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the application name reached the evidence: %d, %v", n, err)
	}
}

func TestDBRulesConfig(t *testing.T) {
	t.Parallel()
	c := detectors.DBRulesConfig{}.WithDefaults()
	if c.ReuseGrace != 10*time.Second || c.UnknownLeaseGrace != time.Minute || c.OrphanGrace != 2*time.Minute ||
		c.ClockSkew != 30*time.Second || c.ManagedPattern.String() != "^v-" {
		t.Errorf("defaults = %+v", c)
	}
	for rule, want := range map[string]schemas.Mode{detectors.RuleGhostSession: schemas.ModeEnforce, detectors.RuleReuseAfterRevoke: schemas.ModeEnforce,
		detectors.RuleReuseUnknownLease: schemas.ModeObserve, detectors.RuleOrphanRole: schemas.ModeObserve} {
		if got := c.Modes.Mode(rule); got != want {
			t.Errorf("default mode of %s = %s, want %s", rule, got, want)
		}
	}
	if err := (detectors.DBRulesConfig{OrphanGrace: -time.Second}).Validate(); err == nil {
		t.Error("negative grace accepted")
	}
	if _, err := detectors.NewDBRules(detectors.DBRulesConfig{}, detectors.DBRulesDeps{}); err == nil {
		t.Error("rules without signer, sink and terminator accepted")
	}
}

func tptr(t time.Time) *time.Time { return &t }
