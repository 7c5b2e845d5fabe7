package detectors_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

func (f *fixture) rules(t *testing.T, modes string, mod func(*detectors.DBRulesConfig)) *detectors.DBRules {
	t.Helper()
	m, err := detectors.ParseModes(modes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := detectors.DBRulesConfig{Modes: m, Scope: detectors.Everywhere(), ManagedPattern: regexp.MustCompile(`^v-`)}
	if mod != nil {
		mod(&cfg)
	}
	r, err := detectors.NewDBRules(cfg, detectors.DBRulesDeps{Issuer: f.issuer, Sink: f.sink, Evidence: f.builder})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// evaluate runs one evaluation in a transaction, committed unless rollback.
func (f *fixture) evaluate(t *testing.T, r *detectors.DBRules, p *observed.Pass, rollback bool) (observed.Report, error) {
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

func observedRole(name string, oid uint32, first time.Time, createdAfter *time.Time) observed.Role {
	return observed.Role{DBRole: observed.DBRole{OID: oid, Name: name, CanLogin: true}, FirstSeenAt: first, CreatedAfter: createdAfter}
}

// expiredRole is observedRole whose rolvaliduntil has passed at until.
func expiredRole(name string, oid uint32, first time.Time, until time.Time) observed.Role {
	r := observedRole(name, oid, first, nil)
	r.ValidUntil = &until
	return r
}

func liveSession(pid int32, name string, oid uint32, start time.Time) observed.Session {
	return observed.Session{DBSession: observed.DBSession{PID: pid, BackendStart: start, UserOID: oid, UserName: name,
		ClientAddr: "10.1.2.3", ClientPort: 40000, ApplicationName: "report", BackendType: "client backend"}, FirstSeenAt: start}
}

func ghostSession(pid int32, former string, oid uint32, start time.Time) observed.Session {
	s := liveSession(pid, "", oid, start)
	s.Ghost, s.FormerUser = true, former
	return s
}

// TestObserverRulesReuseAfterRevokeEnforces: a live session of a user
// whose lease the ledger says is revoked is acted on only when the database
// agrees the credential is over (rolvaliduntil passed): the command carries
// that corroboration. While the password is still valid in the database, a
// revocation seen only on the bus leaves the finding unconfirmed.
func TestObserverRulesReuseAfterRevokeEnforces(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/r1", "main", "v-r1", f.now.Add(time.Hour))
	r := f.rules(t, "", nil)
	valid := observedRole("v-r1", 16001, f.now.Add(-time.Hour), nil)
	valid.ValidUntil = tptr(f.now.Add(time.Hour))
	pass := &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-time.Hour),
		Roles:    []observed.Role{valid},
		Sessions: []observed.Session{liveSession(101, "v-r1", 16001, f.now.Add(-time.Minute))}}

	// The lease is active: nothing.
	if rep, err := f.evaluate(t, r, pass, false); err != nil || len(rep.Findings) != 0 {
		t.Fatalf("active lease: %+v, %v", rep, err)
	}
	// The ledger learns the lease was revoked; the database still honours
	// the password and there is no Vault to ask: unconfirmed, no command.
	f.revoke(t, "postgres/creds/reporting/r1", f.now.Add(-11*time.Second))
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil || len(rep.Findings) != 1 || rep.Commands != 0 || rep.Findings[0].Action != schemas.ActionUnconfirmed {
		t.Fatalf("revoked per the bus only: %+v, %v", rep, err)
	}
	if err := schemas.ValidateValue("finding", rep.Findings[0]); err != nil {
		t.Errorf("unconfirmed finding does not validate: %v", err)
	}
	// Once rolvaliduntil has passed, the next pass enforces, naming it.
	pass.Roles = []observed.Role{expiredRole("v-r1", 16001, f.now.Add(-time.Hour), f.now.Add(-time.Second))}
	rep, err = f.evaluate(t, r, pass, false)
	if err != nil || len(rep.Findings) != 1 || rep.Commands != 1 {
		t.Fatalf("rolvaliduntil passed: %+v, %v", rep, err)
	}
	cmds := f.sink.all()
	if len(cmds) != 1 || cmds[0].Rule != detectors.RuleReuseAfterRevoke || cmds[0].DBUser != "v-r1" || cmds[0].LeaseID != "postgres/creds/reporting/r1" ||
		cmds[0].RoleOID != 16001 || cmds[0].Corroboration.Source != schemas.CorroboratedByValidUntil || cmds[0].Target != testIdentity {
		t.Fatalf("commands = %+v", cmds)
	}
	if err := f.verify.Verify(cmds[0]); err != nil {
		t.Errorf("command does not verify: %v", err)
	}
	var fd schemas.Finding
	for _, x := range f.findings(t) {
		if x.Action == schemas.ActionRevocationRequested {
			fd = x
		}
	}
	if fd.CommandID != cmds[0].ID || fd.Severity != schemas.SeverityCritical || fd.LeaseID != "postgres/creds/reporting/r1" ||
		fd.Mount != "postgres" || fd.Facts["lease_state"] != "revoked" {
		t.Errorf("finding = %+v", fd)
	}
	if err := schemas.ValidateValue("finding", fd); err != nil {
		t.Errorf("finding does not validate: %v", err)
	}
	// A lasting condition is one finding and one command.
	if rep, err := f.evaluate(t, r, pass, false); err != nil || len(rep.Findings) != 0 || len(f.sink.all()) != 1 {
		t.Errorf("third pass: %+v, %v, %d commands", rep, err, len(f.sink.all()))
	}
	if rep, err := evidence.VerifyOutbox(context.Background(), f.st.Pool(), evidence.VerifyOptions{}); err != nil || !rep.OK() || rep.Checked != 2 {
		t.Errorf("outbox verify = %+v, %v", rep, err)
	}
}

func TestObserverRulesObserveScopeAndSinkFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/o1", "main", "v-o1", f.now.Add(time.Hour))
	f.revoke(t, "postgres/creds/reporting/o1", f.now.Add(-time.Hour))
	pass := &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-2 * time.Hour),
		Roles:    []observed.Role{expiredRole("v-o1", 16002, f.now.Add(-time.Hour), f.now.Add(-time.Minute))},
		Sessions: []observed.Session{liveSession(102, "v-o1", 16002, f.now.Add(-time.Minute))}}

	// The sink is down: the pass fails and records nothing.
	f.sink.err = context.DeadlineExceeded
	if _, err := f.evaluate(t, f.rules(t, "", nil), pass, false); err == nil {
		t.Fatal("a queue failure was hidden")
	}
	if len(f.findings(t)) != 0 {
		t.Fatal("findings recorded although the pass failed")
	}
	f.sink.err = nil

	// Out of scope: a pilot finding (would_drop), no command, and it says why.
	r := f.rules(t, "", func(c *detectors.DBRulesConfig) { c.Scope = detectors.Scope{Databases: []string{"other"}} })
	if _, err := f.evaluate(t, r, pass, false); err != nil {
		t.Fatal(err)
	}
	// orphan-role (observe by default) also fires: the lease ended an hour ago.
	byRule := map[string]schemas.Finding{}
	for _, fd := range f.findings(t) {
		byRule[fd.Rule] = fd
	}
	reuse, orphan := byRule[detectors.RuleReuseAfterRevoke], byRule[detectors.RuleOrphanRole]
	if reuse.Action != schemas.ActionWouldDrop || reuse.InScope || reuse.Facts["not_enforced"] != "outside the enforcement scope" || reuse.CommandID != "" {
		t.Errorf("out of scope finding = %+v", reuse)
	}
	if orphan.Mode != schemas.ModeObserve || orphan.Facts["reason"] != "lease_ended" || orphan.Severity != schemas.SeverityHigh {
		t.Errorf("orphan finding = %+v", orphan)
	}
	if len(f.sink.all()) != 0 {
		t.Errorf("commands = %+v", f.sink.all())
	}
}

// TestObserverRulesGhost: each ghost session a rule may end gets a signed
// terminate_session command naming it exactly (pid, start, former oid),
// corroborated by the database itself; the observer ends nothing itself.
func TestObserverRulesGhost(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/g1", "main", "v-g1", f.now.Add(-time.Hour))
	r := f.rules(t, "", nil)
	start := f.now.Add(-time.Hour)
	pass := &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-2 * time.Hour),
		Sessions: []observed.Session{
			ghostSession(201, "v-g1", 16100, start),  // a Vault user dropped under its session
			ghostSession(202, "alice", 16101, start), // a human dropped under hers: not ours to end
			ghostSession(203, "", 16102, start),      // unknown to history: reported, not ours to end
		}}
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil || len(rep.Findings) != 3 || rep.Commands != 1 {
		t.Fatalf("ghost pass: %+v, %v", rep, err)
	}
	byPID := map[int32]schemas.RevocationCommand{}
	for _, c := range f.sink.all() {
		if c.Action != schemas.ActionTerminateSession || c.Session == nil || c.RoleOID != 0 ||
			c.Corroboration.Source != schemas.CorroboratedByDatabase || c.Rule != detectors.RuleGhostSession {
			t.Errorf("command %+v", c)
			continue
		}
		if err := f.verify.Verify(c); err != nil {
			t.Errorf("command does not verify: %v", err)
		}
		byPID[c.Session.PID] = c
	}
	if c := byPID[201]; c.DBUser != "v-g1" || c.Session.UserOID != 16100 || !c.Session.BackendStart.Equal(start) {
		t.Errorf("command for pid 201 = %+v", c)
	}
	if c, ok := byPID[203]; ok {
		t.Errorf("a command ends the ghost of a role nobody showed to be managed: %+v", c)
	}
	got := map[int32]schemas.Finding{}
	for _, fd := range f.findings(t) {
		got[int32(fd.Facts["pid"].(float64))] = fd
	}
	if g := got[201]; g.DBUser != "v-g1" || g.Facts["termination"] != "requested" || g.LeaseID != "postgres/creds/reporting/g1" ||
		g.Action != schemas.ActionRevocationRequested || g.CommandID != byPID[201].ID || g.Severity != schemas.SeverityCritical {
		t.Errorf("ghost of v-g1 = %+v", g)
	}
	if g := got[202]; g.Facts["termination"] != "not attempted: the former user alice does not match the managed pattern" || g.Action != schemas.ActionNone {
		t.Errorf("ghost of alice = %+v", g.Facts)
	}
	if g := got[203]; g.DBUser != "" || g.Facts["former_user_known"] != false || g.Action != schemas.ActionNone ||
		g.Facts["termination"] != "not attempted: the former role is unknown to the observer's history, so nothing shows leaseguard manages it" {
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

// A pass whose transaction does not commit after it acted (a command
// queued) must not lose the finding: the next pass records it even though
// the condition is gone.
func TestObserverRulesCarryActedFindings(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.rules(t, "", nil)
	pass := &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now,
		Sessions: []observed.Session{ghostSession(401, "v-carried", 16300, f.now.Add(-time.Minute))}}
	if rep, err := f.evaluate(t, r, pass, true); err != nil || rep.Commands != 1 {
		t.Fatalf("rolled back pass: %+v, %v", rep, err)
	}
	if len(f.findings(t)) != 0 {
		t.Fatal("rolled back finding is recorded")
	}
	// The ghost is gone now; the carried finding is recorded anyway.
	next := &observed.Pass{Database: "main", ObservedAt: f.now.Add(5 * time.Second), Coverage: f.now}
	rep, err := f.evaluate(t, r, next, false)
	if err != nil || len(rep.Findings) != 1 || rep.Findings[0].Facts["termination"] != "requested" {
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
	pass := &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: created.Add(-time.Hour),
		Roles: []observed.Role{
			observedRole("v-nolease", 16400, seen, &created),
			observedRole(hmUser, 16401, seen, &created),
			observedRole("v-custom-template", 16402, seen.Add(-time.Minute), tptr(created.Add(-time.Minute))),
			observedRole("v-old", 16403, seen, nil),
		},
		Sessions: []observed.Session{
			liveSession(501, "v-nolease", 16400, seen), liveSession(502, hmUser, 16401, seen),
			liveSession(503, "v-custom-template", 16402, seen.Add(-time.Minute)), liveSession(504, "v-old", 16403, seen),
		}}
	r := f.rules(t, "credential-reuse-unknown-lease=enforce", nil)
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
	// No lease, and no Vault to ask whether one exists: nothing
	// corroborates the unknown lease, so nothing is dropped.
	if rep.Ambiguous != 1 || rep.Commands != 0 || len(f.sink.all()) != 0 {
		t.Errorf("report = %+v, commands %+v", rep, f.sink.all())
	}
	for _, fd := range rep.Findings {
		if fd.Rule == detectors.RuleReuseUnknownLease && fd.Action != schemas.ActionUnconfirmed {
			t.Errorf("unknown lease finding %+v, want unconfirmed", fd)
		}
	}
}

// A client picks its application_name; one that looks like a password
// statement must not stop the finding from being recorded.
func TestObserverRulesWithholdApplicationName(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := ghostSession(601, "v-x", 16500, f.now.Add(-time.Minute))
	s.ApplicationName = "x PASSWORD 'hunter2'"
	r := f.rules(t, "ghost-session=observe", nil)
	rep, err := f.evaluate(t, r, &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now,
		Sessions: []observed.Session{s}}, false)
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
		t.Error("rules without issuer and sink accepted")
	}
}

func tptr(t time.Time) *time.Time { return &t }

// TestObserverRulesReissueStrandedCommands: a ghost's termination command
// that never reached the revoker's record within its lifetime is issued
// again while the ghost lasts; once the revoker recorded it, it is not.
func TestObserverRulesReissueStrandedCommands(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	r := f.rules(t, "", nil)
	pass := func(at time.Time) *observed.Pass {
		return &observed.Pass{Database: "main", ObservedAt: at, Coverage: f.now,
			Sessions: []observed.Session{ghostSession(801, "v-stranded", 16800, f.now.Add(-time.Minute))}}
	}
	if rep, err := f.evaluate(t, r, pass(f.now), false); err != nil || rep.Commands != 1 {
		t.Fatalf("first pass: %+v, %v", rep, err)
	}
	// Within the command's lifetime: nothing more.
	if rep, err := f.evaluate(t, r, pass(f.now.Add(5*time.Minute)), false); err != nil || rep.Commands != 0 {
		t.Fatalf("within the lifetime: %+v, %v", rep, err)
	}
	// Past it, the ghost still there and no outcome recorded: issued again,
	// with the same id, and no second finding.
	later := f.now.Add(11 * time.Minute)
	rep, err := f.evaluate(t, r, pass(later), false)
	cmds := f.sink.all()
	if err != nil || rep.Commands != 1 || len(cmds) != 2 || cmds[1].ID != cmds[0].ID || cmds[1].Nonce == cmds[0].Nonce || !cmds[1].Corroboration.CheckedAt.Equal(later) {
		t.Fatalf("past the lifetime: %+v, %v, commands %+v", rep, err, cmds)
	}
	if n := len(f.findings(t)); n != 1 {
		t.Errorf("%d findings, want 1", n)
	}
	// The revoker records it: never again.
	if _, err := store.ClaimRevocations(ctx, f.st.Pool(), cmds[1:]); err != nil {
		t.Fatal(err)
	}
	if rep, err := f.evaluate(t, r, pass(later.Add(11*time.Minute)), false); err != nil || rep.Commands != 0 {
		t.Errorf("after the revoker recorded it: %+v, %v", rep, err)
	}
}
