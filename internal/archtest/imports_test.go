package archtest

import (
	"go/parser"
	"go/token"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/leaseguard/leaseguard/"

// importGraph maps each package of the module (by path below the module
// root) to the packages of the module its non-test files import.
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	g := map[string][]string{}
	fset := token.NewFileSet()
	sourceFiles(t, moduleRoot(t), func(path, pkg string) {
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := g[pkg]; !ok {
			g[pkg] = nil
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if dep, ok := strings.CutPrefix(p, module); ok && !slices.Contains(g[pkg], dep) {
				g[pkg] = append(g[pkg], dep)
			}
		}
	})
	for _, deps := range g {
		sort.Strings(deps)
	}
	return g
}

// reaches reports the import path from a to b, if a imports b directly or
// through others.
func reaches(g map[string][]string, a, b string) []string {
	seen := map[string]bool{}
	var walk func(p string) []string
	walk = func(p string) []string {
		if p == b {
			return []string{p}
		}
		if seen[p] {
			return nil
		}
		seen[p] = true
		for _, d := range g[p] {
			if path := walk(d); path != nil {
				return append([]string{p}, path...)
			}
		}
		return nil
	}
	for _, d := range g[a] {
		if path := walk(d); path != nil {
			return append([]string{a}, path...)
		}
	}
	return nil
}

// forbidden are imports, direct or not, that would tie features together
// the wrong way: the observer and its rules meet only in the leaf package
// of observed facts; the state store imports no feature; the revoker reads
// pending revocations, and approval executes through the revoker, so the
// pending revocations are a leaf below both; the rules read Vault's links, so
// vaultlink is below them.
var forbidden = [][2]string{
	{"observer", "detectors"},
	{"detectors", "observer"},
	{"store", "observer"},
	{"store", "detectors"},
	{"store", "approval"},
	{"store", "vaultlink"},
	{"store", "evidence"},
	{"store", "alert"},
	{"store", "revoker"},
	{"approval/pending", "revoker"},
	{"approval/pending", "approval"},
	{"revoker", "approval"},
	{"vaultlink", "detectors"},
}

func TestForbiddenImports(t *testing.T) {
	t.Parallel()
	g := importGraph(t)
	for _, f := range forbidden {
		if path := reaches(g, f[0], f[1]); path != nil {
			t.Errorf("%s must not import %s: %s", f[0], f[1], strings.Join(path, " → "))
		}
	}
}

// leaves are the packages that features share, and what of the module
// each may import (directly or not): nothing above them.
var leaves = map[string][]string{
	"store":             {"schemas", "internal/dbpool"},
	"observer/observed": {"schemas"},
	"approval/pending":  {"store", "schemas", "internal/dbpool"},
	"schemas":           nil,
}

func TestLeaves(t *testing.T) {
	t.Parallel()
	g := importGraph(t)
	for leaf, allowed := range leaves {
		if _, ok := g[leaf]; !ok {
			t.Errorf("package %s not found", leaf)
		}
		for p := range g {
			if p == leaf || slices.Contains(allowed, p) {
				continue
			}
			if path := reaches(g, leaf, p); path != nil {
				t.Errorf("%s imports %s: %s", leaf, p, strings.Join(path, " → "))
			}
		}
	}
}

// TestNoCycle: the compiler refuses a cycle within one build, but not one
// that only tests or build tags would close; this walks every file.
func TestNoCycle(t *testing.T) {
	t.Parallel()
	g := importGraph(t)
	if len(g) < 10 {
		t.Fatalf("found %d packages: the scan is broken", len(g))
	}
	for p := range g {
		if path := reaches(g, p, p); path != nil {
			t.Errorf("import cycle: %s", strings.Join(path, " → "))
		}
	}
}

func TestReaches(t *testing.T) {
	t.Parallel()
	g := map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
	if got := reaches(g, "d", "c"); !slices.Equal(got, []string{"d", "a", "b", "c"}) {
		t.Errorf("reaches(d, c) = %q", got)
	}
	if got := reaches(g, "a", "a"); !slices.Equal(got, []string{"a", "b", "c", "a"}) {
		t.Errorf("reaches(a, a) = %q", got)
	}
	if got := reaches(g, "a", "d"); got != nil {
		t.Errorf("reaches(a, d) = %q, want none", got)
	}
}
