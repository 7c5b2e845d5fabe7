package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
)

// signedChain writes the example chain (seq 1-3), a checkpoint of it
// (4), a finding (5) and a checkpoint of that (6), signed with the key of
// seed fill; it returns the lines.
func signedChain(t *testing.T, fill byte) []string {
	t.Helper()
	raw, err := os.ReadFile(chainFile(t))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var last evidence.Event
	if err := json.Unmarshal([]byte(lines[2]), &last); err != nil {
		t.Fatal(err)
	}
	s, err := evidence.NewCheckpointSigner(ed25519.NewKeyFromSeed(seed(fill)))
	if err != nil {
		t.Fatal(err)
	}
	b := evidence.Builder{Source: "urn:leaseguard:test"}
	at := time.Date(2026, 3, 14, 9, 30, 0, 0, time.UTC)
	finding, err := b.Finding(schemas.Finding{Type: schemas.FindingType, ID: "f-cli-1", Rule: "orphan-role", Severity: schemas.SeverityLow,
		Mode: schemas.ModeObserve, DetectedAt: at, Database: "main", DBUser: "v-x", Summary: "s", Action: schemas.ActionNone}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for seq := int64(4); seq <= 6; seq++ {
		ev := finding
		if seq != 5 {
			if ev, err = b.Checkpoint(s, last.ChainSeq, last.Hash, at); err != nil {
				t.Fatal(err)
			}
		}
		if err := evidence.Seal(&ev, last.Hash, seq); err != nil {
			t.Fatal(err)
		}
		line, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		lines, last = append(lines, string(line)), ev
	}
	return lines
}

func seed(fill byte) []byte {
	b := make([]byte, ed25519.SeedSize)
	for i := range b {
		b[i] = fill
	}
	return b
}

func publicKey(fill byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed(fill)).Public().(ed25519.PublicKey))
}

func writeChain(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEvidenceVerifyCheckpoints: verify --file checks the checkpoints with
// the key given, reports a cut tail (not clean only with
// --require-checkpoint), and fails on a forged checkpoint.
func TestEvidenceVerifyCheckpoints(t *testing.T) {
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	t.Setenv("LEASEGUARD_EVIDENCE_SIGNING_KEY", "")
	t.Setenv("LEASEGUARD_EVIDENCE_VERIFY_KEYS", "")
	good, forged := signedChain(t, 1), signedChain(t, 2)
	key := "--evidence-key=" + publicKey(1)
	for _, tt := range []struct {
		name  string
		lines []string
		args  []string
		code  int
		want  string
	}{
		{"whole", good, []string{key}, exitOK, "every event up to the last checkpoint (signed "},
		{"cut", good[:5], []string{key}, exitOK, "warning: unconfirmed tail: 1 event(s) after the checkpoint at seq 4"},
		{"cut, required", good[:5], []string{key, "--require-checkpoint"}, exitNotClean, "unconfirmed tail"},
		{"no checkpoint, required", good[:3], []string{key, "--require-checkpoint"}, exitNotClean, "warning: no checkpoint"},
		{"forged", forged, []string{key}, exitNotClean, "not a known evidence key"},
		{"no key", forged, nil, exitOK, "signatures NOT checked"},
		{"no key, required", good, []string{"--require-checkpoint"}, exitNotClean, "checkpoint signatures not checked"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := runMain(t, "", append([]string{"evidence", "verify", "--file", writeChain(t, tt.lines)}, tt.args...)...)
			if code != tt.code || !strings.Contains(out+stderr, tt.want) {
				t.Errorf("exit %d, want %d and %q:\n%s%s", code, tt.code, tt.want, out, stderr)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		t.Setenv("LEASEGUARD_EVIDENCE_VERIFY_KEYS", publicKey(1)) // from the configuration this time
		code, out, stderr := runMain(t, "", "evidence", "verify", "--file", writeChain(t, good[:5]), "-o", "json")
		var v struct {
			OK, Confirmed bool
			Report        evidence.VerifyReport
		}
		if err := json.Unmarshal([]byte(out), &v); code != exitOK || err != nil {
			t.Fatalf("exit %d %v: %s %s", code, err, out, stderr)
		}
		if !v.OK || v.Confirmed || v.Report.UnconfirmedTail != 1 || v.Report.LastCheckpoint == nil ||
			v.Report.LastCheckpoint.CoversSeq != 3 || !v.Report.SignaturesChecked {
			t.Errorf("json: %s", out)
		}
	})
}
