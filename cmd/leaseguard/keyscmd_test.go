package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeysGenerateAndShow: a generated key, used as the signing key, is
// the one `keys` shows, with its public key for the other processes'
// LEASEGUARD_COMMAND_VERIFY_KEYS.
func TestKeysGenerateAndShow(t *testing.T) {
	code, seed, stderr := runMain(t, "", "keys", "--generate")
	if code != 0 || strings.Count(seed, "\n") != 1 || !strings.Contains(stderr, "public key") {
		t.Fatalf("generate: exit %d, stdout %q, stderr %q", code, seed, stderr)
	}
	id := strings.Fields(stderr[strings.Index(stderr, "key id"):])[2]
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LEASEGUARD_COMMAND_SIGNING_KEY", "file:"+path)
	t.Setenv("LEASEGUARD_COMMAND_VERIFY_KEYS", "")
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	code, out, stderr := runMain(t, "", "keys")
	if code != 0 || !strings.Contains(out, "key id     "+id) {
		t.Fatalf("keys: exit %d, %s %s (want key id %s)", code, out, stderr, id)
	}
	if strings.Contains(out, strings.TrimSpace(seed)) {
		t.Error("keys printed the private key")
	}
}

// TestKeysShowsTheEvidenceKey: the evidence key is its own key, created
// in DATA_DIR (0600) like the command key when none is configured, or the
// configured one; keys -o json shows it and the evidence keys accepted.
func TestKeysShowsTheEvidenceKey(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LEASEGUARD_DATA_DIR", dir)
	t.Setenv("LEASEGUARD_COMMAND_SIGNING_KEY", "")
	t.Setenv("LEASEGUARD_EVIDENCE_SIGNING_KEY", "")
	t.Setenv("LEASEGUARD_EVIDENCE_VERIFY_KEYS", "")
	show := func() keysView {
		t.Helper()
		code, out, stderr := runMain(t, "", "keys", "-o", "json")
		if code != 0 {
			t.Fatalf("keys: exit %d: %s", code, stderr)
		}
		var v keysView
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return v
	}
	v := show()
	if v.EvidenceKey.KeyID == "" || v.EvidenceKey.KeyID == v.SigningKey.KeyID || len(v.AcceptedEvidenceKeyIDs) != 1 ||
		v.AcceptedEvidenceKeyIDs[0] != v.EvidenceKey.KeyID {
		t.Fatalf("generated keys: %+v", v)
	}
	st, err := os.Stat(filepath.Join(dir, "evidence-signing.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("evidence key file: %v %v", st, err)
	}
	if again := show(); again.EvidenceKey != v.EvidenceKey {
		t.Errorf("the evidence key changed between runs: %+v then %+v", v.EvidenceKey, again.EvidenceKey)
	}

	_, seed, stderr := runMain(t, "", "keys", "--generate")
	id := strings.Fields(stderr[strings.Index(stderr, "key id"):])[2]
	t.Setenv("LEASEGUARD_EVIDENCE_SIGNING_KEY", strings.TrimSpace(seed))
	t.Setenv("LEASEGUARD_EVIDENCE_VERIFY_KEYS", v.EvidenceKey.PublicKey) // the earlier key, after a rotation
	if c := show(); c.EvidenceKey.KeyID != id || len(c.AcceptedEvidenceKeyIDs) != 2 {
		t.Errorf("configured key %s: %+v", id, c)
	}
}
