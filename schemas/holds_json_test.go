package schemas

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// randomDoc is a document of random texts (screenText) as keys and values,
// nested, some of them JSON documents themselves, as evidence carries
// statements and messages.
func randomDoc(r *rand.Rand, depth int) any {
	switch k := r.IntN(6); {
	case depth > 2 || k < 2:
		return screenText(r)
	case k == 2:
		b, _ := json.Marshal(map[string]any{screenText(r): screenText(r)})
		return string(b)
	case k == 3:
		a := make([]any, r.IntN(3))
		for i := range a {
			a[i] = randomDoc(r, depth+1)
		}
		return a
	default:
		m := map[string]any{}
		for range 1 + r.IntN(3) {
			m[screenText(r)] = randomDoc(r, depth+1)
		}
		m["n"] = 1.5
		return m
	}
}

// HoldsSecretJSON answers as HoldsSecret does for the tree the document
// decodes to, on 50,000 random documents, escaped as encoding/json escapes
// them, with HTML escaping and without.
func TestHoldsSecretJSONIsHoldsSecret(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	var holding int
	for range 50000 {
		doc := randomDoc(r, 0)
		for _, html := range []bool{false, true} {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(html)
			if err := enc.Encode(doc); err != nil {
				t.Fatal(err)
			}
			var tree any
			if err := json.Unmarshal(buf.Bytes(), &tree); err != nil {
				t.Fatal(err)
			}
			want := HoldsSecret(tree)
			if got := HoldsSecretJSON(buf.Bytes()); got != want {
				t.Fatalf("HoldsSecretJSON(%s) = %v, HoldsSecret of its tree %v", buf.Bytes(), got, want)
			}
			if want {
				holding++
			}
		}
	}
	if holding < 10000 || holding > 90000 {
		t.Fatalf("%d of 100,000 documents hold a secret: the documents do not test both answers", holding)
	}
}

// Every revocation's evidence quotes its statements ("DROP ROLE \"v-…\""):
// an escaped quote, which made the screen before the look fail for every
// event, and so every event was decoded into a tree to be looked at. The
// look at the document's own tokens decodes none of them.
func TestHoldsSecretJSONDecodesNothingPlain(t *testing.T) {
	doc := []byte(`{"statements":["DROP ROLE \"v-app-x\"","REASSIGN OWNED BY \"v-app-x\" TO \"owner\""],` +
		`"actor":{"user":{"name":"v-app-x","uid":"16384"}},"message":"dropped; 0 sessions left","n":3}`)
	if HoldsSecretJSON(doc) {
		t.Fatal("a clean document holds a secret")
	}
	if allocs := testing.AllocsPerRun(50, func() { HoldsSecretJSON(doc) }); allocs > 3 {
		t.Errorf("looking at a clean document allocates %.0f times, want at most 3", allocs)
	}
}

// textHoldsSecret skips LooksLikeSecret only where it would say no: on
// 200,000 random texts with quotes and colons among their pieces.
func TestTextHoldsSecretIsLooksLikeSecret(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 17))
	for range 200000 {
		s := screenText(r) + screenText(r)
		if got, want := textHoldsSecret([]byte(s)), LooksLikeSecret(s); got != want {
			t.Fatalf("textHoldsSecret(%q) = %v, LooksLikeSecret %v", s, got, want)
		}
	}
}

// A clean finding that quotes a name ("v-app-x") is returned as is,
// without being decoded into a tree to be looked at: the screen before
// the look took any escaped quote for JSON inside a string.
func TestWithholdFindingDecodesNothingClean(t *testing.T) {
	f := Finding{ID: "f1", Rule: "orphan-role", Summary: `role "v-app-x" has no lease`,
		Facts: map[string]any{"statement": `DROP ROLE "v-app-x"`, "sessions": 2}}
	if got := WithholdFinding(f); got.Facts["withheld"] != nil {
		t.Fatalf("withheld %v from a clean finding", got.Facts["withheld"])
	}
	plain := testing.AllocsPerRun(50, func() { _, _ = json.Marshal(f) })
	if allocs := testing.AllocsPerRun(50, func() { WithholdFinding(f) }); allocs > plain+2 {
		t.Errorf("WithholdFinding of a clean finding allocates %.0f times, encoding it %.0f", allocs, plain)
	}
}
