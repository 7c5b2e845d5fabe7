package revoker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// admitRig is an Executor over the test database as target "main", whose
// rule "approved-rule" is in approve mode.
type admitRig struct {
	st      *store.Store
	signer  *revoker.Signer
	exec    *revoker.Executor
	targets target.Pools
}

func newAdmitRig(t *testing.T, now func() time.Time) *admitRig {
	t.Helper()
	return newAdmitRigWith(t, now, func(_ context.Context, rule string) (bool, error) { return rule == "approved-rule", nil })
}

// newAdmitRigWith is newAdmitRig with requires telling the rules in
// approve mode.
func newAdmitRigWith(t *testing.T, now func() time.Time, requires func(ctx context.Context, rule string) (bool, error)) *admitRig {
	t.Helper()
	st := migratedStore(t, "lg_admit")
	signer, verifier := testKeys(t)
	dropper, err := revoker.NewDropper(revoker.DropperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	targets := target.Pools{"main": pgtest.Pool(t)}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: dropper, Verifier: verifier, Targets: targets,
		State: st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"}, Clock: now,
		RequiresApproval: requires})
	if err != nil {
		t.Fatal(err)
	}
	return &admitRig{st: st, signer: signer, exec: exec, targets: targets}
}

// TestAdmitRefusesBeforeRecording: a command that is expired, issued in
// the future, shaped wrong, for another target or for a rule in approve
// mode without the approval is refused under its hash: nothing is recorded
// under its id, and the user stays.
func TestAdmitRefusesBeforeRecording(t *testing.T) {
	t.Parallel()
	now := time.Now()
	r := newAdmitRig(t, func() time.Time { return now })
	admin := r.targets["main"]
	user := "v-token-admit-" + pgtest.Suffix()
	if _, err := admin.Exec(context.Background(), `CREATE ROLE "`+user+`" LOGIN`); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, admin, user)
	for _, tc := range []struct {
		name, guard string
		change      func(*schemas.RevocationCommand)
	}{
		{"expired", revoker.GuardExpired, func(c *schemas.RevocationCommand) {
			c.IssuedAt, c.ExpiresAt = now.Add(-time.Hour), now.Add(-time.Second)
		}},
		{"issued in the future", revoker.GuardExpired, func(c *schemas.RevocationCommand) {
			c.IssuedAt, c.ExpiresAt = now.Add(time.Hour), now.Add(2*time.Hour)
		}},
		{"lifetime beyond the limit", revoker.GuardExpired, func(c *schemas.RevocationCommand) {
			c.IssuedAt, c.ExpiresAt = now.Add(-time.Minute), now.Add(25*time.Hour)
		}},
		{"no lifetime", revoker.GuardExpired, func(c *schemas.RevocationCommand) { c.ExpiresAt = time.Time{} }},
		{"unknown action", revoker.GuardAction, func(c *schemas.RevocationCommand) { c.Action = "disable" }},
		{"termination without a session", revoker.GuardAction, func(c *schemas.RevocationCommand) {
			c.Action = schemas.ActionTerminateSession
		}},
		{"another database", revoker.GuardTarget, func(c *schemas.RevocationCommand) { c.Target.DatabaseOID++ }},
		{"no target identity", revoker.GuardTarget, func(c *schemas.RevocationCommand) { c.Target = schemas.TargetIdentity{} }},
		{"unknown target", revoker.GuardUnknownTarget, func(c *schemas.RevocationCommand) { c.Database = "elsewhere" }},
		{"approve mode, never approved", revoker.GuardApproval, func(c *schemas.RevocationCommand) { c.Rule = "approved-rule" }},
		{"issued as approved, never approved", revoker.GuardApproval, func(c *schemas.RevocationCommand) {
			c.Issuer = revoker.IssuerApproval
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := cmdtest.Drop(t, admin, "main", user)
			cmd.ID = "admit-" + tc.guard + "-" + pgtest.Suffix()
			tc.change(&cmd)
			if err := r.signer.Sign(&cmd); err != nil {
				t.Fatal(err)
			}
			x := r.exec.Execute(context.Background(), []schemas.RevocationCommand{cmd}, nil)[0]
			if !x.Recorded || x.Result.Outcome != schemas.OutcomeRefused || x.Result.Guard != tc.guard || x.Result.CommandHash == "" {
				t.Fatalf("executed %+v, want a refusal by %s keyed by hash", x.Result, tc.guard)
			}
			if _, err := store.GetRevocation(context.Background(), r.st.Pool(), cmd.ID); !errors.Is(err, store.ErrNoRevocation) {
				t.Errorf("recorded under its id: %v", err)
			}
			if !exists(t, admin, user) {
				t.Fatal("the user was dropped")
			}
		})
	}
}

// TestUnreadablePolicyHandsTheCommandBack: when the policy in force cannot
// be read (the state store refused a connection), whether the rule needs
// an approval is unknown: the command is handed back for a retry, not
// refused for want of an approval, a final outcome that left the user in
// place for good (seen in the cluster chaos case, PostgreSQL out of
// connections for a moment).
func TestUnreadablePolicyHandsTheCommandBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	closed, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, "lg_nopolicy")})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	policies := rollout.New(closed.Pool(), evidence.Builder{Source: "urn:leaseguard:test"}, rollout.Spec{})
	r := newAdmitRigWith(t, nil, policies.RequiresApproval)
	admin := r.targets["main"]
	user := "v-token-nopolicy-" + pgtest.Suffix()
	if _, err := admin.Exec(ctx, `CREATE ROLE "`+user+`" LOGIN`); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, admin, user)
	cmd := cmdtest.Drop(t, admin, "main", user)
	if err := r.signer.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	x := r.exec.Execute(ctx, []schemas.RevocationCommand{cmd}, nil)[0]
	if !x.Retry || x.Recorded {
		t.Fatalf("executed %+v (retry %v, recorded %v), want it handed back unrecorded", x.Result, x.Retry, x.Recorded)
	}
	if _, err := store.GetRevocation(ctx, r.st.Pool(), cmd.ID); !errors.Is(err, store.ErrNoRevocation) {
		t.Errorf("recorded under its id: %v", err)
	}
	if !exists(t, admin, user) {
		t.Fatal("the user was dropped without knowing the policy")
	}
}

// TestAdmitApproval: a command of a rule in approve mode is carried out only
// when the pending revocation of its id is approved with exactly that
// command (its nonce).
func TestAdmitApproval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newAdmitRig(t, nil)
	admin := r.targets["main"]
	user := "v-token-approved-" + pgtest.Suffix()
	if _, err := admin.Exec(ctx, `CREATE ROLE "`+user+`" LOGIN`); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, admin, user)
	approved := cmdtest.Drop(t, admin, "main", user)
	approved.ID, approved.Rule, approved.Issuer = "pending-"+user, "approved-rule", revoker.IssuerApproval
	if err := r.signer.Sign(&approved); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	p := pending.Revocation{ID: approved.ID, FindingID: "f", Rule: approved.Rule, Severity: schemas.SeverityHigh,
		Database: "main", DBUser: user, Summary: "s", Command: approved, RequestedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := pending.Insert(ctx, r.st.Pool(), []pending.Revocation{p}); err != nil {
		t.Fatal(err)
	}
	tx, err := r.st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decision()
	d.Decision, d.DecidedBy, d.DecidedAt = schemas.ApprovalApproved, "owner", now
	if ok, err := pending.Decide(ctx, tx, d, &approved, ""); err != nil || !ok {
		t.Fatalf("decide: %v %v", ok, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Another command of the same id (another nonce) is not the approved one.
	other := approved
	other.Nonce = cmdtest.Nonce()
	if err := r.signer.Sign(&other); err != nil {
		t.Fatal(err)
	}
	if x := r.exec.Execute(ctx, []schemas.RevocationCommand{other}, nil)[0]; x.Result.Guard != revoker.GuardApproval {
		t.Fatalf("another command under the approved id: %+v", x.Result)
	}
	if x := r.exec.Execute(ctx, []schemas.RevocationCommand{approved}, nil)[0]; x.Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("the approved command: %+v", x.Result)
	}
}

// TestRefusedKeyOfARegisteredProcess: a command signed with the key of a
// live process this revoker does not accept (two processes configured
// apart) is refused, and its critical finding names that process and the
// setting to fix.
func TestRefusedKeyOfARegisteredProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newAdmitRig(t, nil)
	admin := r.targets["main"]
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	other := revoker.NewSigner(otherPriv)
	if _, err := r.st.Pool().Exec(ctx, `INSERT INTO nodes (node_id, instance, host, issues_commands, runs_revoker,
			signing_key_id, signing_public_key, accepted_key_ids, started_at, last_seen_at)
		VALUES ('n2', 'site-b', 'host-b', true, false, $1, 'PUB', '{}', now(), now())`, other.KeyID()); err != nil {
		t.Fatal(err)
	}
	user := "v-token-otherkey-" + pgtest.Suffix()
	if _, err := admin.Exec(ctx, `CREATE ROLE "`+user+`" LOGIN`); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, admin, user)
	cmd := cmdtest.Drop(t, admin, "main", user)
	if err := other.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	x := r.exec.Execute(ctx, []schemas.RevocationCommand{cmd}, nil)[0]
	if x.Result.Guard != revoker.GuardSignature || !exists(t, admin, user) {
		t.Fatalf("executed %+v", x.Result)
	}
	var who, severity string
	if err := r.st.Pool().QueryRow(ctx, `SELECT finding->'facts'->>'key_of_registered_process', severity FROM findings
		WHERE rule = 'command-refused' AND db_user = $1`, user).Scan(&who, &severity); err != nil || who != "site-b on host-b" || severity != "critical" {
		t.Errorf("finding: %q %q %v", who, severity, err)
	}
}

// TestPolicyReadOncePerBatch: whether a rule needs approval is read from
// the state store once per rule for a batch, not once per command: at
// 10,000 expiries the per-command reads were most of the revoker's trips to
// the state store. Commands of a rule in approve mode are still refused
// without their approval, whichever of the batch they are.
func TestPolicyReadOncePerBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var reads atomic.Int64
	r := newAdmitRigWith(t, nil, func(_ context.Context, rule string) (bool, error) {
		reads.Add(1)
		return rule == "approved-rule", nil
	})
	admin := r.targets["main"]
	var cmds []schemas.RevocationCommand
	for i := range 12 {
		user := fmt.Sprintf("v-token-perbatch-%d-%s", i, pgtest.Suffix())
		if _, err := admin.Exec(ctx, `CREATE ROLE "`+user+`" LOGIN`); err != nil {
			t.Fatal(err)
		}
		pgtest.DropRoleAtCleanup(t, admin, user)
		cmd := cmdtest.Drop(t, admin, "main", user)
		if i%4 == 3 {
			cmd.Rule = "approved-rule"
		}
		if err := r.signer.Sign(&cmd); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, x := range r.exec.Execute(ctx, cmds, nil) {
		want := schemas.OutcomeDropped
		if i%4 == 3 {
			want = schemas.OutcomeRefused
		}
		if x.Result.Outcome != want {
			t.Errorf("command %d (rule %s): %s (%s), want %s", i, cmds[i].Rule, x.Result.Outcome, x.Result.Reason, want)
		}
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("the policy was read %d times for a batch of 12 commands of 2 rules; want 2", n)
	}
}
