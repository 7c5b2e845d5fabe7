package vaultlink_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// Managed role names are hashed through the audit device; the HMAC'd lease
// whose audit entry carried that HMAC gets its plain user, linked "hmac";
// unmanaged names are never sent to Vault; Vault down links nothing and the
// next pass does.
func TestHMACResolverLinksLeases(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	salt := []byte("device-salt")
	r.vault.AddAuditDevice("file", salt)
	now := r.clock.Now()
	users := []string{"v-token-report-AbCdEfGhIjKlMnOpQrSt-1795634398", "v-token-report-ZyXwVuTsRqPoNmLkJiHg-1795634399", "app_owner"}
	for i, u := range users {
		if _, err := r.st.Pool().Exec(ctx, `INSERT INTO db_roles (database, oid, rolname, can_login, superuser, first_seen_at, changed_at)
			VALUES ('main', $1, $2, true, false, $3, $3)`, 30000+i, u, now); err != nil {
			t.Fatal(err)
		}
	}
	lease := func(id, user string) schemas.LeaseEvent {
		issued := now.Add(-time.Minute)
		return schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id, Mount: "postgres", Role: "reporting",
			Database: "main", DBUser: vaulttest.Hash(salt, user), DBUserHMAC: true, DisplayName: "token", IssueTime: &issued,
			EventTime: issued, VaultRequestID: "req-" + id, Source: schemas.SourceRef{Transport: "test"}}
	}
	first, other := newLeaseID("reporting"), newLeaseID("reporting")
	// other's user is no role of the target: it stays HMAC'd.
	if _, err := r.st.Apply(ctx, store.Batch{Leases: []schemas.LeaseEvent{lease(first, users[0]), lease(other, "v-token-report-gone")}}); err != nil {
		t.Fatal(err)
	}
	c := r.client(t, nil)
	res, err := vaultlink.NewHMACResolver(vaultlink.HMACResolverConfig{Devices: []string{"file"}, ManagedPattern: regexp.MustCompile(`^v-`)},
		r.st.Pool(), c, r.logger(), nil, r.clock.Now)
	if err != nil {
		t.Fatal(err)
	}

	r.vault.SetSealed(true)
	if links, err := res.Pass(ctx); err == nil || len(links) != 0 {
		t.Fatalf("sealed: links %+v, err %v", links, err)
	}
	r.vault.SetSealed(false)
	links, err := res.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].LeaseID != first || links[0].DBUser != users[0] || links[0].Method != "hmac" {
		t.Fatalf("links = %+v", links)
	}
	for _, call := range r.vault.Calls("audit-hash") {
		if call.Arg == "app_owner" {
			t.Error("an unmanaged role name was sent to Vault")
		}
	}
	l, err := r.st.Lease(ctx, first)
	if err != nil || l.DBUser != users[0] || l.DBUserHMAC {
		t.Fatalf("linked lease = %+v, %v", l, err)
	}
	if l, err := r.st.Lease(ctx, other); err != nil || !l.DBUserHMAC {
		t.Errorf("other lease = %+v, %v", l, err)
	}
	m, err := vaultlink.LinkMethods(ctx, r.st.Pool(), []string{first, other})
	if err != nil || m[first] != "hmac" || m[other] != "" {
		t.Errorf("link methods = %v, %v", m, err)
	}
	// A lease whose audit entry arrives after the name was hashed is linked
	// without asking Vault again.
	late := newLeaseID("reporting")
	if _, err := r.st.Apply(ctx, store.Batch{Leases: []schemas.LeaseEvent{lease(late, users[1])}}); err != nil {
		t.Fatal(err)
	}
	hashed := len(r.vault.Calls("audit-hash"))
	links, err = res.Pass(ctx)
	if err != nil || len(links) != 1 || links[0].LeaseID != late || len(r.vault.Calls("audit-hash")) != hashed {
		t.Errorf("late lease: links %+v, err %v, hashes %d→%d", links, err, hashed, len(r.vault.Calls("audit-hash")))
	}
}

// Each audit device hashes with its own salt and the ledger keeps whichever
// device's HMAC arrived first: with both devices listed, a lease carrying
// the socket's HMAC and one carrying the file's are both linked, each
// recorded with its device; with the file device alone, the socket's is
// not (the single-device configuration still works for its own HMACs).
func TestHMACResolverEveryDevice(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	fileSalt, socketSalt := []byte("file-salt"), []byte("socket-salt")
	r.vault.AddAuditDevice("file", fileSalt)
	r.vault.AddAuditDevice("socket", socketSalt)
	now := r.clock.Now()
	viaSocket, viaFile := "v-token-app-"+pgtest.Suffix()+"-1", "v-token-app-"+pgtest.Suffix()+"-2"
	for i, u := range []string{viaSocket, viaFile} {
		if _, err := r.st.Pool().Exec(ctx, `INSERT INTO db_roles (database, oid, rolname, can_login, superuser, first_seen_at, changed_at)
			VALUES ('main', $1, $2, true, false, $3, $3)`, 31000+i, u, now); err != nil {
			t.Fatal(err)
		}
	}
	if vaulttest.Hash(fileSalt, viaSocket) == vaulttest.Hash(socketSalt, viaSocket) {
		t.Fatal("the two devices hash alike")
	}
	issued := now.Add(-time.Minute)
	lease := func(id, hmac string) schemas.LeaseEvent {
		return schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id, Mount: "postgres", Role: "app",
			Database: "main", DBUser: hmac, DBUserHMAC: true, IssueTime: &issued, EventTime: issued, VaultRequestID: "req-" + id,
			Source: schemas.SourceRef{Transport: "socket"}}
	}
	a, b := newLeaseID("app"), newLeaseID("app")
	if _, err := r.st.Apply(ctx, store.Batch{Leases: []schemas.LeaseEvent{
		lease(a, vaulttest.Hash(socketSalt, viaSocket)), lease(b, vaulttest.Hash(fileSalt, viaFile))}}); err != nil {
		t.Fatal(err)
	}
	c := r.client(t, nil)
	newResolver := func(devices ...string) *vaultlink.HMACResolver {
		res, err := vaultlink.NewHMACResolver(vaultlink.HMACResolverConfig{Devices: devices, ManagedPattern: regexp.MustCompile(`^v-`)},
			r.st.Pool(), c, r.logger(), nil, r.clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// The file device alone: only the lease carrying its HMAC.
	links, err := newResolver("file").Pass(ctx)
	if err != nil || len(links) != 1 || links[0].LeaseID != b || links[0].Device != "file" {
		t.Fatalf("file only: links %+v, %v", links, err)
	}
	if l, err := r.st.Lease(ctx, a); err != nil || !l.DBUserHMAC {
		t.Fatalf("socket's lease linked through the file device: %+v, %v", l, err)
	}
	// Both devices (as LEASEGUARD_VAULT_AUDIT_DEVICE=" file, /socket/,file"
	// gives them): the socket's lease too. Names are not hashed again
	// through the file device, and the name a lease now names plainly is
	// not hashed at all: one call.
	devices, err := vaultlink.CleanDevices(strings.Split(" file, /socket/,file", ","))
	if err != nil || len(devices) != 2 {
		t.Fatalf("devices %v, %v", devices, err)
	}
	before := len(r.vault.Calls("audit-hash"))
	links, err = newResolver(devices...).Pass(ctx)
	if err != nil || len(links) != 1 || links[0].LeaseID != a || links[0].DBUser != viaSocket || links[0].Device != "socket" {
		t.Fatalf("both devices: links %+v, %v", links, err)
	}
	if calls := r.vault.Calls("audit-hash")[before:]; len(calls) != 1 || calls[0].Arg != viaSocket || !strings.Contains(calls[0].Path, "socket") {
		t.Errorf("hashed %+v, want %s through the socket device only", calls, viaSocket)
	}
	var dev string
	if err := r.st.Pool().QueryRow(ctx, `SELECT device FROM vault_lease_links WHERE lease_id = $1`, a).Scan(&dev); err != nil || dev != "socket" {
		t.Errorf("link of %s recorded device %q, %v", a, dev, err)
	}
	for _, bad := range []string{"", " , ", "file,../sys"} {
		if _, err := vaultlink.CleanDevices(strings.Split(bad, ",")); err == nil {
			t.Errorf("CleanDevices(%q) accepted", bad)
		}
	}
}
