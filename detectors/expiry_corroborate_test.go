package detectors_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// failingVault is a Vault link that cannot be reached.
type failingVault struct{}

func (failingVault) LookupLease(context.Context, string) (schemas.VaultLease, bool, error) {
	return schemas.VaultLease{}, false, errors.New("connection refused")
}

func (failingVault) ListLeases(context.Context, string) ([]string, error) {
	return nil, errors.New("connection refused")
}

func findingOf(t *testing.T, f *fixture, leaseID string) schemas.Finding {
	t.Helper()
	for _, fd := range f.findings(t) {
		if fd.LeaseID == leaseID {
			return fd
		}
	}
	t.Fatalf("no finding for %s", leaseID)
	return schemas.Finding{}
}

// TestExpiryNeedsCorroboration: the ledger's expiry (from the bus) arms a
// drop only when the database or Vault agrees the lease is over. A user
// whose password never expires in the database (VALID UNTIL NULL or
// infinity) is dropped only on Vault's word; without it the finding is
// unconfirmed and nothing is queued.
func TestExpiryNeedsCorroboration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	past := time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)

	f := newFixture(t)
	f.leaseOnly(t, "postgres/creds/reporting/nolimit", "main", "v-nolimit", past)
	f.role("main", "v-nolimit", nil)
	f.leaseOnly(t, "postgres/creds/reporting/gone", "main", "v-gone", past) // no user in the database
	f.lease(t, "postgres/creds/reporting/expired", "main", "v-expired", past)
	if _, err := f.detector(t, "", "*").Tick(ctx); err != nil {
		t.Fatal(err)
	}
	cmds := f.sink.all()
	if len(cmds) != 1 || cmds[0].DBUser != "v-expired" || cmds[0].Corroboration.Source != schemas.CorroboratedByValidUntil ||
		cmds[0].RoleOID != f.reader["main"]["v-expired"].OID || cmds[0].Target != testIdentity {
		t.Fatalf("commands = %+v", cmds)
	}
	nolimit := findingOf(t, f, "postgres/creds/reporting/nolimit")
	if nolimit.Action != schemas.ActionUnconfirmed || nolimit.CommandID != "" || !strings.Contains(nolimit.Summary, "not confirmed") {
		t.Errorf("finding for a password without limit and no Vault = %+v", nolimit)
	}
	if err := schemas.ValidateValue("finding", nolimit); err != nil {
		t.Errorf("unconfirmed finding: %v", err)
	}
	for _, fd := range f.findings(t) {
		if fd.LeaseID == "postgres/creds/reporting/gone" {
			t.Errorf("a finding for a user the database no longer has: %+v", fd)
		}
	}
	for _, id := range []string{"nolimit", "gone", "expired"} {
		if got := f.state(t, "postgres/creds/reporting/"+id); got != "expired" {
			t.Errorf("lease %s: state %s", id, got)
		}
	}
}

// TestExpiryAsksVault: for a password without limit in the database, Vault
// decides: a lease it holds live moves the expiry; one it holds past its
// expiry, or no longer holds after it held it, is dropped; one it never
// held (known from the bus alone) is not; Vault unreachable postpones the
// judgement.
func TestExpiryAsksVault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	past := f.now.Add(-time.Hour)
	later := f.now.Add(time.Hour)
	ids := map[string]string{}
	for _, n := range []string{"live", "held", "seen", "never"} {
		ids[n] = "postgres/creds/reporting/" + n
		f.leaseOnly(t, ids[n], "main", "v-"+n, past)
		f.role("main", "v-"+n, nil)
	}
	if err := store.MarkVaultSeen(ctx, f.st.Pool(), []string{ids["seen"]}, past.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	vault := vaultLeases{
		ids["live"]: {IssueTime: past.Add(-time.Hour), ExpireTime: &later},
		ids["held"]: {IssueTime: past.Add(-time.Hour), ExpireTime: &past},
	}
	if _, err := f.detectorWith(t, "", "*", vault).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range f.sink.all() {
		got[c.DBUser] = c.Corroboration.Source + ": " + c.Corroboration.Detail
	}
	if len(got) != 2 || !strings.Contains(got["v-held"], "past its expiry") || !strings.Contains(got["v-seen"], "no longer does") {
		t.Fatalf("commands = %v", got)
	}
	l, err := f.st.Lease(ctx, ids["live"])
	if err != nil || l.State != store.StateActive || l.ExpireSource != schemas.ExpireFromVault || !l.ExpireAt.Equal(later) || l.VaultSeenAt == nil {
		t.Errorf("live lease = %+v, %v", l, err)
	}
	if fd := findingOf(t, f, ids["never"]); fd.Action != schemas.ActionUnconfirmed ||
		!strings.Contains(fd.Summary, "never confirmed") {
		t.Errorf("never held = %+v", fd)
	}

	// Vault unreachable: the lease waits, with one unconfirmed finding,
	// and is judged again when Vault answers.
	g := newFixture(t)
	g.leaseOnly(t, "postgres/creds/reporting/wait", "main", "v-wait", past)
	g.role("main", "v-wait", nil)
	for range 2 {
		if _, err := g.detectorWith(t, "", "*", failingVault{}).Tick(ctx); err != nil {
			t.Fatal(err)
		}
		g.now = g.now.Add(2 * time.Minute)
	}
	if fs := g.findings(t); len(fs) != 1 || fs[0].Action != schemas.ActionUnconfirmed || len(g.sink.all()) != 0 {
		t.Fatalf("Vault unreachable: findings %+v, commands %+v", fs, g.sink.all())
	}
	if got := g.state(t, "postgres/creds/reporting/wait"); got != "active" {
		t.Errorf("state while Vault is unreachable = %s", got)
	}
	if _, err := g.detectorWith(t, "", "*", vaultLeases{"postgres/creds/reporting/wait": {ExpireTime: &past}}).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if cmds := g.sink.all(); len(cmds) != 1 || cmds[0].DBUser != "v-wait" {
		t.Errorf("after Vault answered: %+v", cmds)
	}
}

// TestExpiryRevokedPerAuditStaysDue: a revocation seen only on the bus
// neither disarms the expiry path (a forged revoke must not hide a leaked
// credential) nor arms a drop: at the lease's expiry, a user still there
// whose password has expired is dropped; one the database no longer has is
// left alone.
func TestExpiryRevokedPerAuditStaysDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	soon := f.now.Add(10 * time.Minute)
	f.lease(t, "postgres/creds/reporting/leaked", "main", "v-leaked", soon)
	f.leaseOnly(t, "postgres/creds/reporting/revoked", "main", "v-revoked", soon)
	f.revoke(t, "postgres/creds/reporting/leaked", f.now.Add(-time.Minute))
	f.revoke(t, "postgres/creds/reporting/revoked", f.now.Add(-time.Minute))
	d := f.detector(t, "", "*")
	if n, err := d.Tick(ctx); err != nil || n != 0 || len(f.sink.all()) != 0 {
		t.Fatalf("before the expiry: %d, %v, %+v", n, err, f.sink.all())
	}
	f.now = soon.Add(time.Minute)
	if n, err := d.Tick(ctx); err != nil || n != 2 {
		t.Fatalf("after the expiry: %d, %v", n, err)
	}
	cmds := f.sink.all()
	if len(cmds) != 1 || cmds[0].DBUser != "v-leaked" || cmds[0].Rule != detectors.RuleLeaseExpired {
		t.Fatalf("commands = %+v", cmds)
	}
	fd := findingOf(t, f, "postgres/creds/reporting/leaked")
	if !strings.Contains(fd.Summary, "revoked per the audit log") || fd.Facts["revoked_per_audit_at"] == nil {
		t.Errorf("finding = %+v", fd)
	}
	if got := f.state(t, "postgres/creds/reporting/leaked"); got != "revoked" {
		t.Errorf("state = %s", got)
	}
	if n, err := d.Tick(ctx); err != nil || n != 0 {
		t.Errorf("judged leases are due again: %d, %v", n, err)
	}
}

// TestExpiryReissuesStrandedCommands: a command that never reached the
// revoker's record within its lifetime (it expired in a long queue, or the
// revoker refused it before recording it) is issued again, under the same
// id, after the lease is corroborated again; one that the revoker recorded
// is not.
func TestExpiryReissuesStrandedCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/lost", "main", "v-lost", f.now.Add(-time.Hour))
	f.lease(t, "postgres/creds/reporting/done", "main", "v-done", f.now.Add(-time.Hour))
	d := f.detector(t, "", "*")
	if _, err := d.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	first := f.sink.all()
	if len(first) != 2 {
		t.Fatalf("commands = %+v", first)
	}
	// The revoker recorded one of them; the other never reached it.
	for _, c := range first {
		if c.DBUser == "v-done" {
			if _, err := store.ClaimRevocations(ctx, f.st.Pool(), []schemas.RevocationCommand{c}); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.now = f.now.Add(11 * time.Minute)
	ids, err := store.RearmStranded(ctx, f.st.Pool(), detectors.RuleLeaseExpired, f.now.Add(-10*time.Minute), 100)
	if err != nil || len(ids) != 1 || ids[0] != "postgres/creds/reporting/lost" {
		t.Fatalf("rearmed %v, %v", ids, err)
	}
	if _, err := d.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	all := f.sink.all()
	if len(all) != 3 || all[2].DBUser != "v-lost" || all[2].ID != first[0].ID && all[2].ID != first[1].ID || all[2].Nonce == "" {
		t.Fatalf("commands after the rearm = %+v", all)
	}
	if !all[2].IssuedAt.Equal(f.now) {
		t.Errorf("the command was not issued again: issued %s", all[2].IssuedAt)
	}
	if n := len(f.findings(t)); n != 2 {
		t.Errorf("%d findings, want the 2 of the first pass (no second one for the same expiry)", n)
	}
	// Recently judged: not rearmed again before another lifetime passes.
	if ids, err := store.RearmStranded(ctx, f.st.Pool(), detectors.RuleLeaseExpired, f.now.Add(-10*time.Minute), 100); err != nil || len(ids) != 0 {
		t.Errorf("rearmed again at once: %v, %v", ids, err)
	}
}
