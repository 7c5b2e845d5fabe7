package ingest

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/schemas"
)

// corpusEntry is one line of testdata/vault-entry-shapes.jsonl: an audit
// entry shaped as some Vault server writes it, with the kind leaseguard must
// give it. The entries were written for this test, with invented values,
// after the shapes public SIEM integrations test their Vault parsers with
// (Enterprise KMIP entries, help requests without an id, addresses with
// ports) and the fields Vault 1.21's audit/types.go can write.
type corpusEntry struct {
	Kind  Kind            `json:"kind"`
	Shape string          `json:"shape"`
	Entry json.RawMessage `json:"entry"`
}

func readCorpus(t *testing.T) []corpusEntry {
	t.Helper()
	f, err := os.Open("testdata/vault-entry-shapes.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c corpusEntry
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("corpus line %d: %v", len(out)+1, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCorpusEveryShapeIsClassified decodes and classifies every entry of
// the corpus: none is rejected, and each gets the kind the corpus names.
func TestCorpusEveryShapeIsClassified(t *testing.T) {
	corpus := readCorpus(t)
	if len(corpus) < 80 {
		t.Fatalf("corpus has %d entries; it should hold every shape", len(corpus))
	}
	var d Decoder
	for i, c := range corpus {
		if err := schemas.ValidateJSON("audit-entry", c.Entry); err != nil {
			t.Errorf("line %d (%s): the published schema refuses it: %v", i+1, c.Shape, err)
		}
		e, err := d.Decode(c.Entry)
		if err != nil {
			t.Errorf("line %d (%s): rejected: %v", i+1, c.Shape, err)
			continue
		}
		n, err := Normalize(&e, schemas.SourceRef{Transport: "file", Stream: "corpus", Offset: int64(i + 1)})
		if err != nil {
			t.Errorf("line %d (%s): rejected: %v", i+1, c.Shape, err)
			continue
		}
		if n.Kind != c.Kind {
			t.Errorf("line %d (%s): kind %s, want %s", i+1, c.Shape, n.Kind, c.Kind)
		}
	}
}

// TestCorpusCoversEveryTypeAndOperation checks the corpus itself: every
// entry type and every operation Vault 1.x writes is in it, as a request
// and as a response, so that the test above covers them.
func TestCorpusCoversEveryTypeAndOperation(t *testing.T) {
	ops := []string{"create", "read", "update", "patch", "delete", "list", "help",
		"alias-lookahead", "resolve-role", "header", "renew", "revoke", "rollback", "recover", "scan"}
	types := []string{"request", "response", "kmip-request", "kmip-response"}
	seenOps := map[string]map[string]bool{}
	seenTypes := map[string]bool{}
	for _, c := range readCorpus(t) {
		var e struct {
			Type    string `json:"type"`
			Request struct {
				Operation string `json:"operation"`
			} `json:"request"`
		}
		if err := json.Unmarshal(c.Entry, &e); err != nil {
			t.Fatal(err)
		}
		seenTypes[e.Type] = true
		if seenOps[e.Request.Operation] == nil {
			seenOps[e.Request.Operation] = map[string]bool{}
		}
		seenOps[e.Request.Operation][e.Type] = true
	}
	for _, ty := range types {
		if !seenTypes[ty] {
			t.Errorf("no %s entry in the corpus", ty)
		}
	}
	for _, op := range ops {
		if !seenOps[op]["request"] || !seenOps[op]["response"] {
			t.Errorf("operation %s: request %v, response %v in the corpus", op, seenOps[op]["request"], seenOps[op]["response"])
		}
	}
}

// TestEntriesWithoutRequestIDGetAStableID: an entry Vault writes without
// request.id (help, KMIP) gets an id derived from the entry, the same on
// every delivery and different for different entries.
func TestEntriesWithoutRequestIDGetAStableID(t *testing.T) {
	var withoutID [][]byte
	for _, c := range readCorpus(t) {
		if !strings.Contains(string(c.Entry), `"id":"`) || strings.Contains(c.Shape, "no request.id") {
			withoutID = append(withoutID, c.Entry)
		}
	}
	if len(withoutID) < 5 {
		t.Fatalf("%d entries without request.id in the corpus", len(withoutID))
	}
	var d Decoder
	var ids []string
	for _, b := range withoutID {
		e1, err1 := d.Decode(b)
		e2, err2 := d.Decode(append([]byte("  "), append(slices.Clone(b), '\n')...))
		if err1 != nil || err2 != nil {
			t.Fatalf("decode: %v, %v", err1, err2)
		}
		if e1.Request.ID == "" || e1.Request.ID != e2.Request.ID {
			t.Fatalf("derived ids %q and %q for one entry", e1.Request.ID, e2.Request.ID)
		}
		if !e1.RequestIDDerived {
			t.Errorf("id %q not marked derived", e1.Request.ID)
		}
		ids = append(ids, e1.Request.ID)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != len(withoutID) {
		t.Errorf("derived ids collide: %v", ids)
	}
}
