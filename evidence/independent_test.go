package evidence

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// The vectors of docs/evidence.md. Their "strings" part is written by hand
// from the specification (hashes by another implementation of SHA-256);
// their "chain" part is three events leaseguard built and sealed, refreshed
// with -update-vectors, and checked by the independent verifier below.
const vectorsFile = "testdata/vectors.json"

var updateVectors = flag.Bool("update-vectors", false, "rewrite the chain part of "+vectorsFile)

type vector struct {
	Name      string `json:"name,omitempty"`
	Doc       string `json:"doc,omitempty"`
	Event     string `json:"event,omitempty"`
	Canonical string `json:"canonical"`
	Hash      string `json:"hash"`
}

type vectors struct {
	Strings []vector `json:"strings"`
	Chain   []vector `json:"chain"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", vectorsFile, err)
	}
	if len(v.Strings) == 0 || (len(v.Chain) != 3 && !*updateVectors) {
		t.Fatalf("%s: %d string vectors, %d chain events", vectorsFile, len(v.Strings), len(v.Chain))
	}
	return v
}

// vectorChain builds the chain of the vectors: a finding whose summary has
// non-ASCII text and U+2028, its revocation, and a policy change.
func vectorChain(t *testing.T) []vector {
	b := testBuilder()
	f := sampleFinding(1)
	f.Summary = "user outlived its lease by 42s in Zürich\u2028(second line)"
	cmd := sampleCommand(1)
	fev, err := b.Finding(f, sampleLease(1))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := b.Revocation(cmd, sampleResult(cmd, schemas.OutcomeDropped), sampleLease(1))
	if err != nil {
		t.Fatal(err)
	}
	pev, err := b.Policy(schemas.PolicyChange{Version: 1, Kind: schemas.PolicyConfiguration, Actor: "configuration",
		Reason: "configured starting point", ChangedAt: t0, Scope: "*",
		Modes: map[string]schemas.Mode{"lease-expired-not-revoked": schemas.ModeEnforce}})
	if err != nil {
		t.Fatal(err)
	}
	var out []vector
	for _, ev := range sealAll(t, []Event{fev, rev, pev}) {
		raw, err := encodeJSON(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, vector{Event: string(raw), Canonical: string(testCanonicalWithoutHash(t, raw)), Hash: ev.Hash})
	}
	return out
}

func testCanonicalWithoutHash(t *testing.T, doc []byte) []byte {
	t.Helper()
	v, err := parseJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	delete(v.(map[string]any), "hash")
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCanonicalVectors(t *testing.T) {
	v := loadVectors(t)
	if *updateVectors {
		v.Chain = vectorChain(t)
		b, err := json.MarshalIndent(v, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range v.Strings {
		got, err := Canonical([]byte(s.Doc))
		if err != nil {
			t.Errorf("%s: %v", s.Name, err)
			continue
		}
		if string(got) != s.Canonical {
			t.Errorf("%s:\n got %q\nwant %q", s.Name, got, s.Canonical)
		}
		sum := sha256.Sum256([]byte(s.Canonical))
		if h := HashPrefix + hex.EncodeToString(sum[:]); h != s.Hash {
			t.Errorf("%s: the vector's hash %s is not the hash of its canonical text (%s)", s.Name, s.Hash, h)
		}
	}
	var events []Event
	for i, c := range v.Chain {
		if h, err := hashDocument([]byte(c.Event)); err != nil || h != c.Hash {
			t.Errorf("chain event %d: hash %s (%v), vector says %s", i+1, h, err, c.Hash)
		}
		if got := testCanonicalWithoutHash(t, []byte(c.Event)); string(got) != c.Canonical {
			t.Errorf("chain event %d: canonical text differs from the vector", i+1)
		}
		ev, err := decodeEvent([]byte(c.Event))
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	if rep, err := Verify(events, VerifyOptions{}); err != nil || !rep.OK() || rep.Checked != 3 {
		t.Errorf("the vector chain does not verify: %+v %v", rep, err)
	}
}

// node runs the independent verifier; it fails the test when Node.js is
// missing, as a missing PostgreSQL does: a skipped check proves nothing.
func node(t *testing.T, args ...string) (stdout string, exit int) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node (Node.js 18 or later) is needed to run the independent verifier: apt-get install nodejs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"verifyjs/verify.mjs"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("node: %v: %s", err, errb.String())
	}
	return out.String(), 0
}

func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIndependentVerifierAgreesOnTheVectors(t *testing.T) {
	v := loadVectors(t)
	var docs []string
	for _, s := range v.Strings {
		docs = append(docs, s.Doc)
	}
	for _, c := range v.Chain {
		docs = append(docs, c.Event)
	}
	out, code := node(t, "--canonical", writeLines(t, docs))
	if code != 0 {
		t.Fatalf("node --canonical exit %d: %s", code, out)
	}
	want := append(append([]vector{}, v.Strings...), v.Chain...)
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) != len(want) {
		t.Fatalf("node printed %d lines for %d documents", len(got), len(want))
	}
	for i, line := range got {
		var r vector
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Canonical != want[i].Canonical || r.Hash != want[i].Hash {
			t.Errorf("document %d (%s): node gives %q %s, vector %q %s", i+1, want[i].Name, r.Canonical, r.Hash, want[i].Canonical, want[i].Hash)
		}
	}
	var chain []string
	for _, c := range v.Chain {
		chain = append(chain, c.Event)
	}
	if out, code := node(t, writeLines(t, chain)); code != 0 || !strings.Contains(out, `"checked":3`) {
		t.Errorf("node does not verify the vector chain: exit %d %s", code, out)
	}
}

// TestIndependentVerifierAgreesOnARealChain: events appended to a real
// outbox, U+2028 and non-ASCII text included, exported as stored, and
// copies of the export altered as an attacker or a lossy pipeline would.
// leaseguard's verifier and the independent one must agree on each.
func TestIndependentVerifierAgreesOnARealChain(t *testing.T) {
	pool := testDB(t)
	ctx := context.Background()
	events := sampleEvents(t, 5)
	f := sampleFinding(9)
	f.Summary = "reason with a line separator\u2028and ünïcödé, <html> & \"quotes\""
	fev, err := testBuilder().Finding(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	events = append(events[:2], append([]Event{fev}, events[2:]...)...)
	for _, ev := range events {
		appendOne(t, pool, ev)
	}
	rows, err := pool.Query(ctx, `SELECT convert_from(event, 'UTF8') FROM evidence_outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil || len(lines) != 6 {
		t.Fatalf("read %d events: %v", len(lines), err)
	}
	if !strings.Contains(lines[2], `\u2028`) {
		t.Fatalf("the stored event does not carry an escaped U+2028: %s", lines[2])
	}
	cases := []struct {
		name   string
		lines  []string
		ok     bool
		breakS int64
	}{
		{"as stored", lines, true, 0},
		{"a redelivered event", insert(lines, 3, lines[2]), true, 0},
		{"keys reordered and spaced", replace(lines, 2, reorder(t, lines[2])), true, 0},
		{"the U+2028 unescaped by a pipeline", replace(lines, 2, strings.Replace(lines[2], `\u2028`, "\u2028", 1)), true, 0},
		{"a word changed", replace(lines, 2, strings.Replace(lines[2], "ünïcödé", "unicode", 1)), false, 3},
		{"a middle event removed", append(append([]string{}, lines[:3]...), lines[4:]...), false, 5},
		{"two events swapped", swap(lines, 3, 4), false, 5},
		{"a number rewritten", replace(lines, 0, strings.Replace(lines[0], `"chainseq":1`, `"chainseq":1.0`, 1)), false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep, err := VerifyFile(strings.NewReader(strings.Join(c.lines, "\n")), VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out, code := node(t, writeLines(t, c.lines))
			var js VerifyReport
			if err := json.Unmarshal([]byte(out), &js); err != nil {
				t.Fatalf("node output %q: %v", out, err)
			}
			if rep.OK() != c.ok || (code == 0) != c.ok {
				t.Fatalf("want ok=%v: leaseguard %+v, node exit %d %s", c.ok, rep, code, out)
			}
			if c.ok && (js.Checked != rep.Checked || js.LastHash != rep.LastHash || js.Duplicates != rep.Duplicates) {
				t.Errorf("the verifiers disagree: leaseguard %+v, node %+v", rep, js)
			}
			if !c.ok && (rep.FirstBreak.Seq != c.breakS || js.FirstBreak == nil || js.FirstBreak.Seq != c.breakS) {
				t.Errorf("break at seq %d expected: leaseguard %+v, node %s", c.breakS, rep.FirstBreak, out)
			}
		})
	}
}

func replace(lines []string, i int, s string) []string {
	out := append([]string{}, lines...)
	out[i] = s
	return out
}

func insert(lines []string, i int, s string) []string {
	out := append([]string{}, lines[:i]...)
	out = append(out, s)
	return append(out, lines[i:]...)
}

func swap(lines []string, i, j int) []string {
	out := append([]string{}, lines...)
	out[i], out[j] = out[j], out[i]
	return out
}

// reorder writes an event with its top-level keys reversed and spaces
// between tokens, as a SIEM that re-serialises JSON might.
func reorder(t *testing.T, line string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	var b strings.Builder
	b.WriteString("{ ")
	for i := len(keys) - 1; i >= 0; i-- {
		k, _ := json.Marshal(keys[i])
		b.Write(k)
		b.WriteString(" : ")
		b.Write(m[keys[i]])
		if i > 0 {
			b.WriteString(" , ")
		}
	}
	b.WriteString(" }")
	return b.String()
}

// TestIndependentVerifierAgreesOnCheckpoints: a real outbox with
// checkpoints, exported whole, cut off, and with a forged checkpoint; the
// independent verifier, given the evidence public key, agrees with
// leaseguard's on the checkpoints, the unconfirmed tail and the breaks.
func TestIndependentVerifierAgreesOnCheckpoints(t *testing.T) {
	pool := testDB(t)
	ctx := context.Background()
	s, other := testEvidenceKey(t, 1), testEvidenceKey(t, 2)
	events := sampleEvents(t, 4)
	f := sampleFinding(9)
	f.Summary = "a line separator\u2028and ünïcödé"
	fev, err := testBuilder().Finding(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range append(events, fev) {
		appendOne(t, pool, ev)
		if i == 1 || i == 4 { // checkpoints at seq 3 and 7
			if _, ok, err := AppendCheckpoint(ctx, pool, testBuilder(), s, t0.Add(time.Duration(i)*time.Second)); err != nil || !ok {
				t.Fatalf("checkpoint: %v %v", ok, err)
			}
		}
	}
	var lines []string
	for _, ev := range outboxEvents(t, pool) {
		raw, err := RawEvent(ctx, pool, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(raw))
	}
	if len(lines) != 7 {
		t.Fatalf("%d events", len(lines))
	}
	forged := resignCheckpoint(t, outboxEvents(t, pool), 6, func(d *CheckpointData) {
		sig := ed25519.Sign(other.priv, CheckpointSigningBytes(d.CoversSeq, d.CoversHash, d.SignedAt, d.KeyID))
		d.Signature = base64.StdEncoding.EncodeToString(sig)
	})
	pub := base64.StdEncoding.EncodeToString(s.PublicKey())
	cases := []struct {
		name      string
		lines     []string
		keys      bool
		breakSeq  int64 // 0: intact
		tail      int
		confirmed bool
	}{
		{"whole", lines, true, 0, 0, true},
		{"the last two events cut off", lines[:5], true, 0, 2, false},
		{"the last checkpoint cut off", lines[:6], true, 0, 3, false},
		{"no key", lines, false, 0, 0, false},
		{"a forged checkpoint", append(lines[:6:6], exportLines(t, forged[6:])), true, 7, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := VerifyOptions{}
			args := []string{}
			if c.keys {
				opts.Keys = []ed25519.PublicKey{s.PublicKey()}
				args = append(args, "--key", pub)
			}
			rep, err := VerifyFile(strings.NewReader(strings.Join(c.lines, "\n")), opts)
			if err != nil {
				t.Fatal(err)
			}
			file := writeLines(t, c.lines)
			out, code := node(t, append(args, file)...)
			var js struct {
				VerifyReport
				Confirmed bool `json:"confirmed"`
			}
			if err := json.Unmarshal([]byte(out), &js); err != nil {
				t.Fatalf("node output %q: %v", out, err)
			}
			if c.breakSeq != 0 {
				if rep.OK() || rep.FirstBreak.Seq != c.breakSeq || js.FirstBreak == nil || js.FirstBreak.Seq != c.breakSeq || code != 1 {
					t.Errorf("want a break at seq %d: leaseguard %+v, node exit %d %s", c.breakSeq, rep.FirstBreak, code, out)
				}
				return
			}
			if !rep.OK() || code != 0 || rep.UnconfirmedTail != c.tail || js.UnconfirmedTail != c.tail ||
				rep.Confirmed() != c.confirmed || js.Confirmed != c.confirmed || js.Checkpoints != rep.Checkpoints ||
				js.SignaturesChecked != rep.SignaturesChecked || *js.LastCheckpoint != *rep.LastCheckpoint {
				t.Errorf("the verifiers disagree or are wrong (tail %d, confirmed %v): leaseguard %+v, node exit %d %s",
					c.tail, c.confirmed, rep, code, out)
			}
			// --require-checkpoint: a tail, or unchecked signatures, fail.
			if _, code := node(t, append(args, "--require-checkpoint", file)...); (code == 0) != c.confirmed {
				t.Errorf("node --require-checkpoint exit %d, confirmed %v", code, c.confirmed)
			}
		})
	}
}

// TestIndependentVerifierChecksTheExampleCheckpoint: the example chain of
// schemas/examples ends with a checkpoint that the key docs/evidence.md
// names verifies; the independent verifier confirms it from that key.
func TestIndependentVerifierChecksTheExampleCheckpoint(t *testing.T) {
	var lines []string
	for _, name := range []string{"finding", "revocation", "policy", "approval", "checkpoint"} {
		raw, err := os.ReadFile(filepath.Join("..", "schemas", "examples", "evidence-"+name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, b.String())
	}
	// The public key docs/evidence.md gives for the example.
	const docKey = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
	out, code := node(t, "--key", docKey, "--require-checkpoint", writeLines(t, lines))
	if code != 0 || !strings.Contains(out, `"confirmed":true`) {
		t.Errorf("node: exit %d %s", code, out)
	}
	if out, code := node(t, "--key", base64.StdEncoding.EncodeToString(testEvidenceKey(t, 2).PublicKey()), writeLines(t, lines)); code != 1 {
		t.Errorf("node with another key: exit %d %s", code, out)
	}
}
