package vaultlink_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// A real drop queues the lease; the reconciler revokes exactly that lease
// in Vault, once, with no evidence needed (nothing failed).
func TestReconcilerRevokesDroppedLease(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	user := "v-token-recon-" + pgtest.Suffix()
	r.role(t, user)
	lease := newLeaseID("recon")
	sibling := newLeaseID("recon")
	r.vault.AddLease(lease, vaulttest.Lease{IssueTime: r.clock.Now().Add(-time.Hour), ExpireTime: r.clock.Now().Add(-time.Minute)})
	r.vault.AddLease(sibling, vaulttest.Lease{IssueTime: r.clock.Now().Add(-time.Hour), ExpireTime: r.clock.Now().Add(time.Hour)})
	if out := r.drop(t, user, lease); out != schemas.OutcomeDropped {
		t.Fatalf("drop outcome %s", out)
	}
	// A command with no lease, and a refused one, queue nothing.
	if out := r.drop(t, "postgres", "postgres/creds/x/"+strings.Repeat("a", 24)); out != schemas.OutcomeRefused {
		t.Fatalf("refused drop outcome %s", out)
	}
	rec := r.reconciler(t, r.client(t, nil), true)
	if n, err := rec.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("pass = %d, %v", n, err)
	}
	calls := r.vault.Calls("revoke", "revoke-force")
	if len(calls) != 1 || calls[0].Op != "revoke" || calls[0].Arg != lease || calls[0].Status != 204 {
		t.Fatalf("vault calls = %+v", calls)
	}
	if r.vault.HasLease(lease) || !r.vault.HasLease(sibling) {
		t.Errorf("lease held %v, sibling held %v", r.vault.HasLease(lease), r.vault.HasLease(sibling))
	}
	q := r.queued(t, lease)
	if q.State != "done" || q.Method != vaultlink.MethodRevoke || q.Attempts != 1 || q.DBUser != user || q.CommandID != "cmd-"+user {
		t.Errorf("queued = %+v", q)
	}
	if fs := r.findings(t, lease); len(fs) != 0 {
		t.Errorf("findings = %+v", fs)
	}
	// Passes later do nothing more.
	r.clock.Add(time.Hour)
	if n, err := rec.Pass(ctx); err != nil || n != 0 {
		t.Fatalf("second pass = %d, %v", n, err)
	}
	if len(r.vault.Calls("revoke")) != 1 {
		t.Errorf("revoked again: %+v", r.vault.Calls("revoke"))
	}
	if strings.Contains(r.logs.String(), r.token) {
		t.Error("the token is in the logs")
	}
}

// Vault's revoke fails (its revocation statements fail): revoke-force of
// that exact lease, only once pg_roles shows the user gone, recorded in
// evidence; a lease under the same role stays.
func TestReconcilerForcesExactLeaseOnlyWhenUserGone(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	user := "v-token-force-" + pgtest.Suffix()
	r.role(t, user)
	lease := newLeaseID("force")
	sibling := newLeaseID("force")
	r.vault.AddLease(lease, vaulttest.Lease{IssueTime: r.clock.Now().Add(-time.Hour), ExpireTime: r.clock.Now().Add(-time.Minute), RevokeFails: true})
	r.vault.AddLease(sibling, vaulttest.Lease{IssueTime: r.clock.Now(), ExpireTime: r.clock.Now().Add(time.Hour), RevokeFails: true})
	if out := r.drop(t, user, lease); out != schemas.OutcomeDropped {
		t.Fatalf("drop outcome %s", out)
	}
	// Someone recreates a role of that name before the reconciler looks:
	// it is not verified gone, so no force.
	r.role(t, user)
	rec := r.reconciler(t, r.client(t, nil), true)
	if _, err := rec.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if calls := r.vault.Calls("revoke-force"); len(calls) != 0 {
		t.Fatalf("forced while the user exists: %+v", calls)
	}
	q := r.queued(t, lease)
	if q.State != "pending" || q.LastStatus != 400 || !strings.Contains(q.LastError, "the user exists in pg_roles") ||
		!q.NextAttemptAt.After(r.clock.Now().Add(9*time.Second)) || q.FailureEvidenceID == "" {
		t.Fatalf("after a failure: %+v", q)
	}
	fs := r.findings(t, lease)
	if len(fs) != 1 || fs[0].Severity != schemas.SeverityMedium || fs[0].Facts["user_absent_from_pg_roles"] != false ||
		fs[0].Facts["revoke_status"] != float64(400) {
		t.Fatalf("failure evidence = %+v", fs)
	}
	// Not due yet: nothing happens.
	if n, _ := rec.Pass(ctx); n != 0 {
		t.Fatalf("claimed %d before its time", n)
	}
	// The role is gone again; at the next attempt the exact lease is forced.
	if _, err := r.admin.Exec(ctx, `DROP ROLE "`+user+`"`); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(15 * time.Second)
	if n, err := rec.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("retry pass = %d, %v", n, err)
	}
	force := r.vault.Calls("revoke-force")
	if len(force) != 1 || force[0].Arg != lease || force[0].Status != 204 {
		t.Fatalf("revoke-force calls = %+v", force)
	}
	if r.vault.HasLease(lease) || !r.vault.HasLease(sibling) {
		t.Errorf("lease held %v, sibling held %v", r.vault.HasLease(lease), r.vault.HasLease(sibling))
	}
	q = r.queued(t, lease)
	if q.State != "done" || q.Method != vaultlink.MethodRevokeForce || q.Attempts != 2 || q.EvidenceID == "" {
		t.Errorf("after force: %+v", q)
	}
	fs = r.findings(t, lease)
	if len(fs) != 2 || fs[1].Severity != schemas.SeverityLow || fs[1].Facts["method"] != "revoke-force" {
		t.Errorf("evidence = %+v", fs)
	}
	// The evidence is in the outbox, and findings and events are valid
	// documents of their schemas.
	evs, err := evidenceOf(ctx, r, []string{q.FailureEvidenceID, q.EvidenceID})
	if err != nil || len(evs) != 2 {
		t.Fatalf("outbox: %d events, %v", len(evs), err)
	}
	for _, ev := range evs {
		if err := schemas.ValidateJSON("evidence", ev); err != nil {
			t.Errorf("evidence event: %v\n%s", err, ev)
		}
	}
	for _, f := range fs {
		if err := schemas.ValidateValue("finding", f); err != nil {
			t.Errorf("finding: %v", err)
		}
	}
}

// LEASEGUARD_VAULT_FORCE=false: never revoke-force; the failure is in
// evidence once, and retried with a growing backoff.
func TestReconcilerNoForce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	user := "v-token-noforce-" + pgtest.Suffix()
	r.role(t, user)
	lease := newLeaseID("noforce")
	r.vault.AddLease(lease, vaulttest.Lease{IssueTime: r.clock.Now(), ExpireTime: r.clock.Now(), RevokeFails: true})
	r.drop(t, user, lease)
	rec := r.reconciler(t, r.client(t, nil), false)
	var waits []time.Duration
	for i := 0; i < 3; i++ {
		if n, err := rec.Pass(ctx); err != nil || n != 1 {
			t.Fatalf("pass %d = %d, %v", i, n, err)
		}
		q := r.queued(t, lease)
		waits = append(waits, q.NextAttemptAt.Sub(r.clock.Now()))
		r.clock.Add(q.NextAttemptAt.Sub(r.clock.Now()))
	}
	if len(r.vault.Calls("revoke-force")) != 0 || len(r.vault.Calls("revoke")) != 3 {
		t.Fatalf("calls = %+v", r.vault.Calls())
	}
	// MinBackoff 10s doubling, drawn from the upper half (internal/backoff).
	if !(waits[0] == 10*time.Second && waits[1] >= 10*time.Second && waits[1] <= 20*time.Second &&
		waits[2] >= 20*time.Second && waits[2] <= 40*time.Second) {
		t.Errorf("backoff = %v, want 10s, [10s, 20s], [20s, 40s]", waits)
	}
	q := r.queued(t, lease)
	if q.State != "pending" || q.Attempts != 3 || !strings.Contains(q.LastError, "LEASEGUARD_VAULT_FORCE=false") {
		t.Errorf("queued = %+v", q)
	}
	fs := r.findings(t, lease)
	if len(fs) != 1 || fs[0].Facts["force_enabled"] != false || !strings.Contains(fs[0].Summary, "the drop stands") {
		t.Errorf("failure evidence = %+v", fs)
	}
	// The drop stands.
	var n int
	if err := r.admin.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, user).Scan(&n); err != nil || n != 0 {
		t.Errorf("role present %d (%v)", n, err)
	}
}

// Vault down (sealed, then not listening): nothing is lost, the drop stands,
// the revoke happens when Vault is back, and its resolution is recorded.
func TestReconcilerVaultDown(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	user := "v-token-down-" + pgtest.Suffix()
	r.role(t, user)
	lease := newLeaseID("down")
	r.vault.AddLease(lease, vaulttest.Lease{IssueTime: r.clock.Now(), ExpireTime: r.clock.Now().Add(time.Hour)})
	r.drop(t, user, lease)

	// Nobody listens at this address.
	dead := vaulttest.New(t, r.clock.Now)
	dead.Close()
	down := r.reconciler(t, r.client(t, func(c *vaultlink.Config) { c.Addr = dead.URL }), true)
	if _, err := down.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	q := r.queued(t, lease)
	if q.State != "pending" || q.LastStatus != 0 || !strings.Contains(q.LastError, "unreachable") ||
		!strings.Contains(q.LastError, "Vault did not attempt the revocation") {
		t.Fatalf("after unreachable: %+v", q)
	}
	r.vault.SetSealed(true)
	r.clock.Add(time.Minute)
	rec := r.reconciler(t, r.client(t, nil), true)
	if _, err := rec.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if q = r.queued(t, lease); q.State != "pending" || q.LastStatus != 503 || q.Attempts != 2 {
		t.Fatalf("after sealed: %+v", q)
	}
	if len(r.vault.Calls("revoke-force")) != 0 {
		t.Fatal("forced while Vault was sealed")
	}
	r.vault.SetSealed(false)
	r.clock.Add(time.Hour)
	if _, err := rec.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	q = r.queued(t, lease)
	if q.State != "done" || q.Method != vaultlink.MethodRevoke || r.vault.HasLease(lease) {
		t.Fatalf("after recovery: %+v", q)
	}
	fs := r.findings(t, lease)
	if len(fs) != 2 || fs[0].Severity != schemas.SeverityMedium || fs[1].Severity != schemas.SeverityInfo || fs[1].Facts["method"] != "revoke" {
		t.Errorf("evidence = %+v", fs)
	}
	rev, err := store.GetRevocation(ctx, r.st.Pool(), "cmd-"+user)
	if err != nil || rev.Outcome != schemas.OutcomeDropped {
		t.Errorf("drop record = %+v, %v", rev, err)
	}
}

// revoke-force denied (the token lacks sudo): Vault answers 403; the
// failure is recorded and retried; the lease is not lost.
func TestReconcilerSudoDenied(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	user := "v-token-sudo-" + pgtest.Suffix()
	r.role(t, user)
	lease := newLeaseID("sudo")
	r.vault.AddLease(lease, vaulttest.Lease{IssueTime: r.clock.Now(), ExpireTime: r.clock.Now(), RevokeFails: true})
	nosudo := "hvs.nosudo-" + pgtest.Suffix()
	r.vault.AddToken(nosudo, vaulttest.Token{TTL: time.Hour, Renewable: true})
	r.drop(t, user, lease)
	rec := r.reconciler(t, r.client(t, func(c *vaultlink.Config) { c.Token = nosudo }), true)
	if _, err := rec.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	force := r.vault.Calls("revoke-force")
	if len(force) != 1 || force[0].Status != 403 || force[0].Arg != lease {
		t.Fatalf("revoke-force = %+v", force)
	}
	q := r.queued(t, lease)
	if q.State != "pending" || q.LastStatus != 403 || !r.vault.HasLease(lease) {
		t.Fatalf("queued = %+v", q)
	}
	fs := r.findings(t, lease)
	if len(fs) != 1 || fs[0].Facts["revoke_force_status"] != float64(403) || fs[0].Facts["user_absent_from_pg_roles"] != true {
		t.Errorf("evidence = %+v", fs)
	}
}

// A lease id that is not exactly one lease is never sent to revoke-force.
func TestRevokeForceRefusesPrefixes(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	c := r.client(t, nil)
	for _, id := range []string{"", "postgres/creds/", "postgres/creds/ro/", "postgres/creds/ro", "postgres/creds/ro/short",
		"postgres/creds/ro/" + strings.Repeat("a", 24) + "/", "postgres/../" + strings.Repeat("a", 24), strings.Repeat("a", 24)} {
		if err := c.RevokeForce(context.Background(), id); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("RevokeForce(%q) = %v", id, err)
		}
	}
	if calls := r.vault.Calls(); len(calls) != 0 {
		t.Errorf("calls = %+v", calls)
	}
	for _, id := range []string{"database/creds/readonly/" + strings.Repeat("aZ9", 8), "ns1/db/creds/r-w/" + strings.Repeat("b", 24) + ".Xyz12"} {
		if !vaultlink.ValidLeaseID(id) {
			t.Errorf("ValidLeaseID(%q) = false", id)
		}
	}
}

// evidenceOf returns the stored events of the given ids.
func evidenceOf(ctx context.Context, r *rig, ids []string) ([][]byte, error) {
	rows, err := r.st.Pool().Query(ctx, `SELECT event FROM evidence_outbox WHERE id = ANY($1) ORDER BY seq`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var ev []byte
		if err := rows.Scan(&ev); err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

// Vault's error text is the backend's: when it looks like it carries a
// secret (a statement with a password), the text is withheld from the
// finding and its evidence, where it was is noted, and the reconciler
// goes on.
func TestReconcilerWithholdsSecretLookingVaultErrors(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	user := "v-token-secret-" + pgtest.Suffix()
	r.role(t, user)
	lease := newLeaseID("secret")
	leak := `failed to revoke lease: ERROR: syntax error at or near "ALTER ROLE x PASSWORD 'hunter2-in-vault-error'"`
	r.vault.AddLease(lease, vaulttest.Lease{IssueTime: r.clock.Now().Add(-time.Hour), ExpireTime: r.clock.Now().Add(-time.Minute),
		RevokeFails: true, RevokeError: leak})
	r.drop(t, user, lease)
	r.role(t, user) // still there: a failure is recorded, no force
	rec := r.reconciler(t, r.client(t, nil), true)
	if _, err := rec.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	q := r.queued(t, lease)
	if q.FailureEvidenceID == "" {
		t.Fatalf("no failure evidence: %+v", q)
	}
	fs := r.findings(t, lease)
	if len(fs) != 1 {
		t.Fatalf("findings = %+v", fs)
	}
	withheld, _ := fs[0].Facts["withheld"].([]any)
	if len(withheld) == 0 || fs[0].Facts["revoke_error"] != schemas.Withheld {
		t.Errorf("facts = %v", fs[0].Facts)
	}
	evs, err := evidenceOf(ctx, r, []string{q.FailureEvidenceID})
	if err != nil || len(evs) != 1 {
		t.Fatalf("outbox: %d events, %v", len(evs), err)
	}
	for _, doc := range append([]string{string(evs[0])}, fmt.Sprint(fs[0])) {
		if strings.Contains(doc, "hunter2") {
			t.Errorf("the error text reached the evidence or the finding: %s", doc)
		}
	}
}
