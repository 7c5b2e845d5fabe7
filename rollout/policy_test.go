package rollout_test

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// TestBootstrapRecordsTheConfigurationOnce: processes starting together
// record the configured policy once, as version 1 by "configuration",
// with its evidence. A later start with another configuration changes
// nothing: it reports the drift.
func TestBootstrapRecordsTheConfigurationOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var wg sync.WaitGroup
	results := make([]rollout.Status, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = r.policies(t, r.open(t), "", "").Bootstrap(r.ctx)
		}()
	}
	wg.Wait()
	recorded := 0
	for i, st := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if st.Recorded {
			recorded++
		}
		if st.Current.Version != 1 || st.Current.Actor != rollout.ConfigurationActor || st.Drift || !st.Current.Scope.Empty() {
			t.Errorf("status %+v", st)
		}
	}
	if recorded != 1 || countPolicyEvents(t, r) != 1 {
		t.Errorf("version 1 recorded %d times, %d policy events; want 1 and 1", recorded, countPolicyEvents(t, r))
	}

	// Restarted with LEASEGUARD_ENFORCE_SCOPE=*: the recorded policy stays.
	st, err := r.policies(t, r.st, "*", "").Bootstrap(r.ctx)
	if err != nil || st.Recorded || !st.Drift || st.Current.Version != 1 || !st.Current.Scope.Empty() {
		t.Errorf("restart with another configuration: %+v, %v", st, err)
	}
	pol, err := r.policies(t, r.st, "*", "").Policy(r.ctx, r.st.Pool())
	if err != nil || pol.Scope.Contains("main", "postgres", "reporting") {
		t.Errorf("policy in force after a restart with scope *: %+v, %v (want nothing enforced)", pol, err)
	}
}

// TestChangesNeedAReasonAndAreEvidence: every change needs a reason (and an
// actor); each one is a new version with evidence naming its actor and
// reason; rollback returns to the previous version, an explicit one, or the
// configuration; the evidence chain verifies.
func TestChangesNeedAReasonAndAreEvidence(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.policies(t, r.st, "db:staging", "")
	if _, err := p.Bootstrap(r.ctx); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"expand, no reason":      only(p.Expand(r.ctx, rollout.Expand{Actor: "alice", Add: "*"})),
		"expand, blank reason":   only(p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "  ", Add: "*"})),
		"expand, no actor":       only(p.Expand(r.ctx, rollout.Expand{Reason: "x", Add: "*"})),
		"rollback, no reason":    only(p.Rollback(r.ctx, rollout.Rollback{Actor: "alice", ToConfiguration: true})),
		"expand, nothing named":  only(p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "x"})),
		"expand, bad scope":      only(p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "x", Add: "host:x"})),
		"expand, bad mode":       only(p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "x", Modes: "mass-revocation=enforce"})),
		"rollback before first":  only(p.Rollback(r.ctx, rollout.Rollback{Actor: "alice", Reason: "x"})),
		"rollback, two targets":  only(p.Rollback(r.ctx, rollout.Rollback{Actor: "alice", Reason: "x", To: 1, ToConfiguration: true})),
		"rollback, unknown rule": only(p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "x", Modes: "nope=enforce"})),
	} {
		if !errors.Is(err, rollout.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if n := countPolicyEvents(t, r); n != 1 {
		t.Fatalf("refused changes left %d policy events, want 1", n)
	}

	v2, err := p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "pilot signed off: CHG-1", Add: "db:orders",
		Modes: "orphan-role=approve"})
	if err != nil || v2.Version != 2 || v2.Scope.String() != "db:orders,db:staging" || v2.Modes.Mode(detectors.RuleOrphanRole) != schemas.ModeApprove {
		t.Fatalf("expand: %+v, %v", v2, err)
	}
	if _, err := p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "again", Add: "db:orders"}); !errors.Is(err, rollout.ErrNothingChanges) {
		t.Errorf("an expansion that changes nothing: %v", err)
	}
	if _, err := p.Expand(r.ctx, rollout.Expand{Actor: "carol", Reason: "stale", Add: "*", ExpectVersion: 1}); !errors.Is(err, rollout.ErrConflict) {
		t.Errorf("a change based on version 1 while 2 is in force: %v", err)
	}
	v3, err := p.Rollback(r.ctx, rollout.Rollback{Actor: "bob", Reason: "too wide: INC-9"})
	if err != nil || v3.Version != 3 || v3.RestoredVersion != 1 || v3.Scope.String() != "db:staging" || v3.Modes.Mode(detectors.RuleOrphanRole) != schemas.ModeObserve {
		t.Fatalf("rollback: %+v, %v", v3, err)
	}
	v4, err := p.Rollback(r.ctx, rollout.Rollback{Actor: "bob", Reason: "back to the expansion", To: 2})
	if err != nil || v4.Version != 4 || !v4.Equal(v2.Spec) {
		t.Fatalf("rollback to version 2: %+v, %v", v4, err)
	}
	v5, err := r.policies(t, r.st, "*", "").Rollback(r.ctx, rollout.Rollback{Actor: "dave", Reason: "adopt the new configuration", ToConfiguration: true})
	if err != nil || v5.Version != 5 || !v5.RestoredConfiguration || !v5.Scope.All {
		t.Fatalf("rollback to the configuration: %+v, %v", v5, err)
	}

	hist, err := p.History(r.ctx, 10)
	if err != nil || len(hist) != 5 || hist[0].Version != 5 || hist[4].Actor != rollout.ConfigurationActor {
		t.Fatalf("history: %+v, %v", hist, err)
	}
	events := policyEvents(t, r)
	want := []struct{ actor, reason string }{{"configuration", ""}, {"alice", "pilot signed off: CHG-1"},
		{"bob", "too wide: INC-9"}, {"bob", "back to the expansion"}, {"dave", "adopt the new configuration"}}
	if len(events) != len(want) {
		t.Fatalf("%d policy events, want %d", len(events), len(want))
	}
	for i, w := range want {
		if events[i].Actor.User.Name != w.actor || (w.reason != "" && events[i].Comment != w.reason) || events[i].Unmapped.Version != int64(i+1) {
			t.Errorf("event %d: %+v, want %s: %s", i, events[i], w.actor, w.reason)
		}
	}
	if events[2].Unmapped.Previous == nil || events[2].Unmapped.Previous.Scope != "db:orders,db:staging" {
		t.Errorf("the rollback's evidence does not say what it replaced: %+v", events[2].Unmapped)
	}
	if rep, err := evidence.VerifyOutbox(r.ctx, r.st.Pool(), evidence.VerifyOptions{}); err != nil || !rep.OK() || rep.Checked != 5 {
		t.Errorf("outbox verify = %+v, %v", rep, err)
	}
}

func only(_ rollout.Record, err error) error { return err }

type policyEvent struct {
	Actor struct {
		User struct{ Name string } `json:"user"`
	} `json:"actor"`
	Comment  string               `json:"comment"`
	Unmapped schemas.PolicyChange `json:"unmapped"`
}

func policyEvents(t *testing.T, r *rig) []policyEvent {
	t.Helper()
	rows, err := r.st.Pool().Query(r.ctx, `SELECT event FROM evidence_outbox WHERE type = $1 ORDER BY seq`, evidence.TypePolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []policyEvent
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var ev evidence.Event
		var pe policyEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(ev.Data, &pe); err != nil {
			t.Fatal(err)
		}
		out = append(out, pe)
	}
	return out
}

func countPolicyEvents(t *testing.T, r *rig) int { return len(policyEvents(t, r)) }

// TestRollbackStopsEnforcementOnTwoProcesses: two detectors, each with its
// own connection pool and policy store, share the state store. A change
// recorded through either applies to both at their next pass: with no
// scope configured both only pilot (would_drop); after an expansion both
// enforce (and the lease the pilot judged is enforced too); after a
// rollback, a lease newly due on either is again only would_drop.
func TestRollbackStopsEnforcementOnTwoProcesses(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	stA, stB := r.open(t), r.open(t)
	polA, polB := r.policies(t, stA, "", ""), r.policies(t, stB, "", "")
	if _, err := polA.Bootstrap(r.ctx); err != nil {
		t.Fatal(err)
	}
	a, sinkA := r.detector(t, stA, polA)
	b, sinkB := r.detector(t, stB, polB)

	piloted := r.dueUser(t, "piloted")
	tick(t, r.ctx, a)
	tick(t, r.ctx, b)
	if got := r.action(t, piloted); got != schemas.ActionWouldDrop || len(sinkA.users())+len(sinkB.users()) != 0 {
		t.Fatalf("no scope: %s, commands %v %v; want would_drop and none", got, sinkA.users(), sinkB.users())
	}

	if _, err := polB.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "CHG-1", Add: "*"}); err != nil {
		t.Fatal(err)
	}
	tick(t, r.ctx, a) // A judges the piloted lease again, under the expansion B recorded
	onB := r.dueUser(t, "on-b")
	tick(t, r.ctx, b)
	if !slices.Equal(sinkA.users(), []string{piloted}) || !slices.Equal(sinkB.users(), []string{onB}) {
		t.Fatalf("after expand: A queued %v, B %v; want [%s] and [%s]", sinkA.users(), sinkB.users(), piloted, onB)
	}
	// The enforcement is a finding of its own, with its evidence, beside
	// the pilot's.
	if got := r.action(t, piloted); got != schemas.ActionRevocationRequested {
		t.Errorf("after expand: the piloted lease's last finding is %s, want revocation_requested", got)
	}

	if _, err := polA.Rollback(r.ctx, rollout.Rollback{Actor: "bob", Reason: "INC-9"}); err != nil {
		t.Fatal(err)
	}
	afterA, afterB := r.dueUser(t, "after-a"), r.dueUser(t, "after-b")
	tick(t, r.ctx, b) // B judges both newly due leases
	afterOnA := r.dueUser(t, "after-on-a")
	tick(t, r.ctx, a)
	for _, u := range []string{afterA, afterB, afterOnA} {
		if got := r.action(t, u); got != schemas.ActionWouldDrop {
			t.Errorf("after rollback: %s is %s, want would_drop", u, got)
		}
	}
	if len(sinkA.users()) != 1 || len(sinkB.users()) != 1 {
		t.Errorf("after rollback commands were queued: A %v, B %v", sinkA.users(), sinkB.users())
	}
}

// TestRequiresApprovalFollowsThePolicy: the revoker asks, for each command,
// whether its rule is in approve mode in the policy in force, so a rule
// moved from approve to enforce at run time is carried out without an
// owner, and one moved the other way is not. When the policy cannot be
// read, it says so (the revoker hands the command back) rather than
// answering.
func TestRequiresApprovalFollowsThePolicy(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.policies(t, r.st, "*", detectors.RuleLeaseExpired+"=approve")
	if _, err := p.Bootstrap(r.ctx); err != nil {
		t.Fatal(err)
	}
	requires := func(p *rollout.Policies, rule string) bool {
		t.Helper()
		ok, err := p.RequiresApproval(r.ctx, rule)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !requires(p, detectors.RuleLeaseExpired) || requires(p, detectors.RuleGhostSession) {
		t.Fatal("the configured approve mode is not in force")
	}
	if _, err := p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "CHG-2", Modes: detectors.RuleLeaseExpired + "=enforce," +
		detectors.RuleGhostSession + "=approve"}); err != nil {
		t.Fatal(err)
	}
	if requires(p, detectors.RuleLeaseExpired) || !requires(p, detectors.RuleGhostSession) {
		t.Error("a mode changed at run time is not what the revoker is told")
	}
	closed := r.open(t)
	gone := r.policies(t, closed, "*", "")
	closed.Close()
	if _, err := gone.RequiresApproval(r.ctx, detectors.RuleOrphanRole); err == nil {
		t.Error("an unreadable policy is answered for")
	}
}

// TestPolicyWithoutEvidenceIsRefused: a version written into the state
// store behind leaseguard's back (no evidence in the outbox) is not acted
// under: reading it fails, so the passes fail instead of enforcing.
func TestPolicyWithoutEvidenceIsRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.policies(t, r.st, "", "")
	if _, err := p.Bootstrap(r.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.Pool().Exec(r.ctx, `INSERT INTO rollout_policies (version, kind, scope, modes, actor, reason, changed_at, evidence_id)
		VALUES (2, 'expand', '*', '{}', 'mallory', 'because', now(), 'no-such-event')`); err != nil {
		t.Fatal(err)
	}
	if pol, err := p.Policy(r.ctx, r.st.Pool()); err == nil {
		t.Fatalf("a version without evidence is in force: %+v", pol)
	}
	d, _ := r.detector(t, r.st, p)
	r.dueUser(t, "forged")
	if _, err := d.Tick(r.ctx); err == nil {
		t.Error("a detector pass ran under a version without evidence")
	}
}

// TestChangeWaitsForPassesInFlight: a pass holds the policy it read until
// it commits; a change recorded meanwhile waits for it, so the pilot
// judgement the pass records is armed again by the change (and enforced at
// the next pass), not left judged under the old policy.
func TestChangeWaitsForPassesInFlight(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.policies(t, r.st, "", "")
	if _, err := p.Bootstrap(r.ctx); err != nil {
		t.Fatal(err)
	}
	user := r.dueUser(t, "inflight")
	lease := "postgres/creds/reporting/" + r.tag + "inflight"

	// A pass in flight: it read the policy (a pilot), judges the lease and
	// records its pilot finding, and has not committed yet.
	tx, err := r.st.Pool().Begin(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(r.ctx) //nolint:errcheck // no-op after commit
	if _, err := p.Policy(r.ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkJudged(r.ctx, tx, []string{lease}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := store.InsertFinding(r.ctx, tx, schemas.Finding{Type: schemas.FindingType, ID: "pilot-" + r.tag,
		Rule: detectors.RuleLeaseExpired, Severity: schemas.SeverityHigh, Mode: schemas.ModeEnforce, DetectedAt: time.Now(),
		Database: "main", DBUser: user, LeaseID: lease, Summary: "in flight", Action: schemas.ActionWouldDrop}, ""); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := p.Expand(r.ctx, rollout.Expand{Actor: "alice", Reason: "CHG-3", Add: "*"})
		done <- err
	}()
	// The change waits on the policy's lock (or, without one, is done).
	deadline := time.Now().Add(20 * time.Second)
	for waiting := false; !waiting; {
		select {
		case err := <-done:
			done <- err
			waiting = true
		default:
			var n int
			if err := r.admin.QueryRow(r.ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
				AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('leaseguard.rollout.policy:' || $1, 0)`,
				r.schema).Scan(&n); err != nil {
				t.Fatal(err)
			}
			waiting = n > 0
		}
		if time.Now().After(deadline) {
			t.Fatal("the change neither waited nor finished")
		}
	}
	if err := tx.Commit(r.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var judged bool
	if err := r.st.Pool().QueryRow(r.ctx, `SELECT expiry_judged_at IS NOT NULL FROM leases WHERE lease_id = $1`, lease).Scan(&judged); err != nil {
		t.Fatal(err)
	}
	if judged {
		t.Error("the lease a pass in flight piloted stays judged after the expansion: it would never be enforced")
	}
}
