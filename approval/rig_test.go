package approval_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// rig is a state store in its own schema and the test database as target
// "main", whose revoker only manages roles named v-<tag>-…, so no role of
// another test can ever be selected.
type rig struct {
	ctx   context.Context
	st    *store.Store
	admin *pgxpool.Pool
	tag   string
	sim   *vaultsim.Sim
	guard revoker.GuardConfig
}

func newRig(t *testing.T, tag string) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, "lg_approval")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := &rig{ctx: ctx, st: st, admin: pgtest.Pool(t), tag: tag}
	r.guard = revoker.GuardConfig{ManagedPattern: regexp.MustCompile("^v-" + tag + "-")}
	r.sim = &vaultsim.Sim{Pool: r.admin, Mount: "pg-" + tag, DisplayName: tag, EntityID: "ent-a-" + tag, RemoteAddress: "10.0.0.1"}
	return r
}

func (r *rig) apply(t *testing.T, ev schemas.LeaseEvent) {
	t.Helper()
	if _, err := r.st.Apply(r.ctx, store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) exists(t *testing.T, name string) bool {
	t.Helper()
	var ok bool
	if err := r.admin.QueryRow(r.ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func (r *rig) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := r.st.Pool().QueryRow(r.ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
