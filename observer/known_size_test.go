package observer

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/observer/observed"
)

// vaultRoles are n roles named as Vault's default template names them
// (about 50 bytes), each with a validity of its own, as a read of
// pg_roles gives them (UTC, microseconds).
func vaultRoles(n int) []observed.DBRole {
	out := make([]observed.DBRole, n)
	for i := range out {
		until := dbTime(at(30 * 24 * time.Hour).Add(time.Duration(i) * time.Second))
		out[i] = observed.DBRole{OID: uint32(30000 + i), Name: fmt.Sprintf("v-token-reporting-%020d-%d", i, 1764000000+i),
			CanLogin: true, ValidUntil: &until}
	}
	return out
}

// heapAfterGC is the live heap.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestKnownRolesRetainLittlePerRole: what a pass keeps of each present
// role for the next pass (knownRoles, kept between passes) stays small
// and does not hold the role's name. It held the role's row as the state
// store has it, the name, a validity of its own and a map slot: about 150
// bytes a role, 15 MB of the process's live heap at 100,000 roles, doubled
// in its RSS by the collector's headroom.
func TestKnownRolesRetainLittlePerRole(t *testing.T) {
	const n, bound = 20_000, 64
	s := newStore(t)
	ctx := context.Background()
	var known *knownRoles
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		var err error
		_, known, err = applySnapshotKnown(ctx, tx, Snapshot{Database: "main", ObservedAt: at(0), Roles: vaultRoles(n), Managed: managed}, nil)
		return err
	})
	if err != nil {
		t.Fatalf("apply snapshot: %v", err)
	}
	held := heapAfterGC()
	if known == nil {
		t.Fatal("no known roles")
	}
	runtime.KeepAlive(known)
	known = nil
	freed := heapAfterGC()
	if held < freed {
		t.Fatalf("heap grew when the known roles were dropped: %d → %d bytes", held, freed)
	}
	per := float64(held-freed) / n
	t.Logf("known roles retain %.0f bytes a role", per)
	if per > bound {
		t.Errorf("known roles retain %.0f bytes a role; want at most %d", per, bound)
	}
}
