package vaultlink_test

import (
	"context"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// revokeRig is a ledger with leases and two audit devices.
type revokeRig struct {
	*rig
	salts map[string][]byte
}

func newRevokeRig(t *testing.T) *revokeRig {
	r := &revokeRig{rig: newRig(t), salts: map[string][]byte{"file": []byte("file-salt"), "socket": []byte("socket-salt")}}
	for dev, salt := range r.salts {
		r.vault.AddAuditDevice(dev, salt)
	}
	return r
}

func (r *revokeRig) apply(t *testing.T, evs ...schemas.LeaseEvent) {
	t.Helper()
	if _, err := r.st.Apply(context.Background(), store.Batch{Leases: evs}); err != nil {
		t.Fatal(err)
	}
}

func issuedEvent(id string, at time.Time, expire *time.Time) schemas.LeaseEvent {
	return schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id, Mount: "postgres", Role: "app",
		Database: "main", DBUser: "v-user-" + id[len(id)-8:], IssueTime: &at, ExpireTime: expire, EventTime: at,
		VaultRequestID: "req-issue-" + id, Source: schemas.SourceRef{Transport: "socket", Offset: 1}}
}

// hashedRevoke is what ingest makes of a sys/leases/revoke with the lease
// id in the body, as device logged it.
func (r *revokeRig) hashedRevoke(device, leaseID, requestID string, at time.Time) schemas.LeaseEvent {
	return schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: vaulttest.Hash(r.salts[device], leaseID),
		LeaseIDHMAC: true, RevokeBy: schemas.RevokeByBody, EventTime: at, VaultRequestID: requestID,
		Source: schemas.SourceRef{Transport: device, Subject: "vault.audit." + device, Offset: 42}}
}

func (r *revokeRig) linker(t *testing.T, cfg vaultlink.RevocationLinkerConfig) *vaultlink.RevocationLinker {
	t.Helper()
	l, err := vaultlink.NewRevocationLinker(cfg, r.st.Pool(), r.st, r.client(t, nil), r.logger(), nil, r.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// hashedIDs returns the lease ids hashed through Vault since call n.
func (r *revokeRig) hashedIDs(n int) map[string]int {
	out := map[string]int{}
	for _, c := range r.vault.Calls("audit-hash")[n:] {
		out[c.Arg]++
	}
	return out
}

// A revocation through the API body, logged by both devices as HMACs, is
// linked on demand: the leases issued before it and not ended before it
// are hashed (newest first), the lease whose id matches is revoked in the
// ledger exactly as a plain revocation by body would revoke it, one lease
// event for both devices' entries, and both links are recorded as "hmac"
// with their device. Leases issued after the revocation or expired before
// it are never sent to Vault; each lease is hashed once per device; a
// revocation of a lease the ledger does not know stays unlinked and costs
// nothing more once the candidates are hashed; Vault sealed links nothing
// and the next pass does.
func TestRevocationLinkerOnDemand(t *testing.T) {
	t.Parallel()
	r := newRevokeRig(t)
	ctx := context.Background()
	now := r.clock.Now()
	revokedAt := now.Add(-10 * time.Minute)
	target, sibling, later, ended, plain := newLeaseID("app"), newLeaseID("app"), newLeaseID("app"), newLeaseID("app"), newLeaseID("app")
	endedAt := revokedAt.Add(-time.Hour)
	r.apply(t,
		issuedEvent(target, revokedAt.Add(-30*time.Minute), nil),
		issuedEvent(sibling, revokedAt.Add(-20*time.Minute), nil),
		issuedEvent(later, revokedAt.Add(time.Minute), nil),
		issuedEvent(ended, revokedAt.Add(-2*time.Hour), &endedAt),
		schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseExpired, LeaseID: ended, EventTime: endedAt,
			Source: schemas.SourceRef{Transport: "test"}},
		issuedEvent(plain, revokedAt.Add(-30*time.Minute), nil),
	)
	// The reference: the same revocation named in plain, for another lease.
	r.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: plain, RevokeBy: schemas.RevokeByBody,
		EventTime: revokedAt, VaultRequestID: "req-plain", Mount: "postgres", Role: "app", Source: schemas.SourceRef{Transport: "test"}})
	unknown := newLeaseID("app")
	r.apply(t, r.hashedRevoke("socket", target, "req-revoke", revokedAt), r.hashedRevoke("file", target, "req-revoke", revokedAt),
		r.hashedRevoke("socket", unknown, "req-unknown", revokedAt.Add(-time.Minute)))

	lk := r.linker(t, vaultlink.RevocationLinkerConfig{Devices: []string{"socket", "file"}, Ahead: -1, Wanted: 10})
	r.vault.SetSealed(true)
	if links, err := lk.Pass(ctx); err == nil || len(links) != 0 {
		t.Fatalf("sealed: links %+v, err %v", links, err)
	}
	r.vault.SetSealed(false)
	calls := len(r.vault.Calls("audit-hash"))
	links, err := lk.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 2 || links[0].LeaseID != target || links[1].LeaseID != target {
		t.Fatalf("links = %+v", links)
	}
	hashed := r.hashedIDs(calls)
	if hashed[target] != 2 || hashed[sibling] != 2 || hashed[later] != 0 || hashed[ended] != 0 || hashed[plain] != 0 {
		t.Errorf("hashed %v: want target and sibling through both devices, nothing issued after or ended before", hashed)
	}
	got, err := r.st.Lease(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	want, err := r.st.Lease(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateRevoked || got.RevokeMethod != schemas.RevokeByBody || got.RevokedAt == nil || !got.RevokedAt.Equal(revokedAt) ||
		got.LastEvent != want.LastEvent || !got.LastEventAt.Equal(*want.LastEventAt) || got.State != want.State || got.RevokeMethod != want.RevokeMethod {
		t.Errorf("linked lease %+v, plainly revoked lease %+v", got, want)
	}
	if l, err := r.st.Lease(ctx, sibling); err != nil || l.State != store.StateActive {
		t.Errorf("sibling = %+v, %v", l, err)
	}
	var events int
	var transport string
	if err := r.st.Pool().QueryRow(ctx, `SELECT count(*), min(source->>'transport') FROM lease_events
		WHERE lease_id = $1 AND kind = 'revoked' AND NOT lease_id_hmac`, target).Scan(&events, &transport); err != nil {
		t.Fatal(err)
	}
	if events != 1 || (transport != "socket" && transport != "file") {
		t.Errorf("%d revoked events for the lease, source %q; want one, from a device's message", events, transport)
	}
	ls, err := vaultlink.RevocationLinksOf(ctx, r.st.Pool(), target)
	if err != nil || len(ls) != 2 {
		t.Fatalf("links of %s: %+v, %v", target, ls, err)
	}
	devices := map[string]bool{}
	for _, l := range ls {
		devices[l.Device] = true
		if l.Method != "hmac" || l.LeaseIDHMAC != vaulttest.Hash(r.salts[l.Device], target) || l.EventID == "" || !l.RevokedAt.Equal(revokedAt) {
			t.Errorf("link %+v", l)
		}
	}
	if !devices["file"] || !devices["socket"] || ls[0].EventID != ls[1].EventID {
		t.Errorf("links %+v: want one per device, one event", ls)
	}

	// Nothing left to hash for the revocation nobody can link: passes cost
	// no Vault call, and it stays unlinked.
	calls = len(r.vault.Calls("audit-hash"))
	for range 2 {
		if links, err := lk.Pass(ctx); err != nil || len(links) != 0 {
			t.Fatalf("links %+v, err %v", links, err)
		}
	}
	if n := len(r.vault.Calls("audit-hash")) - calls; n != 0 {
		t.Errorf("%d more audit-hash calls for leases already hashed", n)
	}
	if p, err := vaultlink.HashedRevocationsPending(ctx, r.st.Pool(), now.Add(-24*time.Hour)); err != nil || p.Count != 1 {
		t.Errorf("pending %+v, %v; want the unknown lease's revocation", p, err)
	}
	// Its lease's issue entry arrives late (issued before the revocation):
	// the search, exhausted, is made again after Recheck, and links it.
	r.apply(t, issuedEvent(unknown, revokedAt.Add(-3*time.Hour), nil))
	if links, err := lk.Pass(ctx); err != nil || len(links) != 0 || len(r.vault.Calls("audit-hash")) != calls {
		t.Fatalf("within the recheck interval: links %+v, err %v, %d calls", links, err, len(r.vault.Calls("audit-hash"))-calls)
	}
	r.clock.Add(time.Minute)
	links, err = lk.Pass(ctx)
	if err != nil || len(links) != 1 || links[0].LeaseID != unknown || links[0].Device != "socket" {
		t.Fatalf("after the recheck interval: links %+v, err %v", links, err)
	}
	if hashed := r.hashedIDs(calls); len(hashed) != 1 || hashed[unknown] != 2 {
		t.Errorf("hashed %v, want the late lease through both devices", hashed)
	}
}

// Newly issued leases are hashed ahead at a bounded rate, newest first, so
// a revocation that arrives later is linked without asking Vault.
func TestRevocationLinkerAhead(t *testing.T) {
	t.Parallel()
	r := newRevokeRig(t)
	ctx := context.Background()
	now := r.clock.Now()
	var ids []string
	for i := range 5 {
		id := newLeaseID("app")
		ids = append(ids, id)
		r.apply(t, issuedEvent(id, now.Add(time.Duration(i-10)*time.Minute), nil))
	}
	// Issued before the window of newly issued leases: never hashed ahead.
	old := newLeaseID("app")
	r.apply(t, issuedEvent(old, now.Add(-2*time.Hour), nil))
	lk := r.linker(t, vaultlink.RevocationLinkerConfig{Devices: []string{"file"}, Ahead: 2})
	if _, err := lk.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if hashed := r.hashedIDs(0); len(hashed) != 2 || hashed[ids[4]] != 1 || hashed[ids[3]] != 1 {
		t.Fatalf("first pass hashed %v, want the two newest", hashed)
	}
	for range 3 {
		if _, err := lk.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if hashed := r.hashedIDs(0); len(hashed) != 5 || hashed[old] != 0 {
		t.Fatalf("hashed %v, want the five new leases once, not the old one", hashed)
	}
	for id, n := range r.hashedIDs(0) {
		if n != 1 {
			t.Errorf("%s hashed %d times", id, n)
		}
	}
	calls := len(r.vault.Calls("audit-hash"))
	r.apply(t, r.hashedRevoke("file", ids[1], "req-r", now.Add(-time.Minute)))
	links, err := lk.Pass(ctx)
	if err != nil || len(links) != 1 || links[0].LeaseID != ids[1] || links[0].Device != "file" {
		t.Fatalf("links %+v, %v", links, err)
	}
	if n := len(r.vault.Calls("audit-hash")) - calls; n != 0 {
		t.Errorf("%d audit-hash calls to link a revocation of a lease hashed ahead", n)
	}
	if l, err := r.st.Lease(ctx, ids[1]); err != nil || l.State != store.StateRevoked || l.RevokeMethod != schemas.RevokeByBody {
		t.Errorf("lease = %+v, %v", l, err)
	}
}
