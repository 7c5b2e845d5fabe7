package privfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestCreateOnceAndRead(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "key")
	if _, err := Read(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a missing file = %v", err)
	}
	// Racing creators: exactly one creates, every one reads its content.
	var wg sync.WaitGroup
	created := make([]bool, 8)
	for i := range created {
		wg.Go(func() {
			ok, err := CreateOnce(path, []byte{byte('a' + i)})
			if err != nil {
				t.Error(err)
			}
			created[i] = ok
		})
	}
	wg.Wait()
	n := 0
	for _, c := range created {
		if c {
			n++
		}
	}
	b, err := Read(path)
	if n != 1 || err != nil || len(b) != 1 {
		t.Fatalf("%d creators, content %q, %v", n, b, err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", info.Mode().Perm())
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil {
		t.Error("a file readable by the group was read")
	}
	dir := filepath.Join(t.TempDir(), "d")
	if err := EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDir(dir); err == nil {
		t.Error("a directory open to others was accepted")
	}
}
