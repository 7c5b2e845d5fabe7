package observer

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestFirstPassListsItsNewRolesOnce: a first pass reports an event for
// every managed role (the pass keeps them, for its report), and lists the
// roles the next pass will know. Both lists were grown an entry at a
// time, and at 100,000 roles the old and new arrays of events (about 17
// and 21 MB) were held at once near the end of the pass, the peak of a
// process that makes a first pass. They are made at the number of roles
// new to the pass, so each is exactly as large as it is long. (Counted as
// bytes allocated a role, the test depended on the build: the race
// detector's allocations are larger.)
func TestFirstPassListsItsNewRolesOnce(t *testing.T) {
	const n = 20_000
	s := newStore(t)
	ctx := context.Background()
	var pass, passCap, known, knownCap int
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		p, k, err := applySnapshotKnown(ctx, tx, Snapshot{Database: "main", ObservedAt: at(0), Roles: vaultRoles(n), Managed: managed}, nil)
		if err == nil {
			pass, passCap, known, knownCap = len(p.RoleEvents), cap(p.RoleEvents), len(k.roles), cap(k.roles)
		}
		return err
	})
	if err != nil {
		t.Fatalf("apply snapshot: %v", err)
	}
	if pass != n || known != n {
		t.Fatalf("a first pass over %d roles reported %d role events and knows %d roles", n, pass, known)
	}
	if passCap != n || knownCap != n {
		t.Errorf("a first pass over %d roles made room for %d role events and %d known roles: grown, not made at their number", n, passCap, knownCap)
	}
}
