package main

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func drop(id, user string, sec float64) Record {
	return Record{ID: id, Type: RevocationType, Subject: "chaos/" + user, Outcome: "dropped", At: at(sec)}
}

// users due at t0.
func usersDue(names ...string) map[string]time.Time {
	m := map[string]time.Time{}
	for _, n := range names {
		m[n] = t0
	}
	return m
}

func TestOutcomesPerUser(t *testing.T) {
	relayed := []Record{
		drop("e1", "a", 1),
		drop("e2", "b", 1),
		drop("e3", "b", 2), // a second drop of b: counted
		drop("e1", "a", 3), // e1 relayed twice: a double, not a second drop
		{ID: "f1", Type: "io.leaseguard.finding.v1", Subject: "chaos/c"}, // not a revocation
		{ID: "e4", Type: RevocationType, Subject: "chaos/c", Outcome: "refused"},
		drop("e5", "d", 1), // not a user of the case
		{ID: "e6", Type: RevocationType, Subject: "other/c", Outcome: "dropped"}, // another target
	}
	got := outcomesPerUser(relayed, "chaos", "dropped", usersDue("a", "b", "c"))
	want := map[string]int{"a": 1, "b": 2, "c": 0}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for u, n := range want {
		if got[u] != n {
			t.Errorf("%s: %d, want %d", u, got[u], n)
		}
	}
	if n := outcomesPerUser(relayed, "chaos", "refused", usersDue("c"))["c"]; n != 1 {
		t.Errorf("refused outcomes of c: %d, want 1", n)
	}
}

func TestLostAndDoubled(t *testing.T) {
	outbox := []Record{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
	relayed := []Record{{ID: "a"}, {ID: "b"}, {ID: "b"}, {ID: "b"}, {ID: "d"}, {ID: "x"}}
	lost, doubled := lostAndDoubled(outbox, relayed)
	// c never relayed; b twice too often; x relayed but not in the outbox.
	if lost != 1 || doubled != 3 {
		t.Errorf("lost %d doubled %d, want 1 and 3", lost, doubled)
	}
	if l, d := lostAndDoubled(outbox, outbox); l != 0 || d != 0 {
		t.Errorf("identical: lost %d doubled %d", l, d)
	}
	odd := strings.Join(oddEvents(outbox, relayed, 10), "\n")
	for _, want := range []string{"lost c", "relayed 3× (in outbox: true) b", "relayed 1× (in outbox: false) x"} {
		if !strings.Contains(odd, want) {
			t.Errorf("odd events lack %q:\n%s", want, odd)
		}
	}
}

func TestRecovery(t *testing.T) {
	users := map[string]time.Time{"early": t0, "held": t0, "late": at(20), "never": t0}
	relayed := []Record{
		drop("1", "early", 5), // before the restore at 10: not held back
		drop("2", "held", 14), // 4 s after the restore
		drop("3", "held", 30), // a later second event does not count
		drop("4", "late", 23), // due at 20, after the restore: 3 s after its due time
	}
	d, held := recovery(relayed, "chaos", "dropped", users, at(10), nil)
	if d != 4*time.Second || held != 2 {
		t.Errorf("recovery %s held %d, want 4s and 2", d, held)
	}
	// A user with its own restore (a later round).
	d, held = recovery(relayed, "chaos", "dropped", users, at(10), map[string]time.Time{"early": at(2)})
	if d != 4*time.Second || held != 3 {
		t.Errorf("with restores: recovery %s held %d, want 4s and 3", d, held)
	}
	if d, held := recovery(relayed, "chaos", "dropped", users, time.Time{}, nil); d != 0 || held != 0 {
		t.Errorf("no restore: %s %d", d, held)
	}
}

func TestNotReadyBetween(t *testing.T) {
	s := []Sample{{at(1), true}, {at(5), false}, {at(12), true}}
	if !notReadyBetween(s, at(2), at(10)) {
		t.Error("the not-ready sample at 5 s was missed")
	}
	if notReadyBetween(s, at(6), at(12)) {
		t.Error("not ready reported where every sample was ready")
	}
	if notReadyBetween(nil, at(0), at(10)) {
		t.Error("no samples read as not ready")
	}
}

// good is an observation that meets every goal: two users dropped once
// each after the restore, evidence relayed once, chain verified.
func good() (Observation, Goal) {
	yes := true
	outbox := []Record{drop("1", "a", 12), drop("2", "b", 13), {ID: "f", Type: "io.leaseguard.finding.v1", At: at(11)}}
	return Observation{Target: "chaos", Users: usersDue("a", "b"), Outbox: outbox, Relayed: append([]Record(nil), outbox...),
		Restore: at(10), NotReady: &yes, ChainOK: true}, resumeGoal
}

func TestComputePasses(t *testing.T) {
	obs, goal := good()
	f := Compute("c", obs, goal)
	if !f.OK() || f.Once != 2 || f.HeldBack != 2 || f.Recovery != 3*time.Second {
		t.Errorf("figures %+v", f)
	}
}

// TestComputeFails breaks one thing at a time; each must fail the case,
// naming why.
func TestComputeFails(t *testing.T) {
	no := false
	for name, c := range map[string]struct {
		breakIt func(*Observation)
		want    string
	}{
		"user left": {func(o *Observation) { o.Left = []string{"a"} }, "1 users left behind"},
		"no drop":   {func(o *Observation) { o.Relayed = o.Relayed[1:]; o.Outbox = o.Outbox[1:] }, "1 users without"},
		"two drops": {func(o *Observation) {
			d := drop("9", "a", 15)
			o.Relayed = append(o.Relayed, d)
			o.Outbox = append(o.Outbox, d)
		}, "1 with more than one"},
		"lost":             {func(o *Observation) { o.Relayed = o.Relayed[:2] }, "1 evidence events lost"},
		"doubled":          {func(o *Observation) { o.Relayed = append(o.Relayed, o.Relayed[0]) }, "1 doubled"},
		"chain":            {func(o *Observation) { o.ChainOK = false }, "chain does not verify"},
		"slow":             {func(o *Observation) { o.Relayed[1].At = at(21) }, "recovery took 11s"},
		"ready throughout": {func(o *Observation) { o.NotReady = &no }, "/readyz stayed ready"},
		"not watched":      {func(o *Observation) { o.NotReady = nil }, "/readyz stayed ready"},
		"nothing held":     {func(o *Observation) { o.Restore = at(100) }, "held back no outcome"},
		"case extra":       {func(o *Observation) { o.Extra = []string{"3 ghost sessions still running"} }, "ghost sessions"},
	} {
		t.Run(name, func(t *testing.T) {
			obs, goal := good()
			c.breakIt(&obs)
			f := Compute("c", obs, goal)
			if f.OK() {
				t.Fatalf("passed: %+v", f)
			}
			if all := strings.Join(f.Failures, "; "); !strings.Contains(all, c.want) {
				t.Errorf("failures %q lack %q", all, c.want)
			}
		})
	}
}

func TestChunksKeepPairs(t *testing.T) {
	lines := make([][]byte, 10) // 5 request/response pairs
	for i := range lines {
		lines[i] = []byte{byte(i)}
	}
	parts := chunks(lines, 3)
	n := 0
	for _, p := range parts {
		if len(p)%2 != 0 || len(p) > 0 && p[0][0]%2 != 0 {
			t.Errorf("a part splits a pair: %v", p)
		}
		n += len(p)
	}
	if n != len(lines) || len(parts) != 3 {
		t.Errorf("%d parts of %d lines, want 3 of %d", len(parts), n, len(lines))
	}
}
