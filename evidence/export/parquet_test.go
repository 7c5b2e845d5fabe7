package export

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// hyparquetVersion is the independent Parquet reader the test installs from
// npm: a pure JavaScript reader that shares no code with the Go writer.
const hyparquetVersion = "1.31.5"

// independentReader installs hyparquet (once, into the user cache) and
// returns the directory that holds it and the reading script. It fails the
// test when Node.js or npm is missing: a skipped check proves nothing.
func independentReader(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is needed to read the Parquet back with hyparquet: apt-get install nodejs npm", bin)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "leaseguard-test", "hyparquet-"+hyparquetVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "hyparquet", "package.json")); err != nil {
		installHyparquet(t, dir)
	}
	script, err := os.ReadFile(filepath.Join("testdata", "readparquet.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	// Node resolves packages from the script's folder.
	if err := os.WriteFile(filepath.Join(dir, "readparquet.mjs"), script, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// installHyparquet installs into a fresh folder and renames it into place,
// so a concurrent or interrupted install never leaves half a package.
func installHyparquet(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", tmp, "--no-audit", "--no-fund", "--no-save",
		"--ignore-scripts", "hyparquet@"+hyparquetVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install hyparquet@%s (the registry must be reachable): %v\n%s", hyparquetVersion, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "node_modules", "hyparquet", "package.json")); statErr != nil {
			t.Fatalf("install hyparquet: %v", err)
		}
	}
}

// readParquet reads a file with hyparquet.
func readParquet(t *testing.T, reader, path string) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", filepath.Join(reader, "readparquet.mjs"), path)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("hyparquet cannot read %s: %v\n%s", path, err, errb.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("reader output: %v: %s", err, out.String())
	}
	return rows
}

// checkRow compares a row as hyparquet read it with the event it came from.
func checkRow(t *testing.T, row map[string]any, e expected) {
	t.Helper()
	wantTime := time.UnixMilli(e.Time).UTC().Format("2006-01-02T15:04:05.000Z")
	got := fmt.Sprintf("class_uid=%v time=%v status_code=%v status_detail=%v chain_seq=%v chain_hash=%v metadata.uid=%v",
		row["class_uid"], row["time"], row["status_code"], row["status_detail"], row["chain_seq"], row["chain_hash"],
		field(row, "metadata", "uid"))
	want := fmt.Sprintf("class_uid=%d time=%s status_code=%s status_detail=%s chain_seq=%d chain_hash=%s metadata.uid=%s",
		e.ClassUID, wantTime, e.StatusCode, e.StatusDetail, e.Seq, e.Hash, e.MetadataUID)
	if got != want {
		t.Errorf("row\n  %s\nwant\n  %s", got, want)
	}
	if n, u := field(row, "user", "name"), field(row, "user", "uid"); n != nilIfEmpty(e.UserName) || u != nilIfEmpty(e.UserUID) {
		t.Errorf("seq %d: user %v/%v, want %q/%q", e.Seq, n, u, e.UserName, e.UserUID)
	}
	if row["type_uid"] != strconv.FormatInt(int64(e.Data["type_uid"].(float64)), 10) || row["message"] != e.Data["message"] {
		t.Errorf("seq %d: type_uid %v message %v", e.Seq, row["type_uid"], row["message"])
	}
	raw, _ := row["raw"].(string)
	var ev map[string]any
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		t.Fatalf("seq %d: raw is not JSON: %v", e.Seq, err)
	}
	chain := ev["unmapped"].(map[string]any)["chain"].(map[string]any)
	if chain["seq"] != float64(e.Seq) || chain["hash"] != e.Hash {
		t.Errorf("seq %d: raw has unmapped.chain %v", e.Seq, chain)
	}
	delete(ev["unmapped"].(map[string]any), "chain")
	a, _ := json.Marshal(ev)
	b, _ := json.Marshal(e.Data)
	if !bytes.Equal(a, b) {
		t.Errorf("seq %d: raw is not the OCSF event:\n%s\nwant\n%s", e.Seq, a, b)
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// field reads row[group][name]; nil when the group is null.
func field(row map[string]any, group, name string) any {
	g, _ := row[group].(map[string]any)
	return g[name]
}

// TestParquetReadByIndependentReader: the Parquet of a split export loads in
// hyparquet, one file per class with that class's events, each row's typed
// columns agreeing with the event and raw holding the OCSF event.
func TestParquetReadByIndependentReader(t *testing.T) {
	reader := independentReader(t)
	evs := chainEvents(t)
	want := expectations(t, evs)
	dir := t.TempDir()
	files := export(t, evs, Options{Dir: dir, SplitByClass: true, Format: Parquet})
	perClass := map[int][]expected{}
	for _, e := range want {
		perClass[e.ClassUID] = append(perClass[e.ClassUID], e)
	}
	seen := 0
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f.Path), ".parquet")
		class, ok := classFiles[base]
		if !ok {
			t.Errorf("unexpected file %s", f.Path)
			continue
		}
		rows := readParquet(t, reader, f.Path)
		if len(rows) != len(perClass[class]) || f.Events != len(rows) {
			t.Errorf("%s: %d rows (reported %d), want %d", base, len(rows), f.Events, len(perClass[class]))
			continue
		}
		for i, row := range rows {
			checkRow(t, row, perClass[class][i])
		}
		seen++
	}
	if seen != len(classFiles) {
		t.Errorf("%d class files read, want %d", seen, len(classFiles))
	}
}

// TestParquetOneFile: without --class, one Parquet file holds every event
// in chain order, in row groups of at most rowGroupRows rows.
func TestParquetOneFile(t *testing.T) {
	reader := independentReader(t)
	evs := chainEvents(t)
	want := expectations(t, evs)
	defer func(n int64) { rowGroupRows = n }(rowGroupRows)
	rowGroupRows = 4
	files := export(t, evs, Options{Dir: t.TempDir(), Format: Parquet})
	if len(files) != 1 || filepath.Base(files[0].Path) != "evidence.parquet" {
		t.Fatalf("files %+v, want evidence.parquet", files)
	}
	if groups := rowGroups(t, files[0].Path); len(groups) != 3 || groups[0] != 4 || groups[2] != 3 {
		t.Errorf("row groups of %v rows, want [4 4 3]", groups)
	}
	rows := readParquet(t, reader, files[0].Path)
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, row := range rows {
		checkRow(t, row, want[i])
	}
}

// rowGroups reads the row counts of a file's row groups from its footer.
func rowGroups(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var n []int64
	for _, rg := range pf.RowGroups() {
		n = append(n, rg.NumRows())
	}
	return n
}
