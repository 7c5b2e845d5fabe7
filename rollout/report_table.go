package rollout

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable writes the report for a reader: the window and the policy,
// what would have been done, whom the guards spare, and the exceptions hit.
func (rep Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Pilot report %s to %s\n", rep.Since.Format(time.RFC3339), rep.Until.Format(time.RFC3339))
	fmt.Fprintf(tw, "Policy in force: version %d by %s, enforce scope %s\n", rep.Policy.Version, rep.Policy.Actor, scopeText(rep.Policy.Scope))
	if rep.Configured != nil {
		fmt.Fprintf(tw, "The configuration says scope %s: adopt it with leaseguard scope rollback --to config\n", scopeText(rep.Configured.Scope))
	}
	wd := rep.Would
	fmt.Fprintf(tw, "\nWould have acted: %d findings, %d users (%s)\n", wd.Findings, wd.Users, countsText(wd.ByAction))
	if len(rep.Rows) > 0 {
		fmt.Fprintln(tw, "RULE\tDATABASE\tROLE\tACTION\tFINDINGS\tUSERS")
		for _, r := range rep.Rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", r.Rule, r.Database, r.Role, r.Action, r.Findings, r.Users)
		}
	}
	fmt.Fprintf(tw, "\nSpared by a guard of the revoker (not counted above): %d\n", len(rep.Spared))
	if len(rep.Spared) > 0 {
		fmt.Fprintln(tw, "GUARD\tRULE\tDATABASE/USER")
		for _, s := range rep.Spared {
			fmt.Fprintf(tw, "%s\t%s\t%s/%s\n", s.Guard, s.Rule, s.Database, s.DBUser)
		}
	}
	fmt.Fprintf(tw, "\nExceptions hit: %d\n", len(rep.Exceptions))
	if len(rep.Exceptions) > 0 {
		fmt.Fprintln(tw, "EXCEPTION\tVALUE\tRULE\tDATABASE\tROLE\tSPARED\tUSERS")
		for _, e := range rep.Exceptions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.Exception, e.Value, e.Rule, e.Database, e.Role, e.Objects, strings.Join(e.Users, ","))
		}
	}
	return tw.Flush()
}

func scopeText(s string) string {
	if s == "" {
		return "(none: nothing is enforced)"
	}
	return s
}

// countsText is "k n, k n" in key order.
func countsText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
