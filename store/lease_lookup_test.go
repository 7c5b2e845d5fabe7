package store

import (
	"context"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

func TestLeaseLookupsForObserver(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	applyEvents(t, s,
		issued("database/creds/app/aaaa", at(0), withUser("v-plain", false)),
		issued("database/creds/app/bbbb", at(time.Minute), withUser("v-plain", false), func(e *schemas.LeaseEvent) { e.Database = "other" }),
		issued("database/creds/app/cccc", at(2*time.Minute), withUser("hmac-sha256:00ff", true)),
		issued("database/creds/app/dddd", at(time.Hour), withUser("hmac-sha256:11ee", true)),
	)
	m, err := LeasesNamingUsers(ctx, s.Pool(), []string{"v-plain", "v-none", "hmac-sha256:00ff"})
	if err != nil {
		t.Fatal(err)
	}
	if ls := m["v-plain"]; len(ls) != 2 || ls[0].LeaseID != "database/creds/app/bbbb" {
		t.Errorf("v-plain leases = %+v (want both targets, newest first)", ls)
	}
	if len(m["v-none"]) != 0 || len(m["hmac-sha256:00ff"]) != 0 {
		t.Errorf("unexpected leases: %+v", m)
	}
	hl, err := HMACLeases(ctx, s.Pool(), []string{"main"}, at(time.Minute), at(10*time.Minute))
	if err != nil || len(hl) != 1 || hl[0].LeaseID != "database/creds/app/cccc" {
		t.Errorf("hmac leases = %+v, %v", hl, err)
	}
}
