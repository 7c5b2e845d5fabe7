package main

import (
	"strings"
	"testing"
	"time"
)

func TestDroppedIn(t *testing.T) {
	text := `# HELP leaseguard_revocations_total Revocation outcomes.
# TYPE leaseguard_revocations_total counter
leaseguard_revocations_total{guard="",outcome="dropped"} 120
leaseguard_revocations_total{guard="",outcome="already_absent"} 7
leaseguard_revocations_total{guard="scope",outcome="refused"} 2
leaseguard_revocations_total_other{outcome="dropped"} 99
leaseguard_vault_lease_revocations_total{outcome="dropped"} 50
leaseguard_revocations_total{guard="x",outcome="dropped"} 3
`
	got, err := droppedIn(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got != 123 {
		t.Fatalf("dropped = %d, want 123 (120 + 3, other outcomes and metrics left out)", got)
	}
}

func TestBusiest(t *testing.T) {
	for _, c := range []struct {
		counts map[int]int
		want   int
	}{
		{map[int]int{0: 5, 1: 9, 2: 3}, 1},
		{map[int]int{0: 4, 1: 4, 2: 4}, 0},
		{map[int]int{2: 1}, 2},
		{map[int]int{}, 0},
	} {
		if got := busiest(c.counts); got != c.want {
			t.Errorf("busiest(%v) = %d, want %d", c.counts, got, c.want)
		}
	}
}

func TestSharedWork(t *testing.T) {
	note, failures := sharedWork(map[int]int{0: 150, 1: 40, 2: 110}, map[int]int{0: 60, 1: 40, 2: 30}, 1)
	if len(failures) != 0 {
		t.Fatalf("failures %v for survivors that both dropped users", failures)
	}
	want := "drops by process: lg0 150 (90 after the kill), lg1 40 (killed; last scrape), lg2 110 (80 after the kill)"
	if note != want {
		t.Fatalf("note\n %q, want\n %q", note, want)
	}
	note, _ = sharedWork(map[int]int{1: 40, 2: 110}, map[int]int{1: 40, 2: 30}, 0)
	if !strings.HasPrefix(note, "drops by process: lg0 ? (killed; no scrape answered before the kill)") {
		t.Fatalf("a victim never scraped: note %q", note)
	}
	_, failures = sharedWork(map[int]int{0: 300, 1: 0, 2: 0}, map[int]int{0: 30}, 2)
	if len(failures) != 1 || !strings.Contains(failures[0], "leaseguard 1 survived and dropped no user") {
		t.Fatalf("a survivor without drops: failures %v", failures)
	}
}

func TestBurstSpan(t *testing.T) {
	obs := Observation{Target: "chaos", Users: usersDue("a", "b"), Relayed: []Record{
		drop("e1", "a", 2),
		drop("e2", "b", 7.5),
		drop("e3", "zz", 40), // not the case's user
		{ID: "e4", Type: RevocationType, Subject: "chaos/a", Outcome: "refused", At: at(50)},
	}}
	if got := burstSpan(obs, time.Time{}); got != 7500*time.Millisecond {
		t.Fatalf("span = %s, want 7.5s", got)
	}
	// Published 3 s after it was due: counted from the publication.
	if got := burstSpan(obs, at(3)); got != 4500*time.Millisecond {
		t.Fatalf("span of a burst published late = %s, want 4.5s", got)
	}
	if got := burstSpan(Observation{Target: "chaos", Users: usersDue("a")}, time.Time{}); got != 0 {
		t.Fatalf("span without drops = %s, want 0", got)
	}
}

// The kill waits for a tenth of the burst to be dropped, polling every
// 100 ms, and the kill itself takes time. A CI run whose revoker dropped
// all 300 users between two polls cut nothing. The plan must leave most
// of the burst not yet due a second after a tenth fell due, however fast
// the drops are.
func TestBurstCannotOutrunTheKill(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for _, n := range []int{300, 5000} {
		first, last := burstPlan(now, n)
		if !first.After(now.Add(time.Duration(n) * 10 * time.Millisecond)) {
			t.Errorf("n=%d: first due %s after planning: no time to issue and publish", n, first.Sub(now))
		}
		// User i falls due at first + i*step.
		step := last.Sub(first) / time.Duration(n-1)
		reaction := first.Add(time.Duration(n/10)*step + time.Second)
		dueByThen := 0
		for i := range n {
			if !first.Add(time.Duration(i) * step).After(reaction) {
				dueByThen++
			}
		}
		if dueByThen > n/2 {
			t.Errorf("n=%d: %d users due a second after a tenth fell due, want at most %d", n, dueByThen, n/2)
		}
	}
}
