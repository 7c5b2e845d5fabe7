package detectors_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// vaultRules builds the observer rules with verify-before-destroy against a
// Vault-shaped server whose clock is the pass's.
func (f *fixture) vaultRules(t *testing.T, modes string, clock func() time.Time) (*detectors.DBRules, *vaulttest.Server) {
	t.Helper()
	return f.vaultRulesDevices(t, modes, clock, "file")
}

// vaultRulesDevices is vaultRules with the given audit devices.
func (f *fixture) vaultRulesDevices(t *testing.T, modes string, clock func() time.Time, devices ...string) (*detectors.DBRules, *vaulttest.Server) {
	t.Helper()
	v := vaulttest.New(t, clock)
	v.AddToken("hvs.lg", vaulttest.Token{Renewable: true, Sudo: true})
	c, err := vaultlink.New(vaultlink.Config{Addr: v.URL, Token: "hvs.lg"}, vaultlink.Deps{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	m, err := detectors.ParseModes(modes)
	if err != nil {
		t.Fatal(err)
	}
	r, err := detectors.NewDBRules(detectors.DBRulesConfig{Modes: m, Scope: detectors.Everywhere(), ManagedPattern: regexp.MustCompile(`^v-`)},
		detectors.DBRulesDeps{Issuer: f.issuer, Sink: f.sink, Evidence: f.builder,
			Vault: &detectors.VaultVerify{Leases: c, AuditDevices: devices, Recheck: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return r, v
}

// corroborationWhy is why a finding was not corroborated ("" if it was).
func corroborationWhy(f schemas.Finding) string {
	c, _ := f.Facts["corroboration"].(map[string]any)
	why, _ := c["why"].(string)
	return why
}

func vaultFacts(t *testing.T, f schemas.Finding) map[string]any {
	t.Helper()
	vc, ok := f.Facts["vault_check"].(map[string]any)
	if !ok {
		t.Fatalf("finding %s has no vault_check: %+v", f.Rule, f.Facts)
	}
	return vc
}

func byRule(fs []schemas.Finding) map[string]schemas.Finding {
	out := map[string]schemas.Finding{}
	for _, f := range fs {
		out[f.Rule] = f
	}
	return out
}

// An unlinked role: Vault holds a live lease under the role's creds path
// that the ledger cannot attribute to another user, issued while the role
// was created: it may be this user's, so nothing is dropped and the finding
// is downgraded. Once Vault no longer holds it, the rule enforces.
func TestVerifyBeforeDestroyUnlinkedRole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := f.now
	clock := func() time.Time { return now }
	created := f.now.Add(-10 * time.Minute)
	seen := created.Add(5 * time.Second)
	name := "v-token-reportin-AbCdEfGhIjKlMnOpQrSt-" + strconv.FormatInt(seen.Unix(), 10)
	// The ledger knows another user's lease on postgres/creds/reporting.
	otherID := "postgres/creds/reporting/" + strings.Repeat("o", 24)
	f.lease(t, otherID, "main", "v-token-reportin-other", f.now.Add(time.Hour))
	r, v := f.vaultRules(t, "orphan-role=enforce,credential-reuse-unknown-lease=enforce", clock)
	v.AddLease(otherID, vaulttest.Lease{IssueTime: seen, ExpireTime: f.now.Add(time.Hour)})
	unknown := "postgres/creds/reporting/" + strings.Repeat("u", 24)
	v.AddLease(unknown, vaulttest.Lease{IssueTime: seen.Add(-time.Second), ExpireTime: f.now.Add(time.Hour)})
	// A live lease issued long before the role was created is not its.
	v.AddLease("postgres/creds/reporting/"+strings.Repeat("e", 24), vaulttest.Lease{IssueTime: created.Add(-time.Hour), ExpireTime: f.now.Add(time.Hour)})
	pass := func(at time.Time) *observed.Pass {
		return &observed.Pass{Database: "main", ObservedAt: at, Coverage: created.Add(-time.Hour),
			Roles:    []observed.Role{observedRole(name, 17000, seen, &created)},
			Sessions: []observed.Session{liveSession(700, name, 17000, seen)}}
	}
	rep, err := f.evaluate(t, r, pass(now), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Commands != 0 || len(f.sink.all()) != 0 {
		t.Fatalf("dropped although a live lease may be the user's: %+v", f.sink.all())
	}
	got := byRule(rep.Findings)
	orphan, reuse := got[detectors.RuleOrphanRole], got[detectors.RuleReuseUnknownLease]
	if orphan.Severity != schemas.SeverityLow || orphan.Facts["downgraded_from"] != "medium" ||
		reuse.Severity != schemas.SeverityHigh || reuse.Facts["downgraded_from"] != "critical" {
		t.Fatalf("findings = %+v", rep.Findings)
	}
	vc := vaultFacts(t, orphan)
	if vc["result"] != "live_lease_may_exist" || vc["attributed_to_others"] != 2 || vc["unattributed_count"] != 1 ||
		orphan.Action != schemas.ActionUnconfirmed || !strings.Contains(corroborationWhy(orphan), "Vault does not confirm") {
		t.Errorf("vault check = %+v, finding %+v", vc, orphan)
	}
	for _, fd := range rep.Findings {
		if err := schemas.ValidateValue("finding", fd); err != nil {
			t.Errorf("finding %s: %v", fd.Rule, err)
		}
	}
	if calls := v.Calls("list"); len(calls) != 1 || calls[0].Arg != "postgres/creds/reporting/" {
		t.Errorf("list calls = %+v", calls)
	}
	// Within the recheck interval Vault is not asked again.
	now = now.Add(30 * time.Second)
	if _, err := f.evaluate(t, r, pass(now), false); err != nil {
		t.Fatal(err)
	}
	if n := len(v.Calls("list")); n != 1 {
		t.Errorf("asked Vault %d times within the recheck interval", n)
	}
	// Vault's lease ends; at the recheck the rules enforce.
	if err := cRevoke(v, unknown); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	rep, err = f.evaluate(t, r, pass(now), false)
	if err != nil {
		t.Fatal(err)
	}
	cmds := f.sink.all()
	if rep.Commands != 2 || len(cmds) != 2 || cmds[0].DBUser != name || cmds[0].LeaseID != "" {
		t.Fatalf("after Vault cleared it: report %+v, commands %+v", rep, cmds)
	}
	got = byRule(rep.Findings)
	if vc := vaultFacts(t, got[detectors.RuleOrphanRole]); vc["result"] != "no_live_lease" || got[detectors.RuleOrphanRole].Severity != schemas.SeverityMedium {
		t.Errorf("enforced finding: %+v", got[detectors.RuleOrphanRole])
	}
}

// cRevoke removes a lease from the fake Vault as a successful revoke does.
func cRevoke(v *vaulttest.Server, id string) error {
	c, err := vaultlink.New(vaultlink.Config{Addr: v.URL, Token: "hvs.lg"}, vaultlink.Deps{})
	if err != nil {
		return err
	}
	return c.Revoke(context.Background(), id)
}

// Vault unreachable: fail safe, the finding says so (its severity stays);
// when Vault answers and holds no lease, the rule enforces.
func TestVerifyBeforeDestroyVaultUnreachable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := f.now
	created := f.now.Add(-10 * time.Minute)
	seen := created.Add(5 * time.Second)
	name := "v-token-reportin-ZyXwVuTsRqPoNmLkJiHg-" + strconv.FormatInt(seen.Unix(), 10)
	f.lease(t, "postgres/creds/reporting/"+strings.Repeat("o", 24), "main", "v-token-reportin-other", f.now.Add(time.Hour))
	r, v := f.vaultRules(t, "credential-reuse-unknown-lease=enforce", func() time.Time { return now })
	v.SetSealed(true)
	pass := func(at time.Time) *observed.Pass {
		return &observed.Pass{Database: "main", ObservedAt: at, Coverage: created.Add(-time.Hour),
			Roles:    []observed.Role{observedRole(name, 17100, seen, &created)},
			Sessions: []observed.Session{liveSession(701, name, 17100, seen)}}
	}
	rep, err := f.evaluate(t, r, pass(now), false)
	if err != nil {
		t.Fatal(err)
	}
	reuse := byRule(rep.Findings)[detectors.RuleReuseUnknownLease]
	if rep.Commands != 0 || reuse.Severity != schemas.SeverityCritical || vaultFacts(t, reuse)["result"] != "vault_unreachable" ||
		reuse.Action != schemas.ActionUnconfirmed || !strings.Contains(corroborationWhy(reuse), "Vault could not be asked") {
		t.Fatalf("sealed: %+v", rep)
	}
	v.SetSealed(false)
	now = now.Add(2 * time.Minute)
	rep, err = f.evaluate(t, r, pass(now), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Commands != 1 || f.sink.all()[0].DBUser != name {
		t.Fatalf("after Vault is back: %+v", rep)
	}
}

// A role whose linked lease the ledger says revoked, while Vault still holds
// it live: the ledger is wrong (or a revocation was forged); nothing is
// dropped. An ended lease Vault held before and no longer holds: enforced.
// A lease Vault never held (the ledger has it from the bus alone) does not
// corroborate its own end: Vault is asked as if the role had no lease, and
// a live lease there that may be the user's keeps it.
func TestVerifyBeforeDestroyLinkedLease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := f.now
	r, v := f.vaultRules(t, "orphan-role=enforce", func() time.Time { return now })
	suffix := pgtest.Suffix()
	held, gone := "v-held-"+suffix, "v-gone-"+suffix
	heldID, goneID := "postgres/creds/reporting/"+strings.Repeat("h", 24), "postgres/creds/reporting/"+strings.Repeat("g", 24)
	f.lease(t, heldID, "main", held, f.now.Add(time.Hour))
	f.lease(t, goneID, "main", gone, f.now.Add(time.Hour))
	forged, forgedID := "v-token-reportin-F"+suffix, "postgres/creds/reporting/"+strings.Repeat("f", 24)
	f.lease(t, forgedID, "main", forged, f.now.Add(time.Hour))
	f.revoke(t, heldID, f.now.Add(-10*time.Minute))
	f.revoke(t, goneID, f.now.Add(-10*time.Minute))
	f.revoke(t, forgedID, f.now.Add(-10*time.Minute))
	if err := store.MarkVaultSeen(context.Background(), f.st.Pool(), []string{goneID}, f.now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	v.AddLease(heldID, vaulttest.Lease{IssueTime: f.now.Add(-time.Hour), ExpireTime: f.now.Add(time.Hour)})
	// The forged user's own lease, HMAC'd in the audit log: live in Vault.
	v.AddLease("postgres/creds/reporting/"+strings.Repeat("r", 24), vaulttest.Lease{IssueTime: f.now.Add(-time.Hour), ExpireTime: f.now.Add(time.Hour)})
	pass := &observed.Pass{Database: "main", ObservedAt: now, Coverage: f.now.Add(-2 * time.Hour),
		Roles: []observed.Role{observedRole(held, 17200, f.now.Add(-time.Hour), nil), observedRole(gone, 17201, f.now.Add(-time.Hour), nil),
			observedRole(forged, 17202, f.now.Add(-time.Hour), tptr(f.now.Add(-time.Hour-time.Second)))}}
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil {
		t.Fatal(err)
	}
	cmds := f.sink.all()
	if rep.Commands != 1 || cmds[0].DBUser != gone || cmds[0].LeaseID != goneID {
		t.Fatalf("commands = %+v", cmds)
	}
	for _, fd := range rep.Findings {
		vc := vaultFacts(t, fd)
		switch fd.DBUser {
		case held:
			if vc["result"] != "live_lease" || fd.Severity != schemas.SeverityMedium || fd.Action != schemas.ActionUnconfirmed {
				t.Errorf("held: %+v", fd)
			}
		case gone:
			if vc["result"] != "no_live_lease" || vc["vault_holds_lease"] != false || fd.Action != schemas.ActionRevocationRequested {
				t.Errorf("gone: %+v", fd)
			}
		case forged:
			if vc["result"] != "live_lease_may_exist" || vc["linked_lease_unknown_to_vault"] != forgedID || fd.Action != schemas.ActionUnconfirmed {
				t.Errorf("forged: %+v", fd)
			}
		}
	}
	if held, err := f.st.Lease(context.Background(), heldID); err != nil || held.VaultSeenAt == nil {
		t.Errorf("Vault held %s and the ledger did not record it: %+v, %v", heldID, held.VaultSeenAt, err)
	}
}

// A lease linked by HMAC (Vault's audit-hash of the name) is as firm as a
// plain one: credential reuse after its revocation is enforced, and the
// finding says how the link was made.
func TestHMACLinkEnforces(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	salt := []byte("salt")
	name := "v-token-reportin-QwErTyUiOpAsDfGhJkLz-1795634398"
	id := "postgres/creds/reporting/" + strings.Repeat("q", 24)
	issued := f.now.Add(-time.Hour)
	ev := schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id, Mount: "postgres", Role: "reporting",
		Database: "main", DBUser: vaulttest.Hash(salt, name), DBUserHMAC: true, DisplayName: "token", IssueTime: &issued,
		EventTime: issued, VaultRequestID: "req-q", Source: schemas.SourceRef{Transport: "test"}}
	if _, err := f.st.Apply(ctx, store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
	f.revoke(t, id, f.now.Add(-5*time.Minute))
	tx, err := f.st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := vaultlink.SaveUserHMACs(ctx, tx, "file", map[string]string{name: vaulttest.Hash(salt, name)}, f.now); err != nil {
		t.Fatal(err)
	}
	if links, err := vaultlink.LinkHMACLeases(ctx, tx, []string{"file"}, f.now); err != nil || len(links) != 1 {
		t.Fatalf("links %+v, %v", links, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := f.rules(t, "", nil)
	pass := &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-2 * time.Hour),
		Roles:    []observed.Role{expiredRole(name, 17300, f.now.Add(-time.Hour), f.now.Add(-time.Minute))},
		Sessions: []observed.Session{liveSession(702, name, 17300, f.now.Add(-time.Minute))}}
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil {
		t.Fatal(err)
	}
	reuse := byRule(rep.Findings)[detectors.RuleReuseAfterRevoke]
	if reuse.Facts["lease_link"] != "hmac" || reuse.LeaseID != id || reuse.Action != schemas.ActionRevocationRequested {
		t.Fatalf("finding = %+v", reuse)
	}
	if cmds := f.sink.all(); len(cmds) != 1 || cmds[0].DBUser != name || cmds[0].LeaseID != id {
		t.Errorf("commands = %+v", cmds)
	}
}

// Verify-before-destroy with two audit devices (each with its own salt): an
// HMAC'd lease Vault holds is another user's only when the user's name has
// an HMAC through every device and none is the lease's. Here the lease
// carries the socket's HMAC of another role's name (which fits it by
// Vault's template, so the user is linked to no lease) and was issued while
// the user was created. With the socket's HMAC of the user's name unknown,
// the lease may be the user's: nothing is dropped. Once it is known (and is
// not the lease's), the rule enforces.
func TestVerifyBeforeDestroyEveryDevice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	now := f.now
	fileSalt, socketSalt := []byte("file-salt"), []byte("socket-salt")
	created := f.now.Add(-10 * time.Minute)
	seen := created.Add(5 * time.Second)
	issued := seen.Add(-time.Second)
	name := "v-custom-app-" + pgtest.Suffix()
	other := "v-token-app-QwErTyUiOpAsDfGhJkLz-" + strconv.FormatInt(issued.Unix(), 10)
	id := "postgres/creds/app/" + strings.Repeat("s", 24)
	if _, err := f.st.Apply(ctx, store.Batch{Leases: []schemas.LeaseEvent{{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued,
		LeaseID: id, Mount: "postgres", Role: "app", Database: "main", DBUser: vaulttest.Hash(socketSalt, other), DBUserHMAC: true,
		DisplayName: "token", IssueTime: &issued, EventTime: issued, VaultRequestID: "req-s", Source: schemas.SourceRef{Transport: "socket"}}}}); err != nil {
		t.Fatal(err)
	}
	r, v := f.vaultRulesDevices(t, "orphan-role=enforce", func() time.Time { return now }, "file", "socket")
	v.AddLease(id, vaulttest.Lease{IssueTime: issued, ExpireTime: now.Add(time.Hour)})
	saveHMAC := func(device string, salt []byte) {
		if err := vaultlink.SaveUserHMACs(ctx, f.st.Pool(), device, map[string]string{name: vaulttest.Hash(salt, name)}, now); err != nil {
			t.Fatal(err)
		}
	}
	saveHMAC("file", fileSalt)
	pass := func() *observed.Pass {
		return &observed.Pass{Database: "main", ObservedAt: now, Coverage: created.Add(-time.Hour),
			Roles: []observed.Role{observedRole(name, 17400, seen, &created), observedRole(other, 17401, seen, &created)}}
	}
	rep, err := f.evaluate(t, r, pass(), false)
	if err != nil {
		t.Fatal(err)
	}
	orphan := byRule(rep.Findings)[detectors.RuleOrphanRole]
	if vc := vaultFacts(t, orphan); orphan.DBUser != name || rep.Commands != 0 || vc["result"] != "live_lease_may_exist" || vc["unattributed_count"] != 1 {
		t.Fatalf("socket HMAC of the name unknown: commands %d, finding %+v", rep.Commands, orphan)
	}
	saveHMAC("socket", socketSalt)
	now = now.Add(2 * time.Minute)
	rep, err = f.evaluate(t, r, pass(), false)
	if err != nil {
		t.Fatal(err)
	}
	orphan = byRule(rep.Findings)[detectors.RuleOrphanRole]
	cmds := f.sink.all()
	if vc := vaultFacts(t, orphan); rep.Commands != 1 || len(cmds) != 1 || cmds[0].DBUser != name ||
		vc["result"] != "no_live_lease" || vc["attributed_to_others"] != 1 {
		t.Fatalf("both HMACs known: commands %+v, finding %+v", cmds, orphan)
	}
}

// A lease whose revocation reached the ledger through the HMAC of its id (a
// revoke through the API body, linked by the Vault link) is judged as any
// revoked lease, and the finding says how the revocation was learned; a
// lease revoked by path does not carry that fact.
func TestRevocationLinkedByHMACInFinding(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	suffix := pgtest.Suffix()
	viaHMAC, viaPath := "v-hm-"+suffix, "v-pa-"+suffix
	hmID, paID := "postgres/creds/reporting/"+strings.Repeat("m", 24), "postgres/creds/reporting/"+strings.Repeat("p", 24)
	f.lease(t, hmID, "main", viaHMAC, f.now.Add(time.Hour))
	f.lease(t, paID, "main", viaPath, f.now.Add(time.Hour))
	revokedAt := f.now.Add(-10 * time.Minute)
	f.revoke(t, paID, revokedAt)
	// What the Vault link applies for a matched hashed revocation.
	m := vaultlink.RevocationMatch{LeaseIDHMAC: vaulttest.Hash([]byte("salt"), hmID), RevokedAt: revokedAt, Method: schemas.RevokeByBody,
		RequestID: "req-body", LeaseID: hmID, Device: "file", Source: schemas.SourceRef{Transport: "file"}}
	ev := m.Event()
	if _, err := f.st.Apply(ctx, store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
	if err := vaultlink.RecordRevocationLinks(ctx, f.st.Pool(), []vaultlink.RevocationMatch{m}, []string{store.EventID(&ev)}, f.now); err != nil {
		t.Fatal(err)
	}
	r := f.rules(t, "", nil)
	pass := &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-2 * time.Hour),
		Roles: []observed.Role{observedRole(viaHMAC, 17500, f.now.Add(-time.Hour), nil), observedRole(viaPath, 17501, f.now.Add(-time.Hour), nil)},
		Sessions: []observed.Session{liveSession(710, viaHMAC, 17500, f.now.Add(-time.Minute)),
			liveSession(711, viaPath, 17501, f.now.Add(-time.Minute))}}
	rep, err := f.evaluate(t, r, pass, false)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, fd := range rep.Findings {
		if fd.Rule != detectors.RuleReuseAfterRevoke {
			continue
		}
		seen[fd.DBUser] = true
		want := map[string]any{viaHMAC: "hmac", viaPath: nil}[fd.DBUser]
		if fd.Facts["lease_revocation_link"] != want || fd.Facts["lease_state"] != "revoked" {
			t.Errorf("%s: facts %+v, want lease_revocation_link %v", fd.DBUser, fd.Facts, want)
		}
	}
	if !seen[viaHMAC] || !seen[viaPath] {
		t.Fatalf("reuse-after-revoke findings for %v, want both users: %+v", seen, rep.Findings)
	}
}
