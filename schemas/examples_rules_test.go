package schemas_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// definedRules are the rule ids leaseguard's code defines: every constant
// named Rule… with a string value, in every non-test Go file of the module.
// Read from the source, so a rule added or renamed is picked up.
func definedRules(t *testing.T) map[string]string {
	t.Helper()
	rules := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Rule") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						return err
					}
					rules[v] = path + ": " + name.Name
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// exampleRules collects, at any depth of an example, the values of "rule"
// keys, the rule names of evidence (finding_info.analytic) and the keys
// of policy "modes" maps.
func exampleRules(v any, key string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			switch {
			case k == "modes":
				if m, ok := e.(map[string]any); ok {
					for r := range m {
						out[r] = true
					}
				}
			case key == "analytic" && (k == "uid" || k == "name"):
				out[e.(string)] = true
			case k == "rule":
				if s, ok := e.(string); ok {
					out[s] = true
				}
			}
			exampleRules(e, k, out)
		}
	case []any:
		for _, e := range v {
			exampleRules(e, key, out)
		}
	}
}

// TestExampleRuleIDs: every rule id an example uses is one the code
// defines, so the examples show what leaseguard really emits.
func TestExampleRuleIDs(t *testing.T) {
	defined := definedRules(t)
	// The rules the detectors, the operator, the Vault link and the
	// revoker define; the list must at least hold these.
	for _, r := range []string{"lease-expired-not-revoked", "ghost-session", "orphan-role", "operator-revoke",
		"vault-lease-revoke", "command-refused"} {
		if _, ok := defined[r]; !ok {
			t.Errorf("rule %q not found among the defined rules %v", r, defined)
		}
	}
	paths, err := filepath.Glob(filepath.Join("examples", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		used := map[string]bool{}
		exampleRules(doc, "", used)
		names := make([]string, 0, len(used))
		for r := range used {
			names = append(names, r)
		}
		sort.Strings(names)
		for _, r := range names {
			checked++
			if _, ok := defined[r]; !ok {
				t.Errorf("%s uses rule %q, which no detector defines", path, r)
			}
		}
	}
	if checked == 0 {
		t.Error("no rule ids found in the examples")
	}
}
