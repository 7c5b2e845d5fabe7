package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// RevocationType is the CloudEvents type of a revocation's evidence.
const RevocationType = "io.leaseguard.revocation.v1"

// Record is one evidence event as the suite sees it: in the outbox (At is
// when it was written) or in the evidence stream as a SIEM reads it (At is
// when the stream stored it).
type Record struct {
	ID      string
	Type    string
	Subject string // <target>/<user> for revocations
	Outcome string // revocations only: dropped, terminated, already_absent, …
	At      time.Time
	// Raw is the event as read, for a report of odd ones.
	Raw []byte
}

// Observation is what a case saw at its end, the input of the figures.
type Observation struct {
	// Target is the target name that prefixes evidence subjects.
	Target string
	// Outcome is the revocation outcome each user must have exactly once:
	// dropped (the default), or terminated for ghost sessions.
	Outcome string
	// Users are the users the case expects dropped, with when each became
	// due (its rolvaliduntil plus the expiry grace).
	Users map[string]time.Time
	// Left are those users still present in pg_roles.
	Left []string
	// Outbox and Relayed are the evidence in the state store and in the
	// evidence stream.
	Outbox, Relayed []Record
	// Restore is when the fault ended (dependency restored, process
	// restarted); zero for a case without one.
	Restore time.Time
	// Restores, when set, give some users their own restore (a case with
	// several faults in turn); the others use Restore.
	Restores map[string]time.Time
	// NotReady says whether /readyz answered anything but 200 while the
	// fault held; nil when the case does not watch it.
	NotReady *bool
	// ChainOK is the verdict of `leaseguard evidence verify`.
	ChainOK bool
	// Extra are case-specific failures (e.g. a ghost session still alive).
	Extra []string
}

func (o Observation) outcome() string {
	if o.Outcome == "" {
		return "dropped"
	}
	return o.Outcome
}

// Goal is what a case must show.
type Goal struct {
	// Recovery bounds the time from the restore to each held-back user's
	// outcome (0: not checked).
	Recovery time.Duration
	// NotReady: /readyz must have gone not ready while the fault held.
	NotReady bool
	// HeldBack: the fault must have held back at least one outcome, or
	// the case proved nothing.
	HeldBack bool
}

// Figures are one case's results, a row of the final table.
type Figures struct {
	Case string
	// Outcome is what every user must get once (dropped, terminated).
	Outcome string
	Users   int
	Left    int
	// Once, Never and More count users by their `dropped` evidence
	// relayed: exactly one, none, more than one.
	Once, Never, More int
	// Lost: outbox events never relayed; Doubled: events relayed more
	// than once, or relayed without being in the outbox.
	Lost, Doubled int
	// HeldBack: users whose outcome came after the restore.
	HeldBack int
	// Recovery: the longest time from the restore (or the user's due
	// time, if later) to a held-back user's outcome.
	Recovery time.Duration
	NotReady *bool
	ChainOK  bool
	Goal     Goal
	Failures []string
	// Note is a free-form remark printed under the table.
	Note string
}

// OK says whether every goal was met.
func (f Figures) OK() bool { return len(f.Failures) == 0 }

// outcomesPerUser counts the relayed revocation events with outcome (e.g.
// dropped) of each of users (by subject <target>/<user>), distinct event
// ids only: a doubled relay is counted as doubled, not as a second drop.
func outcomesPerUser(relayed []Record, target, outcome string, users map[string]time.Time) map[string]int {
	out := make(map[string]int, len(users))
	for u := range users {
		out[u] = 0
	}
	seen := map[string]bool{}
	for _, r := range relayed {
		if r.Type != RevocationType || r.Outcome != outcome || seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		u, ok := strings.CutPrefix(r.Subject, target+"/")
		if _, want := users[u]; ok && want {
			out[u]++
		}
	}
	return out
}

// lostAndDoubled compares the outbox with what was relayed: an outbox event
// missing from the stream is lost; an id relayed more than once, or one
// the outbox does not have, is doubled.
func lostAndDoubled(outbox, relayed []Record) (lost, doubled int) {
	inOutbox := make(map[string]bool, len(outbox))
	for _, r := range outbox {
		inOutbox[r.ID] = true
	}
	times := make(map[string]int, len(relayed))
	for _, r := range relayed {
		times[r.ID]++
	}
	for id := range inOutbox {
		if times[id] == 0 {
			lost++
		}
	}
	for id, n := range times {
		switch {
		case !inOutbox[id]:
			doubled += n
		case n > 1:
			doubled += n - 1
		}
	}
	return lost, doubled
}

// recovery finds, over the users' first relayed events with outcome that came
// after their restore (restores[u], else restore), the longest wait from
// max(restore, due) to that event, and how many came after their restore.
func recovery(relayed []Record, target, outcome string, users map[string]time.Time, restore time.Time, restores map[string]time.Time) (time.Duration, int) {
	first := map[string]time.Time{}
	for _, r := range relayed {
		if r.Type != RevocationType || r.Outcome != outcome {
			continue
		}
		u, ok := strings.CutPrefix(r.Subject, target+"/")
		if _, want := users[u]; !ok || !want {
			continue
		}
		if t, seen := first[u]; !seen || r.At.Before(t) {
			first[u] = r.At
		}
	}
	var worst time.Duration
	held := 0
	for u, at := range first {
		from := restore
		if r, ok := restores[u]; ok {
			from = r
		}
		if from.IsZero() || !at.After(from) {
			continue
		}
		held++
		if due := users[u]; due.After(from) {
			from = due
		}
		worst = max(worst, at.Sub(from))
	}
	return worst, held
}

// Compute turns an observation into figures and checks them against goal.
func Compute(name string, obs Observation, goal Goal) Figures {
	f := Figures{Case: name, Users: len(obs.Users), Left: len(obs.Left), NotReady: obs.NotReady, ChainOK: obs.ChainOK, Goal: goal}
	outcome := obs.outcome()
	f.Outcome = outcome
	for _, n := range outcomesPerUser(obs.Relayed, obs.Target, outcome, obs.Users) {
		switch {
		case n == 0:
			f.Never++
		case n == 1:
			f.Once++
		default:
			f.More++
		}
	}
	f.Lost, f.Doubled = lostAndDoubled(obs.Outbox, obs.Relayed)
	f.Recovery, f.HeldBack = recovery(obs.Relayed, obs.Target, outcome, obs.Users, obs.Restore, obs.Restores)
	f.Failures = append(check(f, goal), obs.Extra...)
	if f.Lost > 0 || f.Doubled > 0 {
		f.Failures = append(f.Failures, "lost or doubled: "+strings.Join(oddEvents(obs.Outbox, obs.Relayed, 5), "; "))
	}
	return f
}

// oddEvents describes up to n events lost or doubled, for the log.
func oddEvents(outbox, relayed []Record, n int) []string {
	inOutbox := map[string]bool{}
	for _, r := range outbox {
		inOutbox[r.ID] = true
	}
	times := map[string]int{}
	byID := map[string]Record{}
	for _, r := range relayed {
		times[r.ID]++
		byID[r.ID] = r
	}
	var out []string
	for _, r := range outbox {
		if times[r.ID] == 0 {
			out = append(out, fmt.Sprintf("lost %s %s %s", r.ID, r.Type, r.Subject))
		}
	}
	for id, k := range times {
		if r := byID[id]; k > 1 || !inOutbox[id] {
			out = append(out, fmt.Sprintf("relayed %d× (in outbox: %v) %s %s %s %s", k, inOutbox[id], r.ID, r.Type, r.Subject, r.Outcome))
		}
	}
	sort.Strings(out)
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// check lists every goal f misses.
func check(f Figures, goal Goal) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if f.Left > 0 {
		fail("%d users left behind", f.Left)
	}
	if f.Never > 0 || f.More > 0 {
		fail("%d users without their outcome's evidence, %d with more than one", f.Never, f.More)
	}
	if f.Lost > 0 || f.Doubled > 0 {
		fail("%d evidence events lost, %d doubled", f.Lost, f.Doubled)
	}
	if !f.ChainOK {
		fail("the evidence chain does not verify")
	}
	if goal.HeldBack && f.HeldBack == 0 {
		fail("the fault held back no outcome: the case proved nothing")
	}
	if goal.Recovery > 0 && f.Recovery > goal.Recovery {
		fail("recovery took %s, goal %s", f.Recovery.Round(100*time.Millisecond), goal.Recovery)
	}
	if goal.NotReady && (f.NotReady == nil || !*f.NotReady) {
		fail("/readyz stayed ready while the fault held")
	}
	return out
}

// Sample is one /readyz answer.
type Sample struct {
	At    time.Time
	Ready bool
}

// notReadyBetween says whether any sample in [from, to] was not ready.
func notReadyBetween(samples []Sample, from, to time.Time) bool {
	for _, s := range samples {
		if !s.At.Before(from) && !s.At.After(to) && !s.Ready {
			return true
		}
	}
	return false
}

// sortedKeys returns m's keys in order (stable output).
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
