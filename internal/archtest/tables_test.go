package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// owners names, for every table of the state store that Go code writes,
// the one package allowed to write it. The migrations (store/migrations)
// create every table; they are SQL files and not scanned. A table written
// in code but missing here fails the test, so a new table needs an owner.
var owners = map[string]string{
	// The ledger and what is truly shared: what ingest records from the
	// audit streams in one transaction (leases, their events, the audit
	// signals), and the findings, revocations and rule marks that the
	// detectors, revoker, alert, vaultlink and rollout all write through
	// store's functions.
	"schema_migrations":    "store",
	"leases":               "store",
	"lease_events":         "store",
	"lease_addresses":      "store",
	"creds_requests":       "store",
	"prefix_revocations":   "store",
	"hashed_revocations":   "store",
	"audit_counts":         "store",
	"audit_heartbeats":     "store",
	"audit_device_changes": "store",
	"audit_file_offsets":   "store",
	"coverage":             "store",
	"findings":             "store",
	"revocations":          "store",
	"rule_marks":           "store",

	"db_events":        "observer",
	"db_roles":         "observer",
	"db_sessions":      "observer",
	"observer_targets": "observer",

	"pending_revocations": "approval/pending",

	"vault_revocations":      "vaultlink",
	"vault_reconcile_cursor": "vaultlink",
	"vault_user_hmacs":       "vaultlink",
	"vault_lease_id_hmacs":   "vaultlink",
	"vault_lease_links":      "vaultlink",
	"vault_revocation_links": "vaultlink",

	"evidence_outbox":     "evidence",
	"evidence_chain_head": "evidence",

	"alerts":           "alert",
	"alert_deliveries": "alert",
	"alert_sinks":      "alert",

	"exception_hits":   "detectors",
	"refused_commands": "revoker",
	"nodes":            "nodes",
	"rollout_policies": "rollout",

	// Not the state store's: the bench's temporary table of the users it
	// waits to see gone (one connection's, dropped with it).
	"bench_pending": "cmd/leaseguard-bench",
}

// notWrites are the SQL phrases that contain a write keyword without
// writing a table (row locks, upserts).
var notWrites = regexp.MustCompile(`\b(?:FOR\s+(?:NO\s+KEY\s+)?UPDATE|DO\s+UPDATE)\b`)

// writes finds the table each write statement names. SQL here is written
// with upper-case keywords, which keeps prose ("update the lease") out.
var writes = regexp.MustCompile(`\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?)\s+(?:ONLY\s+)?([A-Za-z_][A-Za-z0-9_.]*)`)

// write is one statement that writes a table, and where it is.
type write struct {
	table, pkg, pos string
}

// tablesWritten returns the tables a piece of SQL writes.
func tablesWritten(sql string) []string {
	sql = notWrites.ReplaceAllString(sql, " ")
	var ts []string
	for _, m := range writes.FindAllStringSubmatch(sql, -1) {
		t := strings.ToLower(m[1])
		if i := strings.LastIndexByte(t, '.'); i >= 0 {
			t = t[i+1:] // schema-qualified
		}
		if t == "set" { // "UPDATE\nSET" of an upsert split over lines
			continue
		}
		ts = append(ts, t)
	}
	return ts
}

// sqlFunction is how a migration defines a function: CREATE [OR REPLACE]
// FUNCTION name(…) … AS $$ body $$.
var sqlFunction = regexp.MustCompile(`(?s)CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([a-z_][a-z0-9_]*)\s*\(.*?\$\$(.*?)\$\$`)

// sqlFunc is a function the migrations define that writes tables: Go
// code whose SQL matches call writes them.
type sqlFunc struct {
	call    *regexp.Regexp
	written []string
}

// sqlFunctions returns the functions the migrations define whose bodies
// write tables.
func sqlFunctions(t *testing.T, root string) []sqlFunc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "store", "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v (%d files)", err, len(files))
	}
	var out []sqlFunc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range sqlFunction.FindAllStringSubmatch(string(b), -1) {
			if ts := tablesWritten(m[2]); len(ts) > 0 {
				out = append(out, sqlFunc{call: regexp.MustCompile(`\b` + m[1] + `\s*\(`), written: ts})
			}
		}
	}
	return out
}

// tablesWrittenByCalls returns the tables written by the functions of
// funcs that sql calls.
func tablesWrittenByCalls(sql string, funcs []sqlFunc) []string {
	var ts []string
	for _, f := range funcs {
		if f.call.MatchString(sql) {
			ts = append(ts, f.written...)
		}
	}
	return ts
}

// moduleRoot is two levels up from this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// packageOf names a directory as the ownership table does: the path below
// the module root ("store", "cmd/leaseguard").
func packageOf(root, dir string) string {
	rel, _ := filepath.Rel(root, dir)
	return filepath.ToSlash(rel)
}

// sourceFiles walks the module's non-test Go files.
func sourceFiles(t *testing.T, root string, fn func(path, pkg string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			fn(path, packageOf(root, filepath.Dir(path)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// scanWrites parses every non-test Go file of the module and returns the
// table writes in its string literals.
func scanWrites(t *testing.T, root string) []write {
	t.Helper()
	var ws []write
	funcs := sqlFunctions(t, root)
	fset := token.NewFileSet()
	sourceFiles(t, root, func(path, pkg string) {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatalf("%s: %v", fset.Position(lit.Pos()), err)
			}
			for _, tbl := range append(tablesWritten(s), tablesWrittenByCalls(s, funcs)...) {
				p := fset.Position(lit.Pos())
				rel, _ := filepath.Rel(root, p.Filename)
				ws = append(ws, write{table: tbl, pkg: pkg, pos: fmt.Sprintf("%s:%d", rel, p.Line)})
			}
			return true
		})
	})
	return ws
}

// TestTableOwners: no package other than a table's owner writes it.
func TestTableOwners(t *testing.T) {
	t.Parallel()
	ws := scanWrites(t, moduleRoot(t))
	if len(ws) < len(owners) {
		t.Fatalf("found %d writes, fewer than the %d owned tables: the scan is broken", len(ws), len(owners))
	}
	var bad []string
	for _, w := range ws {
		owner, ok := owners[w.table]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s: %s writes table %s, which has no owner in the table", w.pos, w.pkg, w.table))
		case w.pkg != owner:
			bad = append(bad, fmt.Sprintf("%s: %s writes table %s, owned by %s", w.pos, w.pkg, w.table, owner))
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

// TestEveryOwnedTableIsWritten keeps the ownership table honest: an entry
// for a table its owner no longer writes is stale.
func TestEveryOwnedTableIsWritten(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, w := range scanWrites(t, moduleRoot(t)) {
		if owners[w.table] == w.pkg {
			seen[w.table] = true
		}
	}
	for tbl, owner := range owners {
		if !seen[tbl] {
			t.Errorf("%s is owned by %s, which does not write it", tbl, owner)
		}
	}
}

func TestTablesWritten(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		sql  string
		want []string
	}{
		{"INSERT INTO leases (a) VALUES ($1)", []string{"leases"}},
		{"UPDATE leaseguard.findings SET x = 1", []string{"findings"}},
		{"DELETE FROM db_events WHERE true", []string{"db_events"}},
		{"TRUNCATE TABLE alerts, cuts", []string{"alerts"}},
		{"INSERT INTO nodes (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 1", []string{"nodes"}},
		{"SELECT * FROM leases FOR UPDATE SKIP LOCKED", nil},
		{"SELECT * FROM leases FOR NO KEY UPDATE", nil},
		{"ON CONFLICT (path) DO UPDATE\n\t\tSET offset = 1", nil},
		{"update the lease", nil},
	} {
		if got := tablesWritten(c.sql); !slices.Equal(got, c.want) {
			t.Errorf("tablesWritten(%q) = %q, want %q", c.sql, got, c.want)
		}
	}
}
