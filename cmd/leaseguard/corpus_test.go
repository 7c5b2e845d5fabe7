package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestReplayCorpusRejectsNothing replays every entry shape Vault writes
// (ingest/testdata/vault-entry-shapes.jsonl) into a real ledger: none is
// rejected, and the report counts each kind the corpus names.
func TestReplayCorpusRejectsNothing(t *testing.T) {
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_corpus"))
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	f, err := os.Open("../../ingest/testdata/vault-entry-shapes.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var log bytes.Buffer
	want := map[string]int64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c struct {
			Kind  string          `json:"kind"`
			Entry json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		want[c.Kind]++
		log.Write(c.Entry)
		log.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, log.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runMain(t, "", "replay", "-o", "json", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Rejected != 0 {
		t.Errorf("%d rejected: %+v", rep.Rejected, rep.Rejections)
	}
	for k, n := range want {
		if rep.ByKind[k] != n {
			t.Errorf("kind %s: %d in the report, %d in the corpus", k, rep.ByKind[k], n)
		}
	}
}
