package evidence

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The relay hashes every row it publishes, and the Builder canonicalises
// every event it builds. Both used to parse the event into maps and
// strings (about 200 allocations a revocation) to write its canonical
// form; the token list needs a handful. Its buffers are reused, and the
// race detector's pool drops some of them: up to about 15 there, so the
// bound is 25.
func TestHashingAnEventBuildsNoTree(t *testing.T) {
	for _, ev := range sampleEvents(t, 2) {
		ev, raw := sealed(t, ev)
		allocs := testing.AllocsPerRun(50, func() {
			if _, err := hashDecoded(raw); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 25 {
			t.Errorf("%s event: hashing it allocates %.0f times, want at most 25", ev.Type, allocs)
		}
	}
}

// canonicalSeeds are documents whose canonical form without "hash" is
// compared with the tree's: escapes the encoder writes and ones it does
// not, keys out of order, nested "hash" keys (kept), keys twice.
var canonicalSeeds = []string{
	`{"b":1,"a":{"d":[3,2,{"z":null,"y":true}],"c":"x"},"hash":"sha256:00"}`,
	`{"s":"DROP ROLE \"v-x\"\n\tdone\\","t":"\u00e9\u2028\/","u":"\ud83d\ude00","b":"\b\f\u001f"}`,
	"{\"raw\":\"caf\xc3\xa9 \xff\",\"k\xc3\xa9\":1,\"k\\u00e9x\":2}",
	`{"data":{"hash":1,"a":[{"hash":2}]},"hash":3}`,
	`{"n":1.50,"e":-1E+3,"z":-0,"x":[true,false,null]}`,
	`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a":1,"\u0061":2}`, `{"hash":1,"hash":2}`,
	` { "a" : [ 1 , { } , [ ] ] , "" : "" } `, `{}`, `[]`, `"x"`, `{"a":1} 2`,
	`{"\u007f":"\u007f","~":"~","\"":"\\"}`,
}

func TestCanonicalEventIsTheTreesForm(t *testing.T) {
	t.Parallel()
	for _, doc := range canonicalSeeds {
		checkCanonicalEvent(t, []byte(doc))
	}
	for _, ev := range sampleEvents(t, 4) {
		_, raw := sealed(t, ev)
		checkCanonicalEvent(t, raw)
	}
}

// sealed is ev sealed at the head of a chain, and its encoding.
func sealed(t testing.TB, ev Event) (Event, []byte) {
	t.Helper()
	if err := Seal(&ev, GenesisHash, 1); err != nil {
		t.Fatal(err)
	}
	raw, err := encodeJSON(ev)
	if err != nil {
		t.Fatal(err)
	}
	return ev, raw
}

func FuzzCanonicalEvent(f *testing.F) {
	for _, doc := range append(canonicalSeeds, parseSeeds...) {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if json.Valid(doc) {
			checkCanonicalEvent(t, doc)
		}
	})
}

// checkCanonicalEvent compares canonicalEvent with the canonical form of
// parseJSON's tree without its "hash" (the form verify computes).
func checkCanonicalEvent(t *testing.T, doc []byte) {
	t.Helper()
	var want []byte
	obj, wantErr := eventObject(parseJSON(doc))
	if wantErr == nil {
		want, wantErr = canonicalBytes(obj)
	}
	got, err := canonicalEvent(doc)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Errorf("canonicalEvent(%q): error %v, the tree's %v", doc, err, wantErr)
	case err == nil && !bytes.Equal(got, want):
		t.Errorf("canonicalEvent(%q)\n = %s\nwant %s", doc, got, want)
	}
}

// The Builder's events are encoded with their data put in place of a
// stand-in: the bytes must be encodeJSON's, for data with characters
// encoding/json escapes (or, with HTML escaping, would) and without.
func TestEncodeEventIsEncodeJSON(t *testing.T) {
	events := sampleEvents(t, 4)
	f := sampleFinding(9)
	f.Summary = "a <b> & \"c\" \u2028 é \\ done"
	ev, err := testBuilder().Finding(f, sampleLease(9))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range append(events, ev) {
		want, err := encodeJSON(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeEvent(ev, true)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("encodeEvent = %s, %v\nwant %s", got, err, want)
		}
	}
}
