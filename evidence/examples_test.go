package evidence

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

var update = flag.Bool("update", false, "rewrite schemas/examples/evidence-*.json")

// exampleVersion is the leaseguard version the examples are stamped with.
const exampleVersion = "1.4.2"

func exampleBuilder(t *testing.T) Builder {
	return Builder{Source: "urn:leaseguard:prod-eu-1", Clock: func() time.Time { return t0 }, Version: exampleVersion}
}

// The examples are one chain: the finding (seq 1), the revocation it
// requested (seq 2), a policy change (seq 3) and an owner's approval
// (seq 4). They are what the Builder makes of fixed inputs, sealed, and
// indented for reading (the hash is over the canonical form, so the
// indentation does not matter).
func exampleEvents(t *testing.T) (finding, revocation Event) {
	t.Helper()
	b := exampleBuilder(t)
	f := sampleFinding(7)
	lease := sampleLease(7)
	finding, err := b.Finding(f, lease)
	if err != nil {
		t.Fatal(err)
	}
	cmd := sampleCommand(7)
	revocation, err = b.Revocation(cmd, sampleResult(cmd, schemas.OutcomeDropped), lease)
	if err != nil {
		t.Fatal(err)
	}
	if err := Seal(&finding, GenesisHash, 1); err != nil {
		t.Fatal(err)
	}
	if err := Seal(&revocation, finding.Hash, 2); err != nil {
		t.Fatal(err)
	}
	return finding, revocation
}

func TestExamples(t *testing.T) {
	finding, revocation := exampleEvents(t)
	policy := examplePolicy(t, revocation.Hash)
	approval := exampleApproval(t, policy.Hash)
	sch := evidenceSchema(t)
	ocsf := loadOCSFSchema(t, ocsfSchemaDir)
	v := newVerifier(VerifyOptions{Keys: []ed25519.PublicKey{testEvidenceKey(t, 1).PublicKey()}})
	for _, ex := range []struct {
		file string
		ev   Event
	}{
		{"evidence-finding.json", finding},
		{"evidence-revocation.json", revocation},
		{"evidence-policy.json", policy},
		{"evidence-approval.json", approval},
		{"evidence-checkpoint.json", exampleCheckpoint(t, approval)},
	} {
		path := filepath.Join("..", "schemas", "examples", ex.file)
		compact, err := encodeJSON(ex.ev)
		if err != nil {
			t.Fatal(err)
		}
		var indented bytes.Buffer
		if err := json.Indent(&indented, compact, "", "  "); err != nil {
			t.Fatal(err)
		}
		want := append(indented.Bytes(), '\n')
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./evidence -run TestExamples -update writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what the builder makes; run go test ./evidence -run TestExamples -update", ex.file)
		}
		if err := validateDoc(sch, got); err != nil {
			t.Errorf("%s: %v", ex.file, err)
		}
		if problems := validateOCSF(ocsf, ocsfClassFiles, ex.ev.Data, ocsfWaived(ex.ev, nil)); len(problems) > 0 {
			t.Errorf("%s is not conformant OCSF: %v", ex.file, problems)
		}
		ev, err := decodeEvent(got)
		if err != nil {
			t.Fatal(err)
		}
		if !v.add(ev, got) {
			t.Errorf("%s does not verify: %s", ex.file, v.report.FirstBreak)
		}
	}
	if rep := v.finish(); rep.Checked != 5 || !rep.Confirmed() {
		t.Errorf("examples chain: %+v", rep)
	}
}

// examplePolicy is the evidence of an expansion of the enforcement scope,
// third in the examples' chain.
func examplePolicy(t *testing.T, prev string) Event {
	t.Helper()
	b := exampleBuilder(t)
	c := samplePolicyChange()
	ev, err := b.Policy(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := Seal(&ev, prev, 3); err != nil {
		t.Fatal(err)
	}
	return ev
}

// exampleApproval is an owner's approval of the example finding's
// revocation, fourth in the examples' chain.
func exampleApproval(t *testing.T, prev string) Event {
	t.Helper()
	f := sampleFinding(7)
	ev, err := exampleBuilder(t).Approval(schemas.ApprovalDecision{
		PendingID: "216e34caed2d7caee8976a46c3c33762", Decision: schemas.ApprovalApproved, DecidedBy: "alice",
		DecidedAt: t0.Add(3 * time.Minute), Comment: "CHG-4711: confirmed unused", FindingID: f.ID, Rule: f.Rule,
		Severity: f.Severity, Database: f.Database, DBUser: f.DBUser, LeaseID: f.LeaseID, Summary: f.Summary,
		RequestedAt: f.DetectedAt, ExpiresAt: f.DetectedAt.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Seal(&ev, prev, 4); err != nil {
		t.Fatal(err)
	}
	return ev
}

// exampleCheckpoint is the checkpoint of the example chain, signed by the
// test evidence key (seed 32 bytes of 0x01; docs/evidence.md gives its
// public key).
func exampleCheckpoint(t *testing.T, head Event) Event {
	t.Helper()
	ev, err := exampleBuilder(t).Checkpoint(testEvidenceKey(t, 1), head.ChainSeq, head.Hash, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := Seal(&ev, head.Hash, head.ChainSeq+1); err != nil {
		t.Fatal(err)
	}
	return ev
}
