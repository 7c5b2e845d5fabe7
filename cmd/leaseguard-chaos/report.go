package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// printFigures prints one case's figures as it ends.
func printFigures(w io.Writer, f Figures, took time.Duration) {
	fmt.Fprintf(w, "    users %d, left behind %d; %s evidence per user: %d exactly once, %d never, %d more than once\n",
		f.Users, f.Left, f.Outcome, f.Once, f.Never, f.More)
	fmt.Fprintf(w, "    evidence lost %d, doubled %d; chain verifies: %v\n", f.Lost, f.Doubled, f.ChainOK)
	fmt.Fprintf(w, "    outcomes after the restore %d; restore to last outcome %s; /readyz not ready while stuck: %s\n",
		f.HeldBack, dur(f.Recovery), readiness(f.NotReady))
	if f.Note != "" {
		fmt.Fprintf(w, "    %s\n", f.Note)
	}
	fmt.Fprintf(w, "    %s against %s (case took %s)\n", verdict(f), goalText(f.Goal), took.Round(time.Second))
	for _, why := range f.Failures {
		fmt.Fprintf(w, "      - %s\n", why)
	}
}

// printTable prints every case's figures and the goals.
func printTable(w io.Writer, all []Figures, o options) {
	fmt.Fprintf(w, "\nleaseguard-chaos (%s form): figures\n\n", map[bool]string{true: "short", false: "full"}[o.short])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tusers\tleft\toutcome ×1\t×0\t×2+\tlost\tdoubled\theld back\trestore→last\tnot ready\tchain\tgoal\tresult")
	for _, f := range all {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%v\t%s\t%s\n", f.Case, f.Users, f.Left, f.Once, f.Never, f.More,
			f.Lost, f.Doubled, f.HeldBack, dur(f.Recovery), readiness(f.NotReady), f.ChainOK, goalText(f.Goal), verdict(f))
	}
	_ = tw.Flush()
	for _, f := range all {
		if f.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", f.Case, f.Note)
		}
	}
	fmt.Fprintln(w, "\ngoals: a dependency blackholed, reset or killed, then restored: all work resumes within 10 s of the restore and")
	fmt.Fprintln(w, "/readyz is not ready while stuck (the socket case: a Vault reconnect is no outage, readiness not judged); SIGTERM")
	fmt.Fprintln(w, "during a burst: every due user dropped within 5 s of the restart; kill -9 during a burst, one of two nodes killed, or")
	fmt.Fprintln(w, "a NATS server and a leaseguard of three killed: within the revoker's AckWait (30 s) + 5 s (cluster: plus 10 s per")
	fmt.Fprintln(w, "1000 users of the burst, every survivor dropped users, the node caught up); every case: 0 users left, exactly 1")
	fmt.Fprintln(w, "outcome per user, 0 evidence lost or doubled, the chain verifies, and the fault held back at least one outcome")
	fmt.Fprintln(w, "(alerts: at least one delivery).")
	passed := 0
	for _, f := range all {
		if f.OK() {
			passed++
		}
	}
	fmt.Fprintf(w, "\nchaos: %d passed, %d failed\n", passed, len(all)-passed)
}

func verdict(f Figures) string {
	if f.OK() {
		return "PASS"
	}
	return "FAIL"
}

func goalText(g Goal) string {
	var parts []string
	if g.Recovery > 0 {
		parts = append(parts, "≤"+g.Recovery.String())
	}
	if g.NotReady {
		parts = append(parts, "not ready")
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func dur(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

func readiness(b *bool) string {
	switch {
	case b == nil:
		return "n/a"
	case *b:
		return "yes"
	default:
		return "no"
	}
}
