package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/evidence"
)

// classFiles are the files a split export writes, with the class each holds,
// written out from the OCSF 1.8.0 class names.
var classFiles = map[string]int{"account_change": 3001, "detection_finding": 2004, "entity_management": 3004}

// export runs the whole export of evs through a Writer.
func export(t *testing.T, evs []evidence.Event, o Options) []File {
	t.Helper()
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evidence.ExportFile(bytes.NewReader(chainFile(t, evs)), evidence.ExportFilter{}, true, w.Write)
	if err != nil || !rep.OK() {
		w.Abort()
		t.Fatalf("export: %+v %v", rep, err)
	}
	files, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func readLines(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line is not one JSON object: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// checkLine: a line is the plain OCSF event with its chain place, no
// envelope.
func checkLine(t *testing.T, m map[string]any, e expected) {
	t.Helper()
	for _, k := range []string{"specversion", "datacontenttype", "dataschema", "chainseq", "prevhash", "hash", "data", "source", "id"} {
		if _, ok := m[k]; ok {
			t.Errorf("seq %d: CloudEvents attribute %q in the export", e.Seq, k)
		}
	}
	chain := m["unmapped"].(map[string]any)["chain"].(map[string]any)
	if chain["seq"] != float64(e.Seq) || chain["hash"] != e.Hash || m["class_uid"] != float64(e.ClassUID) {
		t.Errorf("line has seq %v hash %v class %v, want %d %s %d", chain["seq"], chain["hash"], m["class_uid"], e.Seq, e.Hash, e.ClassUID)
	}
}

// TestJSONLSplitByClass: --class writes one JSONL file per OCSF class, each
// holding exactly the events of its class, in chain order.
func TestJSONLSplitByClass(t *testing.T) {
	evs := chainEvents(t)
	want := expectations(t, evs)
	dir := t.TempDir()
	files := export(t, evs, Options{Dir: dir, SplitByClass: true, Format: JSONL})
	perClass := map[int][]expected{}
	for _, e := range want {
		perClass[e.ClassUID] = append(perClass[e.ClassUID], e)
	}
	if len(files) != len(classFiles) {
		t.Errorf("files %+v, want one per class %v", files, classFiles)
	}
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f.Path), ".jsonl")
		class, ok := classFiles[base]
		if !ok || f.Path != filepath.Join(dir, base+".jsonl") {
			t.Errorf("unexpected file %s", f.Path)
			continue
		}
		raw, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		lines := readLines(t, raw)
		if len(lines) != len(perClass[class]) || f.Events != len(lines) {
			t.Errorf("%s: %d lines (reported %d), want %d", base, len(lines), f.Events, len(perClass[class]))
			continue
		}
		for i, m := range lines {
			checkLine(t, m, perClass[class][i])
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestJSONLToStdout: without a directory, every event goes to one stream in
// chain order.
func TestJSONLToStdout(t *testing.T) {
	evs := chainEvents(t)
	want := expectations(t, evs)
	var out bytes.Buffer
	export(t, evs, Options{Stdout: &out, Format: JSONL})
	lines := readLines(t, out.Bytes())
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	for i, m := range lines {
		checkLine(t, m, want[i])
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{
		{Format: Parquet, Stdout: os.Stdout},
		{SplitByClass: true, Format: JSONL, Stdout: os.Stdout},
		{Dir: t.TempDir(), Format: "csv"},
		{Dir: filepath.Join(t.TempDir(), "missing"), Format: JSONL},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
