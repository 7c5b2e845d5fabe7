package vaultlink_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// TestLeaseConfirmer: a lease Vault holds is recorded as confirmed, and its
// expiry becomes Vault's when the database gave none; one Vault does not
// hold (a forged entry) is only marked as asked, and asked again later.
func TestLeaseConfirmer(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	held, forged := "database/creds/ro/"+strings.Repeat("h", 24), "database/creds/ro/"+strings.Repeat("f", 24)
	issued := r.clock.Now().Add(-time.Minute)
	var evs []schemas.LeaseEvent
	for _, id := range []string{held, forged} {
		evs = append(evs, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id,
			Mount: "database", Role: "ro", Database: "main", DBUser: "v-" + id[len(id)-3:], IssueTime: &issued,
			EventTime: issued, VaultRequestID: "req-" + id, Source: schemas.SourceRef{Transport: "test"}})
	}
	if _, err := r.st.Apply(ctx, store.Batch{Leases: evs}); err != nil {
		t.Fatal(err)
	}
	vaultExp := r.clock.Now().Add(time.Hour)
	r.vault.AddLease(held, vaulttest.Lease{IssueTime: issued, ExpireTime: vaultExp})
	c, err := vaultlink.NewLeaseConfirmer(vaultlink.ConfirmerConfig{}, r.st.Pool(), r.client(t, nil), r.logger(), r.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("pass = %d, %v; want 1 confirmed", n, err)
	}
	h, err := r.st.Lease(ctx, held)
	if err != nil || h.VaultSeenAt == nil || h.ExpireSource != schemas.ExpireFromVault || !h.ExpireAt.Equal(vaultExp) {
		t.Errorf("held lease = %+v, %v", h, err)
	}
	f, err := r.st.Lease(ctx, forged)
	if err != nil || f.VaultSeenAt != nil || f.ExpireAt != nil {
		t.Errorf("forged lease = %+v, %v", f, err)
	}
	// Neither is asked about again within the retry time.
	if n, err := c.Pass(ctx); err != nil || n != 0 || len(r.vault.Calls("lookup")) != 2 {
		t.Errorf("second pass = %d, %v; lookups %d", n, err, len(r.vault.Calls("lookup")))
	}
	// Vault now holds the other (its issue reached the log first); it is
	// asked again after the retry time and confirmed.
	r.vault.AddLease(forged, vaulttest.Lease{IssueTime: issued, ExpireTime: vaultExp})
	r.clock.Add(2 * time.Minute)
	if n, err := c.Pass(ctx); err != nil || n != 1 {
		t.Errorf("after the retry time = %d, %v", n, err)
	}
}
