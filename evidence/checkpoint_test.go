package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// testEvidenceKey is a fixed evidence key (seed 0x01…); otherKey forges.
func testEvidenceKey(t testing.TB, fill byte) *CheckpointSigner {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = fill
	}
	s, err := NewCheckpointSigner(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkpointChain builds a sealed chain from layout: "e" is an ordinary
// event, "C" a checkpoint of the event before it signed by s. Event times
// step by step from t0; a checkpoint is signed at its event's time.
func checkpointChain(t testing.TB, s *CheckpointSigner, layout string, step time.Duration) []Event {
	t.Helper()
	plain := sampleEvents(t, strings.Count(layout, "e"))
	var out []Event
	prev, at := GenesisHash, t0
	for i, c := range layout {
		var ev Event
		switch c {
		case 'e':
			ev, plain = plain[0], plain[1:]
			ev.Time = at
		case 'C':
			var err error
			if ev, err = testBuilder().Checkpoint(s, int64(i), prev, at); err != nil {
				t.Fatal(err)
			}
		}
		if err := Seal(&ev, prev, int64(i+1)); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
		prev, at = ev.Hash, at.Add(step)
	}
	return out
}

func exportLines(t testing.TB, events []Event) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range events {
		raw, err := encodeJSON(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
		b.WriteByte('\n')
	}
	return b.String()
}

func verifyLines(t testing.TB, events []Event, opts VerifyOptions) VerifyReport {
	t.Helper()
	rep, err := VerifyFile(strings.NewReader(exportLines(t, events)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestVerifyReportsACutTail: cutting the last events off an export leaves
// an intact chain; the checkpoints show what is missing.
func TestVerifyReportsACutTail(t *testing.T) {
	s := testEvidenceKey(t, 1)
	keys := VerifyOptions{Keys: []ed25519.PublicKey{s.PublicKey()}}
	full := checkpointChain(t, s, "eeeCeeC", time.Second)

	rep := verifyLines(t, full, keys)
	if !rep.OK() || !rep.Confirmed() || rep.UnconfirmedTail != 0 || rep.Checkpoints != 2 {
		t.Fatalf("the whole export: %+v", rep)
	}
	if lc := rep.LastCheckpoint; lc == nil || lc.Seq != 7 || lc.CoversSeq != 6 || lc.CoversHash != full[5].Hash || lc.KeyID != s.KeyID() {
		t.Errorf("last checkpoint: %+v", rep.LastCheckpoint)
	}

	cut := verifyLines(t, full[:5], keys) // the last event and the checkpoint after it are gone
	if !cut.OK() {
		t.Fatalf("a cut chain is still a chain: %+v", cut)
	}
	if cut.Confirmed() || cut.UnconfirmedTail != 1 || cut.LastCheckpoint == nil || cut.LastCheckpoint.CoversSeq != 3 {
		t.Errorf("cut after seq 5: want 1 unconfirmed event after the checkpoint covering seq 3, got %+v", cut)
	}
	if !hasWarning(cut, "unconfirmed tail: 1 event(s) after the checkpoint at seq 4") {
		t.Errorf("warnings %q", cut.Warnings)
	}

	none := verifyLines(t, full[:3], keys)
	if none.Confirmed() || none.LastCheckpoint != nil || none.UnconfirmedTail != 3 || !hasWarning(none, "no checkpoint") {
		t.Errorf("no checkpoint at all: %+v", none)
	}
}

// TestVerifyReportsAnOverdueCheckpoint: events later than the last
// checkpoint by more than interval+grace should have been confirmed by the
// next one: it was cut off, or the relay stopped.
func TestVerifyReportsAnOverdueCheckpoint(t *testing.T) {
	s := testEvidenceKey(t, 1)
	opts := VerifyOptions{Keys: []ed25519.PublicKey{s.PublicKey()}, Interval: time.Minute, Grace: time.Minute}
	recent := verifyLines(t, checkpointChain(t, s, "eeCee", 30*time.Second), opts)
	if recent.CheckpointOverdue || recent.UnconfirmedTail != 2 {
		t.Errorf("a tail 60s after the checkpoint is not overdue: %+v", recent)
	}
	late := verifyLines(t, checkpointChain(t, s, "eeCee", 90*time.Second), opts)
	if !late.CheckpointOverdue || !hasWarning(late, "overdue") {
		t.Errorf("a tail 180s after the checkpoint is overdue (interval 1m + grace 1m): %+v", late)
	}
	never := verifyLines(t, checkpointChain(t, s, "eeee", 90*time.Second), opts)
	if !never.CheckpointOverdue {
		t.Errorf("a chain spanning 270s without any checkpoint is overdue: %+v", never)
	}
}

// TestVerifyRejectsForgedCheckpoints: a checkpoint that the evidence key
// did not sign, or that covers something else than the chain before it,
// breaks the chain.
func TestVerifyRejectsForgedCheckpoints(t *testing.T) {
	s, other := testEvidenceKey(t, 1), testEvidenceKey(t, 2)
	keys := VerifyOptions{Keys: []ed25519.PublicKey{s.PublicKey()}}

	forged := checkpointChain(t, other, "eeC", time.Second)
	rep := verifyLines(t, forged, keys)
	if rep.OK() || rep.FirstBreak.Seq != 3 || !strings.Contains(rep.FirstBreak.Reason, "not a known evidence key") {
		t.Errorf("signed by another key: %+v", rep.FirstBreak)
	}

	// Another key's signature under the real key id.
	spoofed := resignCheckpoint(t, checkpointChain(t, s, "eeC", time.Second), 2, func(d *CheckpointData) {
		sig := ed25519.Sign(other.priv, CheckpointSigningBytes(d.CoversSeq, d.CoversHash, d.SignedAt, d.KeyID))
		d.Signature = base64.StdEncoding.EncodeToString(sig)
	})
	if rep := verifyLines(t, spoofed, keys); rep.OK() || rep.FirstBreak.Seq != 3 || !strings.Contains(rep.FirstBreak.Reason, "signature") {
		t.Errorf("a bad signature: %+v", rep.FirstBreak)
	}

	// A correctly signed checkpoint of another head, placed here.
	elsewhere := resignCheckpoint(t, checkpointChain(t, s, "eeC", time.Second), 2, func(d *CheckpointData) {
		d.CoversSeq = 1
		sig := ed25519.Sign(s.priv, CheckpointSigningBytes(d.CoversSeq, d.CoversHash, d.SignedAt, d.KeyID))
		d.Signature = base64.StdEncoding.EncodeToString(sig)
	})
	if rep := verifyLines(t, elsewhere, keys); rep.OK() || rep.FirstBreak.Seq != 3 || !strings.Contains(rep.FirstBreak.Reason, "covers") {
		t.Errorf("a checkpoint of another head: %+v", rep.FirstBreak)
	}

	// Without any key the signatures cannot be checked: said, not a break.
	unchecked := verifyLines(t, checkpointChain(t, other, "eeC", time.Second), VerifyOptions{})
	if !unchecked.OK() || unchecked.SignaturesChecked || unchecked.Confirmed() || !hasWarning(unchecked, "not checked") {
		t.Errorf("no key given: %+v", unchecked)
	}
}

// resignCheckpoint changes the checkpoint at index i and seals it again in
// place, as a forger who can write the export would.
func resignCheckpoint(t testing.TB, events []Event, i int, change func(*CheckpointData)) []Event {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal(events[i].Data, &data); err != nil {
		t.Fatal(err)
	}
	d, err := checkpointOf(events[i])
	if err != nil {
		t.Fatal(err)
	}
	change(&d)
	data["unmapped"] = d
	events[i].Data = mustJSON(t, data)
	if err := Seal(&events[i], events[i].PrevHash, events[i].ChainSeq); err != nil {
		t.Fatal(err)
	}
	return events
}

func hasWarning(rep VerifyReport, part string) bool {
	for _, w := range rep.Warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

// TestCheckpointEventMatchesTheSchema: a sealed checkpoint is an evidence
// event as schemas/evidence.schema.json describes it.
func TestCheckpointEventMatchesTheSchema(t *testing.T) {
	sch := evidenceSchema(t)
	evs := checkpointChain(t, testEvidenceKey(t, 1), "eC", time.Second)
	if err := validateDoc(sch, mustJSON(t, evs[1])); err != nil {
		t.Errorf("checkpoint: %v", err)
	}
	if evs[1].Type != TypeCheckpoint || evs[1].Subject != "checkpoint/1" {
		t.Errorf("type %s subject %s", evs[1].Type, evs[1].Subject)
	}
}
