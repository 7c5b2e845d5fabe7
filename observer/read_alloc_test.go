package observer

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestRoleListAllocatesOnceForItsSize: the roles read from pg_roles go
// into a list made for as many as the last pass saw, their validities
// into one block: read one at a time, 100,000 roles grew the list a step
// at a time (about 16 MB allocated for a list of 3 MB) and allocated each
// validity apart (100,000 objects for the collector a pass).
func TestRoleListAllocatesOnceForItsSize(t *testing.T) {
	const n = 5000
	until := pgtype.Timestamptz{Time: at(time.Hour), Valid: true}
	var l roleList
	allocs := testing.AllocsPerRun(5, func() {
		l = newRoleList(n)
		for i := range n {
			l.add(uint32(i), "", until, true, false)
		}
	})
	if allocs > 2 {
		t.Errorf("listing %d roles read allocated %.0f times; want 2 (the list and the validities)", n, allocs)
	}
	if len(l.roles) != n || l.roles[n-1].ValidUntil == nil || !l.roles[n-1].ValidUntil.Equal(at(time.Hour)) {
		t.Errorf("the list holds %d roles; want %d, each valid until %v", len(l.roles), n, at(time.Hour))
	}
	// More roles than the last pass saw are listed all the same.
	l = newRoleList(1)
	for i := range 3 {
		l.add(uint32(i), "", until, true, false)
	}
	if len(l.roles) != 3 || !l.roles[0].ValidUntil.Equal(at(time.Hour)) {
		t.Errorf("a list made for 1 role holds %d after 3 were added; want 3", len(l.roles))
	}
}
