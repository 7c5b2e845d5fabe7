package main

import (
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
	code, out, stderr := runMain(t, "", "keys")
	if code != 0 || !strings.Contains(out, "key id     "+id) {
		t.Fatalf("keys: exit %d, %s %s (want key id %s)", code, out, stderr, id)
	}
	if strings.Contains(out, strings.TrimSpace(seed)) {
		t.Error("keys printed the private key")
	}
}
