package observer

import (
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/observer/observed"
)

// TestSessionDiffAllocatesPerPassNotPerSession: a pass that sees the
// sessions the last one tracked allocates the pass's list of sessions and
// the set of those seen once each, sized for the snapshot, not grown a
// session at a time (at 5,000 sessions the growth was 4 MB a pass).
func TestSessionDiffAllocatesPerPassNotPerSession(t *testing.T) {
	const n, bound = 2000, 4
	roles, sessions := steadyTarget(n, n)
	d := &snapshotDiff{snap: Snapshot{Database: "main", Roles: roles, Sessions: sessions, Managed: managed}, now: dbTime(at(time.Minute)),
		open: map[sessionKey]sessionRow{}, present: map[uint32]int32{}, managed: make([]bool, len(roles))}
	for i, r := range roles {
		d.present[r.OID], d.managed[i] = int32(i), managed(r.Name)
	}
	for _, s := range sessions {
		s.BackendStart = dbTime(s.BackendStart)
		d.open[keyOf(s)] = sessionRow{DBSession: s, firstSeen: dbTime(at(0))}
	}
	allocs := testing.AllocsPerRun(5, func() {
		for k, r := range d.open { // a pass of its own each run
			r.seen = false
			d.open[k] = r
		}
		d.p = &observed.Pass{}
		d.diffSessions()
		if len(d.p.Sessions) != n {
			t.Fatalf("the pass reports %d sessions; want %d", len(d.p.Sessions), n)
		}
	})
	if allocs > bound {
		t.Errorf("a pass seeing %d tracked sessions allocated %.0f times diffing them; want at most %d", n, allocs, bound)
	}
}
