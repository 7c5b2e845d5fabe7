package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/store"
)

// exportLines reads JSONL export output: each line one plain OCSF event.
// It returns each line's unmapped.chain.seq and class_uid.
func exportLines(t *testing.T, out string) (seqs []int, classes []int) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("export line is not JSON: %v: %s", err, sc.Text())
		}
		for _, k := range []string{"specversion", "datacontenttype", "data", "chainseq"} {
			if _, ok := m[k]; ok {
				t.Errorf("CloudEvents attribute %q in an exported line", k)
			}
		}
		um, _ := m["unmapped"].(map[string]any)
		chain, _ := um["chain"].(map[string]any)
		seq, _ := chain["seq"].(float64)
		class, _ := m["class_uid"].(float64)
		seqs, classes = append(seqs, int(seq)), append(classes, int(class))
	}
	return seqs, classes
}

func equalInts(a, b []int) bool { return slices.Equal(a, b) }

// TestExportFileToStdout: a file (or stdin) of CloudEvents comes out as
// plain OCSF lines in chain order.
func TestExportFileToStdout(t *testing.T) {
	chain := chainFile(t) // finding (2004), revocation (3001), policy (3004)
	raw, err := os.ReadFile(chain)
	if err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"file":  {"evidence", "export", "--file", chain},
		"stdin": {"evidence", "export", "--file", "-"},
	} {
		code, out, stderr := runMain(t, string(raw), args...)
		if code != exitOK {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		seqs, classes := exportLines(t, out)
		if !equalInts(seqs, []int{1, 2, 3}) || !equalInts(classes, []int{2004, 3001, 3004}) {
			t.Errorf("%s: seqs %v classes %v", name, seqs, classes)
		}
		if !strings.Contains(stderr, "3 event(s)") {
			t.Errorf("%s: the summary on stderr does not count the events: %q", name, stderr)
		}
	}
	code, out, _ := runMain(t, "", "evidence", "export", "--file", chain, "--from-seq", "2")
	if seqs, _ := exportLines(t, out); code != exitOK || !equalInts(seqs, []int{2, 3}) {
		t.Errorf("--from-seq 2: exit %d, seqs %v", code, seqs)
	}
}

// TestExportBrokenChainExits4: a broken file exports nothing and exits 4;
// --no-verify exports what is there.
func TestExportBrokenChainExits4(t *testing.T) {
	raw, err := os.ReadFile(chainFile(t))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	broken := filepath.Join(t.TempDir(), "broken.jsonl")
	if err := os.WriteFile(broken, []byte(lines[0]+"\n"+lines[2]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runMain(t, "", "evidence", "export", "--file", broken)
	if code != exitNotClean || out != "" || !strings.Contains(stderr, "chain breaks at seq 3") {
		t.Errorf("broken chain: exit %d, stdout %q, stderr %q; want exit 4, nothing exported", code, out, stderr)
	}
	dir := t.TempDir()
	if code, _, _ := runMain(t, "", "evidence", "export", "--file", broken, "--out", dir); code != exitNotClean {
		t.Errorf("broken chain to --out: exit %d", code)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("a refused export left files: %v", left)
	}
	code, out, stderr = runMain(t, "", "evidence", "export", "--file", broken, "--no-verify")
	if seqs, _ := exportLines(t, out); code != exitOK || !equalInts(seqs, []int{1, 3}) {
		t.Errorf("--no-verify: exit %d, seqs %v: %s", code, seqs, stderr)
	}
}

// TestExportClassParquet: --class --out --format parquet writes one file
// per class, and says so.
func TestExportClassParquet(t *testing.T) {
	chain := chainFile(t)
	for _, format := range []string{"parquet", "jsonl"} {
		dir := t.TempDir()
		code, out, stderr := runMain(t, "", "evidence", "export", "--file", chain, "--class", "--out", dir, "--format", format)
		if code != exitOK {
			t.Fatalf("%s: exit %d: %s", format, code, stderr)
		}
		var names []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		want := []string{"account_change." + format, "detection_finding." + format, "entity_management." + format}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("%s: files %v, want %v", format, names, want)
		}
		for _, n := range want {
			if !strings.Contains(out, filepath.Join(dir, n)+"  1") {
				t.Errorf("%s: summary does not name %s with 1 event:\n%s", format, n, out)
			}
		}
	}
}

func TestExportUsage(t *testing.T) {
	chain := chainFile(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "parquet"}, "--format parquet needs --out"},
		{[]string{"--class"}, "--class needs --out"},
		{[]string{"--format", "csv", "--out", "x"}, `--format "csv": want jsonl or parquet`},
		{[]string{"--since", "yesterday"}, "since"},
		{[]string{"--until", "tomorrow"}, "--until"},
		{[]string{"--from-seq", "0"}, "--from-seq"},
	} {
		code, _, stderr := runMain(t, "", append([]string{"evidence", "export", "--file", chain}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %q", tc.args, code, stderr, tc.want)
		}
	}
	onlyEnv(t, map[string]string{"LEASEGUARD_DATA_DIR": t.TempDir()})
	code, _, stderr := runMain(t, "", "evidence", "export")
	want := "leaseguard evidence export: " + strings.Replace(databaseURLRequired, "%s", "evidence export", 1) + "\n"
	if code != exitConfig || stderr != want {
		t.Errorf("no database: exit %d, stderr %q, want exit 3 and %q", code, stderr, want)
	}
}

// TestExportOutbox: from the outbox of a real PostgreSQL, verified first;
// a tampered outbox exits 4.
func TestExportOutbox(t *testing.T) {
	schema := pgtest.Schema(t, "lg_export")
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
	t.Setenv("LEASEGUARD_TARGETS", "")
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	if code, _, stderr := runMain(t, "", "migrate"); code != exitOK {
		t.Fatalf("migrate exit %d: %s", code, stderr)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	raw, err := os.ReadFile(chainFile(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var ev evidence.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		ev.ChainSeq, ev.PrevHash, ev.Hash = 0, "", "" // Append seals it again
		if err := pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error { _, err := evidence.Append(ctx, tx, ev); return err }); err != nil {
			t.Fatal(err)
		}
	}
	code, out, stderr := runMain(t, "", "evidence", "export", "--from-seq", "2")
	if seqs, classes := exportLines(t, out); code != exitOK || !equalInts(seqs, []int{2, 3}) || !equalInts(classes, []int{3001, 3004}) {
		t.Errorf("outbox export: exit %d, seqs %v classes %v: %s", code, seqs, classes, stderr)
	}
	code, out, _ = runMain(t, "", "evidence", "export", "--until", "2000-01-01T00:00:00Z")
	if code != exitOK || out != "" {
		t.Errorf("--until before every event: exit %d, stdout %q", code, out)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE evidence_outbox SET event = convert_to(replace(convert_from(event, 'UTF8'), 'dropped', 'failed'), 'UTF8') WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runMain(t, "", "evidence", "export")
	if code != exitNotClean || out != "" {
		t.Errorf("tampered outbox: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}
