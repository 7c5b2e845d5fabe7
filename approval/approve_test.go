package approval_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/approval"
	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// approvalRig: the operator rig, plus the expiry detector in approve mode
// (its clock two hours ahead, so the users it issues are expired to it) and
// an Approvals over the same revoker keys.
type approvalRig struct {
	*rig
	issuer   *revoker.Issuer
	executor *revoker.Executor
	ahead    time.Time
	ttl      time.Duration
}

func newApprovalRig(t *testing.T, tag string) *approvalRig {
	t.Helper()
	r := newRig(t, tag)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := revoker.NewSigner(priv)
	verifier, err := revoker.NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	dropper, err := revoker.NewDropper(revoker.DropperConfig{Guard: r.guard})
	if err != nil {
		t.Fatal(err)
	}
	targets := target.Pools{"main": r.admin}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: dropper, Verifier: verifier, Targets: targets,
		State: r.st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"},
		RequiresApproval: func(_ context.Context, rule string) (bool, error) { return rule == detectors.RuleLeaseExpired, nil }})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := revoker.NewIssuer(signer, targets, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &approvalRig{rig: r, issuer: issuer, executor: exec, ahead: time.Now().Add(2 * time.Hour), ttl: time.Hour}
}

// pend issues a user whose lease expired an hour ago (its VALID UNTIL too)
// and runs the expiry detector (two hours ahead, approve mode): it returns
// the user and the pending revocation's id.
func (a *approvalRig) pend(t *testing.T, role string) (string, string) {
	t.Helper()
	c, _, err := a.sim.Issue(a.ctx, role, -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pendDrop(t, a.rig, c.Username)
	now := time.Now().UTC()
	exp := now.Add(-time.Hour)
	a.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: c.LeaseID,
		Mount: a.sim.Mount, Role: role, Database: "main", DBUser: c.Username, IssueTime: &now, ExpireTime: &exp,
		ExpireSource: schemas.ExpireFromEvent, EventTime: now, Source: schemas.SourceRef{Transport: "file", Offset: 1}})
	modes, err := detectors.ParseModes(detectors.RuleLeaseExpired + "=approve")
	if err != nil {
		t.Fatal(err)
	}
	d, err := detectors.NewExpiry(detectors.ExpiryConfig{Grace: 30 * time.Second, Interval: time.Second, Batch: 10,
		Modes: modes, Scope: detectors.Everywhere(), ApprovalTTL: a.ttl},
		detectors.ExpiryDeps{Pool: a.st.Pool(), Reader: target.Pools{"main": a.admin}, Issuer: a.issuer, Sink: refuseSink{t},
			Evidence: evidence.Builder{Source: "urn:leaseguard:test"}, Clock: func() time.Time { return a.ahead }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Tick(a.ctx); err != nil {
		t.Fatal(err)
	}
	var id string
	err = a.st.Pool().QueryRow(a.ctx, `SELECT id FROM pending_revocations WHERE db_user = $1 AND state = 'pending'`, c.Username).Scan(&id)
	if err != nil {
		t.Fatalf("no pending revocation for %s: %v", c.Username, err)
	}
	return c.Username, id
}

func pendDrop(t *testing.T, r *rig, user string) {
	t.Helper()
	t.Cleanup(func() {
		_, _ = r.admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{user}.Sanitize())
	})
}

// refuseSink fails the test if the detector queues anything: approve mode
// must not.
type refuseSink struct{ t *testing.T }

func (s refuseSink) Submit(_ context.Context, cmds []schemas.RevocationCommand) error {
	s.t.Errorf("approve mode queued %d commands", len(cmds))
	return nil
}

// approvals builds an Approvals whose clock reads at.
func (a *approvalRig) approvals(t *testing.T, at func() time.Time) *approval.Approvals {
	t.Helper()
	ap, err := approval.NewApprovals(approval.ApprovalDeps{State: a.st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"},
		Executor: a.executor, Issuer: a.issuer, Backoff: 10 * time.Millisecond, Clock: at})
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// events returns the evidence events of type typ about user, decoded.
func (a *approvalRig) events(t *testing.T, typ, user string) []map[string]any {
	t.Helper()
	rows, err := a.st.Pool().Query(a.ctx, `SELECT event FROM evidence_outbox WHERE type = $1 AND subject = $2 ORDER BY seq`, typ, "main/"+user)
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, raw := range raws {
		if err := schemas.ValidateJSON("evidence", raw); err != nil {
			t.Errorf("%s event does not match the schema: %v", typ, err)
		}
		var ev struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Data)
	}
	return out
}

func unmapped(ev map[string]any, k string) any { return ev["unmapped"].(map[string]any)[k] }

func (a *approvalRig) verifyChain(t *testing.T) {
	t.Helper()
	rep, err := evidence.VerifyOutbox(a.ctx, a.st.Pool(), evidence.VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Errorf("evidence chain: %+v, %v", rep, err)
	}
}

// TestApproveDrops: approval executes exactly the held command (the id
// enforce would have used) through the revoker; the user is dropped, and
// both the decision and the revocation evidence name the approver.
func TestApproveDrops(t *testing.T) {
	t.Parallel()
	a := newApprovalRig(t, "apok")
	user, id := a.pend(t, "ro")
	held, err := pending.Get(a.ctx, a.st.Pool(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !a.exists(t, user) {
		t.Fatal("pending revocation dropped the user before any approval")
	}
	ap := a.approvals(t, time.Now)
	got, err := ap.Approve(a.ctx, id, "alice", "INC-7 confirmed")
	if err != nil {
		t.Fatal(err)
	}
	if got.Executed == nil || !operator.Gone(*got.Executed) || got.Executed.Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("executed %+v", got.Executed)
	}
	if a.exists(t, user) {
		t.Fatal("approved user still exists")
	}
	cmd := got.Executed.Command
	hc := held.Command
	if cmd.ID != id || cmd.ID != hc.ID || cmd.Issuer != revoker.IssuerApproval || cmd.Rule != hc.Rule || cmd.FindingID != hc.FindingID ||
		cmd.LeaseID != hc.LeaseID || cmd.Reason != hc.Reason || cmd.Actor != "alice" || cmd.Emergency {
		t.Errorf("executed command %+v, held %+v", cmd, hc)
	}
	rev, err := store.GetRevocation(a.ctx, a.st.Pool(), id)
	if err != nil || rev.Outcome != schemas.OutcomeDropped {
		t.Fatalf("revocation %+v, %v", rev, err)
	}
	p, err := pending.Get(a.ctx, a.st.Pool(), id)
	if err != nil || p.State != schemas.ApprovalApproved || p.DecidedBy != "alice" || p.Comment != "INC-7 confirmed" || p.EvidenceID == "" {
		t.Fatalf("pending after approval %+v, %v", p, err)
	}
	dec := a.events(t, evidence.TypeApproval, user)
	if len(dec) != 1 || unmapped(dec[0], "decision") != "approved" || unmapped(dec[0], "decided_by") != "alice" ||
		dec[0]["actor"].(map[string]any)["user"].(map[string]any)["name"] != "alice" {
		t.Errorf("decision evidence %v", dec)
	}
	revs := a.events(t, evidence.TypeRevocation, user)
	if len(revs) != 1 || unmapped(revs[0], "actor") != "alice" || unmapped(revs[0], "command_id") != id || unmapped(revs[0], "outcome") != "dropped" {
		t.Errorf("revocation evidence %v", revs)
	}
	// Decided is decided.
	if _, err := ap.Approve(a.ctx, id, "alice", ""); !errors.Is(err, approval.ErrAlreadyDecided) {
		t.Errorf("second approval: %v", err)
	}
	if _, err := ap.Reject(a.ctx, id, "bob", ""); !errors.Is(err, approval.ErrAlreadyDecided) {
		t.Errorf("rejection after approval: %v", err)
	}
	if _, err := ap.Approve(a.ctx, "nothing", "alice", ""); !errors.Is(err, pending.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	a.verifyChain(t)
}

// TestRejectKeeps: a rejection drops nothing and is recorded with who
// rejected; an approval after it is refused.
func TestRejectKeeps(t *testing.T) {
	t.Parallel()
	a := newApprovalRig(t, "aprej")
	user, id := a.pend(t, "ro")
	ap := a.approvals(t, time.Now)
	if _, err := ap.Reject(a.ctx, id, "bob", "batch job, keep it"); err != nil {
		t.Fatal(err)
	}
	if !a.exists(t, user) {
		t.Fatal("rejected user was dropped")
	}
	if _, err := ap.Approve(a.ctx, id, "alice", ""); !errors.Is(err, approval.ErrAlreadyDecided) {
		t.Errorf("approval after rejection: %v", err)
	}
	if !a.exists(t, user) {
		t.Fatal("approval after rejection dropped the user")
	}
	if n := a.count(t, "revocations"); n != 0 {
		t.Errorf("%d revocations recorded", n)
	}
	dec := a.events(t, evidence.TypeApproval, user)
	if len(dec) != 1 || unmapped(dec[0], "decision") != "rejected" || unmapped(dec[0], "decided_by") != "bob" ||
		unmapped(dec[0], "comment") != "batch job, keep it" {
		t.Errorf("decision evidence %v", dec)
	}
	a.verifyChain(t)
}

// TestApprovalExpiry: past its time a pending revocation expires — swept,
// or when someone tries to approve it — and nothing is dropped.
func TestApprovalExpiry(t *testing.T) {
	t.Parallel()
	a := newApprovalRig(t, "apexp")
	swept, sweptID := a.pend(t, "ro")
	late, lateID := a.pend(t, "rw")
	after := a.ahead.Add(a.ttl).Add(time.Second)
	before := a.approvals(t, func() time.Time { return a.ahead.Add(a.ttl).Add(-time.Second) })
	if ps, err := before.ExpireDue(a.ctx, 10); err != nil || len(ps) != 0 {
		t.Fatalf("expired before their time: %+v, %v", ps, err)
	}
	ap := a.approvals(t, func() time.Time { return after })

	// Approving one whose time ran out: refused, and recorded expired.
	if _, err := ap.Approve(a.ctx, lateID, "alice", ""); !errors.Is(err, approval.ErrApprovalExpired) {
		t.Fatalf("approval after expiry: %v", err)
	}
	if !a.exists(t, late) {
		t.Fatal("late approval dropped the user")
	}
	// The sweep expires the other one only.
	ps, err := ap.ExpireDue(a.ctx, 10)
	if err != nil || len(ps) != 1 || ps[0].ID != sweptID {
		t.Fatalf("ExpireDue = %+v, %v", ps, err)
	}
	for _, c := range []struct{ user, id string }{{swept, sweptID}, {late, lateID}} {
		p, err := pending.Get(a.ctx, a.st.Pool(), c.id)
		if err != nil || p.State != schemas.ApprovalExpired || p.DecidedBy != evidence.DecidedBySystem {
			t.Errorf("%s: %+v, %v", c.user, p, err)
		}
		if !a.exists(t, c.user) {
			t.Errorf("expired %s was dropped", c.user)
		}
		dec := a.events(t, evidence.TypeApproval, c.user)
		if len(dec) != 1 || unmapped(dec[0], "decision") != "expired" {
			t.Errorf("%s: decision evidence %v", c.user, dec)
		}
		if _, err := ap.Approve(a.ctx, c.id, "alice", ""); !errors.Is(err, approval.ErrAlreadyDecided) {
			t.Errorf("%s: approval of an expired one: %v", c.user, err)
		}
	}
	a.verifyChain(t)
}

// TestApprovalRace: owners approving and rejecting at once make one
// decision, recorded once.
func TestApprovalRace(t *testing.T) {
	t.Parallel()
	a := newApprovalRig(t, "aprace")
	user, id := a.pend(t, "ro")
	ap := a.approvals(t, time.Now)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if i%2 == 0 {
				_, errs[i] = ap.Approve(a.ctx, id, "alice", "")
			} else {
				_, errs[i] = ap.Reject(a.ctx, id, "bob", "")
			}
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, approval.ErrAlreadyDecided):
			t.Errorf("decider %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d decisions succeeded, want 1", won)
	}
	p, err := pending.Get(a.ctx, a.st.Pool(), id)
	if err != nil {
		t.Fatal(err)
	}
	if dec := a.events(t, evidence.TypeApproval, user); len(dec) != 1 || unmapped(dec[0], "decision") != string(p.State) {
		t.Errorf("decision evidence %v for state %s", dec, p.State)
	}
	if gone := !a.exists(t, user); gone != (p.State == schemas.ApprovalApproved) {
		t.Errorf("state %s, user gone %v", p.State, gone)
	}
	a.verifyChain(t)
}

// TestApproveRefusesForgedRow: a pending revocation whose proposal was
// changed in the state store no longer verifies and is not approved.
func TestApproveRefusesForgedRow(t *testing.T) {
	t.Parallel()
	a := newApprovalRig(t, "apforge")
	user, id := a.pend(t, "ro")
	other, _ := a.pend(t, "rw")
	_, err := a.st.Pool().Exec(a.ctx, `UPDATE pending_revocations SET command = jsonb_set(command, '{db_user}', to_jsonb($2::text)),
		db_user = $2 WHERE id = $1`, id, other)
	if err != nil {
		t.Fatal(err)
	}
	ap := a.approvals(t, time.Now)
	if _, err := ap.Approve(a.ctx, id, "alice", ""); err == nil {
		t.Fatal("a forged pending revocation was approved")
	}
	if !a.exists(t, user) || !a.exists(t, other) {
		t.Fatal("a forged pending revocation dropped a user")
	}
	if p, _ := pending.Get(a.ctx, a.st.Pool(), id); p.State != schemas.ApprovalPending {
		t.Errorf("state %s after a refused approval", p.State)
	}
}

// TestSweepResendsStranded: an approval whose command has no outcome (the
// approving process stopped between the decision and the revoker) is sent
// to the revoker again by the sweep, until its outcome is recorded.
func TestSweepResendsStranded(t *testing.T) {
	t.Parallel()
	a := newApprovalRig(t, "apstrand")
	user, id := a.pend(t, "ro")
	ap := a.approvals(t, time.Now)
	// What a crash after the decision's commit leaves.
	if _, err := a.st.Pool().Exec(a.ctx, `UPDATE pending_revocations SET state = 'approved', decided_by = 'alice',
		decided_at = now() - interval '10 minutes', approved_command = command WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	// Approving again is refused, and says the run can be resumed.
	if _, err := ap.Approve(a.ctx, id, "bob", ""); !errors.Is(err, approval.ErrAlreadyDecided) || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("approval of an interrupted approval: %v", err)
	}
	var sent []schemas.RevocationCommand
	submit := func(_ context.Context, cmds []schemas.RevocationCommand) error {
		sent = append(sent, cmds...)
		return nil
	}
	if _, resent, err := ap.Sweep(a.ctx, submit, time.Minute, 10); err != nil || resent != 1 || len(sent) != 1 || sent[0].ID != id {
		t.Fatalf("Sweep resent %d (%+v), %v", resent, sent, err)
	}
	x := a.executor.Execute(a.ctx, sent, func(int) bool { return true })
	if !operator.Gone(x[0]) || a.exists(t, user) {
		t.Fatalf("resent command: %+v", x[0])
	}
	sent = nil
	if _, resent, err := ap.Sweep(a.ctx, submit, time.Minute, 10); err != nil || resent != 0 {
		t.Fatalf("Sweep after the outcome resent %d, %v", resent, err)
	}
	if _, err := ap.Resume(a.ctx, id); !errors.Is(err, approval.ErrAlreadyDecided) {
		t.Errorf("resume after the outcome: %v", err)
	}
}

// TestResume: with no pipeline to resend it, an interrupted approval is
// finished by Resume: the same command, no new decision.
func TestResume(t *testing.T) {
	t.Parallel()
	a := newApprovalRig(t, "apresume")
	user, id := a.pend(t, "ro")
	ap := a.approvals(t, time.Now)
	if _, err := ap.Resume(a.ctx, id); !errors.Is(err, approval.ErrAlreadyDecided) {
		t.Fatalf("resume of a pending one: %v", err)
	}
	if _, err := a.st.Pool().Exec(a.ctx, `UPDATE pending_revocations SET state = 'approved', decided_by = 'alice',
		decided_at = now(), approved_command = command WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	got, err := ap.Resume(a.ctx, id)
	if err != nil || got.Executed == nil || !operator.Gone(*got.Executed) || got.Executed.Command.ID != id || a.exists(t, user) {
		t.Fatalf("Resume = %+v, %v", got.Executed, err)
	}
	if p, _ := pending.Get(a.ctx, a.st.Pool(), id); p.DecidedBy != "alice" || p.State != schemas.ApprovalApproved {
		t.Errorf("resume changed the decision: %+v", p)
	}
}
