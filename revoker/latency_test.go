package revoker_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
)

// TestExpiryToDropLatency: a drop of an expired lease's user observes the
// time from the lease's expiry to the drop; a drop before the expiry, or
// of a lease with no known expiry, observes nothing.
func TestExpiryToDropLatency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := pgtest.Pool(t)
	dropAt := time.Now().UTC().Truncate(time.Second)
	rig := newExecRig(t, admin, revoker.DropperConfig{Clock: func() time.Time { return dropAt }})
	st, exec, signer, reg := rig.st, rig.exec, rig.signer, rig.reg
	sfx := pgtest.Suffix()
	// expired 150 s before the drop; expiring after it; no expiry known.
	leases := map[string]*time.Time{
		"v-lat-expired-" + sfx: new(dropAt.Add(-150 * time.Second)),
		"v-lat-early-" + sfx:   new(dropAt.Add(time.Hour)),
		"v-lat-unknown-" + sfx: nil,
	}
	for user, expire := range leases {
		if _, err := admin.Exec(ctx, `CREATE ROLE "`+user+`" LOGIN`); err != nil {
			t.Fatal(err)
		}
		pgtest.DropRoleAtCleanup(t, admin, user)
		if _, err := st.Pool().Exec(ctx, `INSERT INTO leases (lease_id, state, first_seen_at, expire_at, expire_source)
			VALUES ($1, 'active', $2, $3::timestamptz, CASE WHEN $3::timestamptz IS NULL THEN NULL ELSE 'event' END)`,
			"database/creds/app/"+user, dropAt.Add(-time.Hour), expire); err != nil {
			t.Fatal(err)
		}
		cmd := cmdtest.Drop(t, admin, "main", user)
		cmd.LeaseID = "database/creds/app/" + user
		if err := signer.Sign(&cmd); err != nil {
			t.Fatal(err)
		}
		for _, e := range exec.Execute(ctx, []schemas.RevocationCommand{cmd}, nil) {
			if !e.Recorded || e.Result.Outcome != "dropped" {
				t.Fatalf("%s: %+v", user, e)
			}
		}
	}
	count, sum := histogram(t, reg, "leaseguard_revocation_expiry_to_drop_seconds")
	if count != 1 || sum != 150 {
		t.Errorf("expiry to drop: %d observations, sum %g s; want 1 of 150 s", count, sum)
	}
}

// histogram reads a histogram's sample count and sum from reg.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0, 0
}

// TestOutcomeSeriesExportedAtStart: the outcomes of a revoker that has
// revoked nothing yet are exported at 0, so that dashboards show them and
// increase() sees the first failure.
func TestOutcomeSeriesExportedAtStart(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	revoker.NewMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "leaseguard_revocations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if m.GetCounter().GetValue() == 0 && l["guard"] == "" {
				got[l["outcome"]] = true
			}
		}
	}
	for _, o := range []string{"dropped", "already_absent", "failed"} {
		if !got[o] {
			t.Errorf("leaseguard_revocations_total{outcome=%q,guard=\"\"} is not exported at 0 (have %v)", o, got)
		}
	}
}
