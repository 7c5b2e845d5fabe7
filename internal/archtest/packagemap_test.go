package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageMapNamesEveryPackage keeps docs/architecture.md's package map
// complete: a newcomer finds every package there.
func TestPackageMapNamesEveryPackage(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/leaseguard/leaseguard/"
	for _, p := range strings.Fields(string(out)) {
		name := strings.TrimPrefix(p, module)
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/architecture.md's package map does not name `%s`", name)
		}
	}
}
