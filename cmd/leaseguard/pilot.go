package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/rollout"
)

func (m *Main) pilotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pilot",
		Short: "pilot report: what the rules would have dropped or terminated outside the scope",
	}
	asGroup(cmd, "report")
	cmd.AddCommand(m.pilotReportCommand())
	return cmd
}

// pilotOptions are pilot report's flags.
type pilotOptions struct {
	since, until string
	output       outputFormat
}

// pilotReportCommand reports what the rules would have done outside the
// enforcement scope (package rollout): the baseline an owner signs off on
// before `leaseguard scope expand`.
func (m *Main) pilotReportCommand() *cobra.Command {
	var o pilotOptions
	cmd := &cobra.Command{
		Use:   "report",
		Short: "what the rules would have dropped or terminated in a window, by rule, database and role",
		Long: "Report summarises the pilot window: what the rules would have dropped or terminated outside\n" +
			"the enforcement scope, by rule, database and Vault role; the users a guard would spare; the\n" +
			"exceptions hit. This is the baseline an owner signs off on before leaseguard scope expand.",
		Example: "  leaseguard pilot report --since 24h\n  leaseguard pilot report --since 7d -o json",
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return pilotReport(cmd.Context(), m, o) },
	}
	cmd.Flags().StringVar(&o.since, "since", "24h", "start of the window: a duration back from --until (24h, 7d), or an RFC 3339 time")
	cmd.Flags().StringVar(&o.until, "until", "", "end of the window, RFC 3339 (default: now)")
	outputFlag(cmd, &o.output, "")
	return cmd
}

func pilotReport(ctx context.Context, m *Main, o pilotOptions) error {
	rc, err := reportWindow(o.since, o.until, time.Now())
	if err != nil {
		return err
	}
	cfg, err := loadStoreConfig("pilot report")
	if err != nil {
		return err
	}
	st, pols, err := openPolicies(ctx, cfg, quietLogger())
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := pols.Report(ctx, rc)
	if err != nil {
		return err
	}
	if o.output == outputJSON {
		return writeJSON(m.Stdout, rep)
	}
	return rep.WriteTable(m.Stdout)
}

func reportWindow(since, until string, now time.Time) (rollout.ReportConfig, error) {
	rc := rollout.ReportConfig{Until: now}
	if until != "" {
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return rc, usageError{fmt.Sprintf("--until %q: want an RFC 3339 time", until)}
		}
		rc.Until = t
	}
	from, err := rollout.ParseSince(since, rc.Until)
	if err != nil {
		return rc, usageError{err.Error()}
	}
	rc.Since = from
	return rc, nil
}
