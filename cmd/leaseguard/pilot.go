package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/leaseguard/leaseguard/rollout"
)

const pilotSynopsis = "report [--since 24h|7d|RFC3339] [--until RFC3339] [--output table|json]"

// pilotCmd reports what the rules would have done outside the enforcement
// scope (package rollout): the baseline an owner signs off on before
// `leaseguard scope expand`.
func pilotCmd(ctx context.Context, m *Main, args []string) error {
	if len(args) == 0 || args[0] != "report" {
		return usageError{"usage: leaseguard pilot " + pilotSynopsis}
	}
	fs := m.flags("pilot report", pilotSynopsis)
	since := fs.String("since", "24h", "start of the window: a duration back from --until, or an RFC 3339 time")
	until := fs.String("until", "", "end of the window, RFC 3339 (default: now)")
	output := fs.String("output", "table", "table, or json")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return usageError{fmt.Sprintf("--output %q: want table or json", *output)}
	}
	rc, err := reportWindow(*since, *until, time.Now())
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
	if *output == "json" {
		return json.NewEncoder(m.Stdout).Encode(rep)
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
