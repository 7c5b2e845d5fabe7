package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// TestApproveRejectCLI: `leaseguard approve` and `reject` with NATS
// unreachable and no pipeline: rejection keeps the user, approval drops it
// through the revoker, both recorded with the actor; deciding twice is
// refused.
func TestApproveRejectCLI(t *testing.T) {
	r := newRevokeRig(t)
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	t.Setenv("LEASEGUARD_COMMAND_SIGNING_KEY", base64.StdEncoding.EncodeToString(seed))
	signer := revoker.NewSigner(ed25519.NewKeyFromSeed(seed))
	if code, _, stderr := runMain(t, "", "migrate"); code != 0 {
		t.Fatalf("migrate exit %d: %s", code, stderr)
	}
	st, err := store.Open(r.ctx, store.Config{URL: pgtest.URL(), Schema: r.schema})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keep, drop := r.issue(t, "a", "ro"), r.issue(t, "a", "rw")
	pend := func(c vaultsim.Cred) string {
		now := time.Now().UTC()
		id := strings.ReplaceAll(c.Username, "-", "")[:20]
		cmd := schemas.RevocationCommand{ID: id, Action: schemas.ActionDropRole, Issuer: "detector",
			Rule: "orphan-role", FindingID: "f" + id, Database: r.db, DBUser: c.Username, Reason: "orphan",
			Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByVaultLookup, CheckedAt: now, Detail: "no live lease"}}
		sig, err := signer.SignProposal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		_, err = pending.Insert(r.ctx, st.Pool(), []pending.Revocation{{ID: id, FindingID: cmd.FindingID,
			Rule: cmd.Rule, Severity: schemas.SeverityMedium, Database: r.db, DBUser: c.Username, Summary: "orphan",
			Command: cmd, ProposalSignature: sig, RequestedAt: now, ExpiresAt: now.Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	keepID, dropID := pend(keep), pend(drop)

	code, out, stderr := runMain(t, "", "approve", "--list")
	if code != 0 || !strings.Contains(out, keepID) || !strings.Contains(out, dropID) {
		t.Fatalf("list exit %d: %s %s", code, out, stderr)
	}
	if code, _, _ := runMain(t, "", "approve"); code != exitUsage {
		t.Errorf("approve without an id: exit %d", code)
	}

	code, out, stderr = runMain(t, "", "reject", keepID, "--as", "bob", "--comment", "still in use")
	if code != 0 || !strings.Contains(out, "rejected") || !strings.Contains(out, "bob") {
		t.Fatalf("reject exit %d: %s %s", code, out, stderr)
	}
	if !r.exists(t, keep.Username) {
		t.Fatal("rejected user was dropped")
	}

	code, out, stderr = runMain(t, "", "approve", "--actor", "alice", "--output", "json", dropID)
	if code != 0 {
		t.Fatalf("approve exit %d: %s %s", code, out, stderr)
	}
	if r.exists(t, drop.Username) {
		t.Fatal("approved user still exists")
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("json output: %s", out)
	}
	for i, want := range []string{evidence.TypeApproval, evidence.TypeRevocation} {
		var ev struct {
			Type string `json:"type"`
			Data struct {
				Actor struct {
					User struct {
						Name string `json:"name"`
					} `json:"user"`
				} `json:"actor"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil {
			t.Fatal(err)
		}
		// --actor that is not the OS user keeps the OS user beside it.
		if ev.Type != want || !strings.HasPrefix(ev.Data.Actor.User.Name, "alice") {
			t.Errorf("event %d: %s", i, lines[i])
		}
	}
	rev, err := store.GetRevocation(r.ctx, st.Pool(), dropID)
	if err != nil || rev.Outcome != schemas.OutcomeDropped {
		t.Errorf("revocation %+v, %v", rev, err)
	}

	for _, args := range [][]string{{"approve", dropID}, {"reject", dropID}, {"approve", keepID}} {
		code, _, stderr = runMain(t, "", args...)
		if code != exitNotClean || !strings.Contains(stderr, "already decided") {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
	if !r.exists(t, keep.Username) {
		t.Fatal("approving a rejected revocation dropped the user")
	}
	code, out, _ = runMain(t, "", "approve", "--list", "--state", "rejected", "--output", "json")
	if code != 0 || !strings.Contains(out, keepID) || strings.Contains(out, dropID) {
		t.Errorf("rejected list exit %d: %s", code, out)
	}
}
