package evidence

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestVerifyChain(t *testing.T) {
	t.Parallel()
	chain := sealAll(t, sampleEvents(t, 20))
	clone := func() []Event { return append([]Event(nil), chain...) }

	tests := []struct {
		name      string
		events    func() []Event
		breakAt   int64 // 0: intact
		reason    string
		checked   int
		duplicate int
	}{
		{name: "intact", events: clone, checked: 20},
		{name: "empty", events: func() []Event { return nil }},
		{name: "event 7 altered", breakAt: 7, reason: "altered", checked: 6, events: func() []Event {
			ev := clone()
			ev[6].Subject = "main/someone-else"
			return ev
		}},
		{name: "event 7 data altered", breakAt: 7, reason: "altered", checked: 6, events: func() []Event {
			ev := clone()
			ev[6].Data = bytes.Replace(ev[6].Data, []byte(`"status_id":1`), []byte(`"status_id":2`), 1)
			return ev
		}},
		{name: "event 7 altered and resealed", breakAt: 8, reason: "prevhash", checked: 7, events: func() []Event {
			ev := clone()
			ev[6].Subject = "main/someone-else"
			if err := Seal(&ev[6], ev[5].Hash, 7); err != nil {
				t.Fatal(err)
			}
			return ev
		}},
		{name: "event 12 removed", breakAt: 13, reason: "missing", checked: 11, events: func() []Event {
			ev := clone()
			return append(ev[:11], ev[12:]...)
		}},
		{name: "events 5 and 6 swapped", breakAt: 6, reason: "out of order", checked: 4, events: func() []Event {
			ev := clone()
			ev[4], ev[5] = ev[5], ev[4]
			return ev
		}},
		{name: "first event removed", breakAt: 2, reason: "missing", events: func() []Event { return clone()[1:] }},
		{name: "event 3 redelivered", checked: 20, duplicate: 1, events: func() []Event {
			ev := clone()
			return append(ev[:3], append([]Event{ev[2]}, ev[3:]...)...)
		}},
		{name: "event 3 repeated later", breakAt: 3, reason: "repeated", checked: 5, events: func() []Event {
			ev := clone()
			return append(ev[:5], append([]Event{ev[2]}, ev[5:]...)...)
		}},
		{name: "not from genesis", breakAt: 1, reason: "genesis", events: func() []Event {
			ev := clone()
			if err := Seal(&ev[0], HashPrefix+strings.Repeat("1", 64), 1); err != nil {
				t.Fatal(err)
			}
			return ev
		}},
		{name: "unsealed event", breakAt: 21, reason: "not sealed", checked: 20, events: func() []Event {
			return append(clone(), sampleEvents(t, 1)...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Verify(tt.events(), VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Checked != tt.checked || rep.Duplicates != tt.duplicate {
				t.Errorf("checked %d duplicates %d, want %d %d", rep.Checked, rep.Duplicates, tt.checked, tt.duplicate)
			}
			if tt.breakAt == 0 {
				if !rep.OK() {
					t.Fatalf("unexpected break: %s", rep.FirstBreak)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("no break found, want one at seq %d", tt.breakAt)
			}
			if rep.FirstBreak.Seq != tt.breakAt || !strings.Contains(rep.FirstBreak.Reason, tt.reason) {
				t.Errorf("break = %s, want seq %d (%s)", rep.FirstBreak, tt.breakAt, tt.reason)
			}
		})
	}
}

func TestSealCoversChainAttributes(t *testing.T) {
	t.Parallel()
	ev := sampleEvents(t, 1)[0]
	a, b := ev, ev
	if err := Seal(&a, GenesisHash, 1); err != nil {
		t.Fatal(err)
	}
	if err := Seal(&b, GenesisHash, 2); err != nil {
		t.Fatal(err)
	}
	if a.Hash == b.Hash {
		t.Error("the hash does not cover chainseq")
	}
	if !strings.HasPrefix(a.Hash, "sha256:") || len(a.Hash) != len("sha256:")+64 {
		t.Errorf("hash = %q", a.Hash)
	}
	// Sealing a sealed event again gives the same hash (the old hash is
	// not part of what is hashed).
	c := a
	if err := Seal(&c, GenesisHash, 1); err != nil || c.Hash != a.Hash {
		t.Errorf("resealed hash %s, want %s (%v)", c.Hash, a.Hash, err)
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{`{"b": 1, "a": {"d": [3, 2, {"z": null, "y": true}], "c": "x"}}`, `{"a":{"c":"x","d":[3,2,{"y":true,"z":null}]},"b":1}`},
		{`{"n": 1.50, "e": 1e3, "neg": -0}`, `{"e":1e3,"n":1.50,"neg":-0}`},
		{`{"s": "<a & b>\u00e9\n\"q\""}`, `{"s":"<a & b>é\n\"q\""}`},
		{`{"é": 1, "z": 2, "A": 3}`, `{"A":3,"z":2,"é":1}`},
	}
	for _, tt := range tests {
		got, err := Canonical([]byte(tt.in))
		if err != nil {
			t.Errorf("Canonical(%s): %v", tt.in, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("Canonical(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `{"a":1} {}`, `{"a":`, `[1,]`} {
		if _, err := Canonical([]byte(bad)); err == nil {
			t.Errorf("Canonical(%s) accepted it", bad)
		}
	}
}

// A SIEM may re-serialise an event (other key order, indentation): the hash
// still verifies, because it is computed over the canonical form.
func TestHashSurvivesReserialisation(t *testing.T) {
	t.Parallel()
	ev := sealAll(t, sampleEvents(t, 2))[1]
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, ev), &m); err != nil {
		t.Fatal(err)
	}
	pretty, err := json.MarshalIndent(m, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	h, err := hashDocument(pretty)
	if err != nil {
		t.Fatal(err)
	}
	if h != ev.Hash {
		t.Errorf("hash of re-serialised event %s, want %s", h, ev.Hash)
	}
}

func TestVerifyFile(t *testing.T) {
	t.Parallel()
	chain := sealAll(t, sampleEvents(t, 6))
	lines := func(f func(i int, line []byte) []byte) string {
		var b strings.Builder
		for i, ev := range chain {
			// What a NATS subscriber prints around each message body.
			b.WriteString("[#" + string(rune('1'+i)) + "] Received JetStream message: stream: LEASEGUARD_EVIDENCE subject: leaseguard.evidence\n")
			b.WriteString("Content-Type: application/cloudevents+json\n\n")
			b.Write(f(i, mustJSON(t, ev)))
			b.WriteString("\n\n")
		}
		return b.String()
	}

	rep, err := VerifyFile(strings.NewReader(lines(func(_ int, l []byte) []byte { return l })), VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != 6 || rep.LastHash != chain[5].Hash {
		t.Fatalf("intact file: %+v %v", rep, err)
	}

	// An attribute added to one stored line is an alteration.
	rep, _ = VerifyFile(strings.NewReader(lines(func(i int, l []byte) []byte {
		if i == 3 {
			return append([]byte(`{"siemtag":"x",`), l[1:]...)
		}
		return l
	})), VerifyOptions{})

	if rep.OK() || rep.FirstBreak.Seq != 4 || !strings.Contains(rep.FirstBreak.Reason, "line") {
		t.Errorf("added attribute: %+v", rep.FirstBreak)
	}

	// A line that is not JSON where an event should be.
	rep, _ = VerifyFile(strings.NewReader(lines(func(i int, l []byte) []byte {
		if i == 2 {
			return l[:len(l)/2]
		}
		return l
	})), VerifyOptions{})

	if rep.OK() || rep.FirstBreak.Seq != 3 {
		t.Errorf("truncated line: %+v", rep.FirstBreak)
	}
}
