package bus_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/bus"
)

// Seeds are made once, 0600 in a 0700 directory, and the same ones come
// back on the next load (a restart).
func TestCredentialsCreatedPrivateAndStable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	users := []string{bus.UserLeaseguard, bus.UserShipper, bus.UserSIEM}
	first, err := bus.LoadOrCreateCredentials(dir, users...)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v %v", info.Mode(), err)
	}
	again, err := bus.LoadOrCreateCredentials(dir, users...)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		c1, _ := first.User(u)
		c2, _ := again.User(u)
		if c1.SeedFile != filepath.Join(dir, u+".nk") || !strings.HasPrefix(c1.PublicKey, "U") {
			t.Errorf("%s: %+v", u, c1)
		}
		if c1.PublicKey != c2.PublicKey {
			t.Errorf("%s: key changed on reload", u)
		}
		info, err := os.Stat(c1.SeedFile)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: seed file mode %v %v", u, info.Mode(), err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(users) {
		t.Errorf("%d files in %s, want %d (no temporary files left)", len(entries), dir, len(users))
	}
}

// Whoever can read a seed is that user: a seed file or a directory open to
// group or others is refused, and so is a file that holds no user seed;
// no error shows the file's content.
func TestCredentialsRefused(t *testing.T) {
	t.Run("seed readable by others", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nats")
		creds, err := bus.LoadOrCreateCredentials(dir, bus.UserShipper)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := creds.User(bus.UserShipper)
		if err := os.Chmod(c.SeedFile, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err = bus.LoadOrCreateCredentials(dir, bus.UserShipper)
		if err == nil || !strings.Contains(err.Error(), "readable by others") {
			t.Errorf("loaded a 0640 seed: %v", err)
		}
	})
	t.Run("directory open to others", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nats")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := bus.LoadOrCreateCredentials(dir, bus.UserShipper)
		if err == nil || !strings.Contains(err.Error(), "open to others") {
			t.Errorf("used a 0755 directory: %v", err)
		}
	})
	t.Run("not a user seed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nats")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		secret := "SAAJUNKSECRETJUNKSECRET"
		if err := os.WriteFile(filepath.Join(dir, "siem.nk"), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := bus.LoadOrCreateCredentials(dir, bus.UserSIEM)
		if err == nil || !strings.Contains(err.Error(), "not a NATS user seed") {
			t.Errorf("loaded a bad seed: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the file's content: %v", err)
		}
	})
}
