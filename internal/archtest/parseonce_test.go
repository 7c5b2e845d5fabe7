package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"sort"
	"strings"
	"testing"
)

// settingParsers are the functions that turn a setting's text into its
// typed value. cmd/leaseguard calls each once, while it validates the
// configuration, and keeps both results: the value for the commands, the
// error for the operator.
var settingParsers = map[string]bool{
	"parseRoles": true, "parseRoleTTLs": true, "parseLevel": true, "parseSinks": true,
	"parseAllowedNets": true, "parseSocketMode": true, "targetConfig": true, "alertConfig": true,
	"ParseModes": true, "ParseScope": true, "ParseSpec": true, "ParseAllowedCIDRs": true,
	"ParseMaxTTLs": true, "ParseTargets": true, "ParseRoutes": true,
	"ParsePrivateKey": true, "ParsePublicKeys": true,
}

// TestSettingsParsedOnce fails for every call in cmd/leaseguard (outside
// tests) that throws away a result of a setting parser (`x, _ :=`, `_, err
// :=`, or the call alone), and for every regexp compiled from a setting
// where it is used: a setting parsed again after validation, its error
// thrown away, is a setting that can silently mean something else.
func TestSettingsParsedOnce(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	var bad []string
	sourceFiles(t, root, func(path, pkg string) {
		if pkg != "cmd/leaseguard" {
			return
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range discardedParses(f) {
			pos := fset.Position(d.pos)
			bad = append(bad, fmt.Sprintf("%s/%s:%d: %s", pkg, baseName(pos.Filename), pos.Line, d.what))
		}
	})
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("settings parsed again, a result thrown away (parse once, into the typed settings):\n%s", strings.Join(bad, "\n"))
	}
}

type discard struct {
	pos  token.Pos
	what string
}

// discardedParses finds, in f, the calls of setting parsers whose value or
// error is assigned to _ or dropped, and the regexps compiled from
// anything but a literal.
func discardedParses(f *ast.File) []discard {
	var out []discard
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			if name, ok := parserCall(n.Rhs); ok && anyBlank(n.Lhs) {
				out = append(out, discard{n.Pos(), name + ": a result assigned to _"})
			}
		case *ast.ValueSpec:
			if name, ok := parserCall(n.Values); ok && anyBlankIdent(n.Names) {
				out = append(out, discard{n.Pos(), name + ": a result assigned to _"})
			}
		case *ast.ExprStmt:
			if name, ok := parserCall([]ast.Expr{n.X}); ok {
				out = append(out, discard{n.Pos(), name + ": its results dropped"})
			}
		case *ast.CallExpr:
			if calleeName(n.Fun) == "MustCompile" && len(n.Args) == 1 {
				if _, lit := n.Args[0].(*ast.BasicLit); !lit {
					out = append(out, discard{n.Pos(), "MustCompile of a setting where it is used"})
				}
			}
		}
		return true
	})
	return out
}

// parserCall names the setting parser of a single call on the right of
// an assignment.
func parserCall(rhs []ast.Expr) (string, bool) {
	if len(rhs) != 1 {
		return "", false
	}
	call, ok := rhs[0].(*ast.CallExpr)
	if !ok {
		return "", false
	}
	name := calleeName(call.Fun)
	return name, settingParsers[name]
}

func calleeName(fun ast.Expr) string {
	switch f := fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

func anyBlank(lhs []ast.Expr) bool {
	for _, e := range lhs {
		if id, ok := e.(*ast.Ident); ok && id.Name == "_" {
			return true
		}
	}
	return false
}

func anyBlankIdent(ids []*ast.Ident) bool {
	for _, id := range ids {
		if id.Name == "_" {
			return true
		}
	}
	return false
}

func baseName(path string) string {
	return path[strings.LastIndexAny(path, `/\`)+1:]
}
