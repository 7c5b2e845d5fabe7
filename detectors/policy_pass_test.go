package detectors_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// switchPolicy is a policy source a test changes between passes; it counts
// the reads.
type switchPolicy struct {
	mu    sync.Mutex
	p     detectors.Policy
	reads int
}

func (s *switchPolicy) Policy(context.Context, store.Querier) (detectors.Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.p, nil
}

func (s *switchPolicy) set(scope detectors.Scope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.Version++
	s.p.Scope = scope
}

func (s *switchPolicy) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func newSwitchPolicy() *switchPolicy {
	m, _ := detectors.ParseModes("")
	return &switchPolicy{p: detectors.Policy{Version: 1, Modes: m}}
}

// TestObserverRulesFollowThePolicyEachPass: the observer's rules read the
// policy at every evaluation. With no scope, credential reuse is a pilot
// (would_drop, nothing queued); widened to everywhere, the same condition
// is enforced at the next pass; narrowed back, a new condition is a pilot
// again.
func TestObserverRulesFollowThePolicyEachPass(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pol := newSwitchPolicy()
	r, err := detectors.NewDBRules(detectors.DBRulesConfig{}, detectors.DBRulesDeps{Issuer: f.issuer, Sink: f.sink,
		Evidence: f.builder, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	reuse := func(id, user string, oid uint32, pid int32) *observed.Pass {
		f.lease(t, "postgres/creds/reporting/"+id, "main", user, f.now.Add(time.Hour))
		f.revoke(t, "postgres/creds/reporting/"+id, f.now.Add(-time.Hour))
		return &observed.Pass{Database: "main", ObservedAt: f.now, Coverage: f.now.Add(-2 * time.Hour),
			Roles:    []observed.Role{expiredRole(user, oid, f.now.Add(-time.Hour), f.now.Add(-time.Minute))},
			Sessions: []observed.Session{liveSession(pid, user, oid, f.now.Add(-time.Minute))}}
	}
	actionOf := func(rep observed.Report) string {
		for _, fd := range rep.Findings {
			if fd.Rule == detectors.RuleReuseAfterRevoke {
				return fd.Action
			}
		}
		return ""
	}
	first := reuse("p1", "v-p1", 16501, 601)
	rep, err := f.evaluate(t, r, first, false)
	if err != nil || actionOf(rep) != schemas.ActionWouldDrop || len(f.sink.all()) != 0 {
		t.Fatalf("no scope: %+v, %v, commands %v", rep, err, f.sink.all())
	}
	pol.set(detectors.Everywhere())
	rep, err = f.evaluate(t, r, first, false)
	if err != nil || actionOf(rep) != schemas.ActionRevocationRequested || len(f.sink.all()) != 1 {
		t.Fatalf("after the expansion: %+v, %v, commands %v", rep, err, f.sink.all())
	}
	pol.set(detectors.Scope{})
	rep, err = f.evaluate(t, r, reuse("p2", "v-p2", 16502, 602), false)
	if err != nil || actionOf(rep) != schemas.ActionWouldDrop || len(f.sink.all()) != 1 {
		t.Fatalf("after the rollback: %+v, %v, commands %v", rep, err, f.sink.all())
	}
	if pol.count() != 3 {
		t.Errorf("the policy was read %d times in 3 evaluations", pol.count())
	}
}

// TestAuditRulesReadThePolicyEveryPass: each of the audit rules' passes
// reads the policy in its own transaction, never kept for the next.
func TestAuditRulesReadThePolicyEveryPass(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pol := newSwitchPolicy()
	c := newClock(f.now)
	cfg := detectors.DefaultAuditRulesConfig()
	cfg.UnauditedWindow, cfg.Interval = auditWindow, 10*time.Millisecond
	a, err := detectors.NewAuditRules(cfg, detectors.AuditRulesDeps{Pool: f.st.Pool(), Evidence: f.builder, Clock: c.now,
		Issuer: f.issuer, Sink: f.sink, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := pol.count(); got != 4*i {
			t.Fatalf("after %d ticks the policy was read %d times, want %d (once per pass of each of the 4 passes)", i, got, 4*i)
		}
	}
}
