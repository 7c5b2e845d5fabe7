package observer

import (
	"context"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestFirstPassListsItsNewRolesOnce: a first pass reports an event for
// every managed role (the pass keeps them, for its report), and lists the
// roles the next pass will know. Both lists were grown an entry at a
// time, about 800 bytes a role of the 5,700 a first pass allocated (the
// rest is the writes, encoded a chunk at a time), and at 100,000 roles
// the old and new arrays of events (about 17 and 21 MB) were held at once
// near the end of the pass, the peak of a process that makes a first
// pass. They are made at the number of roles new to the pass.
func TestFirstPassListsItsNewRolesOnce(t *testing.T) {
	const n, bound = 20_000, 5300
	s := newStore(t)
	ctx := context.Background()
	roles := vaultRoles(n)
	var before, after runtime.MemStats
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		runtime.ReadMemStats(&before)
		_, _, err := applySnapshotKnown(ctx, tx, Snapshot{Database: "main", ObservedAt: at(0), Roles: roles, Managed: managed}, nil)
		runtime.ReadMemStats(&after)
		return err
	})
	if err != nil {
		t.Fatalf("apply snapshot: %v", err)
	}
	per := float64(after.TotalAlloc-before.TotalAlloc) / n
	t.Logf("a first pass allocated %.0f bytes a role", per)
	if per > bound {
		t.Errorf("a first pass over %d roles allocated %.0f bytes a role; want at most %d", n, per, bound)
	}
}
