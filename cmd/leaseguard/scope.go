package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// scopeCommand shows or changes the enforcement policy in force (package
// rollout): the scope where rules may act and their modes. A change needs
// a reason, names its actor in its evidence, and applies on every process
// at its next pass. `scope` alone is `scope show`.
func (m *Main) scopeCommand() *cobra.Command {
	var o scopeOptions
	cmd := &cobra.Command{
		Use:   "scope",
		Short: "show or change the enforcement policy (scope and rule modes): show, expand, rollback",
		Long: "Scope shows the enforcement policy in force (where rules may enforce, and their modes), the\n" +
			"configured one and the history; expand and rollback change it. Every change needs a reason, is\n" +
			"recorded as evidence naming the actor, and applies on every process at its next pass.\n" +
			"scope alone is scope show.",
		Args: unknownCommand("show, expand or rollback"),
		RunE: func(cmd *cobra.Command, _ []string) error { return scopeShow(cmd.Context(), m, o) },
	}
	showFlags(cmd, &o)
	cmd.AddCommand(m.scopeShowCommand(), m.scopeExpandCommand(), m.scopeRollbackCommand())
	return cmd
}

// scopeOptions are the flags of scope and its subcommands.
type scopeOptions struct {
	history    int
	add, modes string
	to, reason string
	actor      string
	expect     int64
	output     outputFormat
}

func showFlags(cmd *cobra.Command, o *scopeOptions) {
	cmd.Flags().IntVar(&o.history, "history", 10, "versions listed")
	outputFlag(cmd, &o.output, "")
}

// changeFlags are the flags every change takes.
func changeFlags(cmd *cobra.Command, o *scopeOptions) {
	f := cmd.Flags()
	f.StringVar(&o.reason, "reason", "", "why (required), recorded in the policy and its evidence")
	f.StringVar(&o.actor, "actor", "", "who changes it, recorded in the evidence (default: the OS user)")
	f.StringVar(&o.actor, "as", "", "same as --actor")
	f.Int64Var(&o.expect, "expect-version", 0, "refuse unless this version is in force (the one you looked at)")
	outputFlag(cmd, &o.output, "table, or json: the recorded version")
}

func (m *Main) scopeShowCommand() *cobra.Command {
	var o scopeOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "the policy in force, the configured one, and the history",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return scopeShow(cmd.Context(), m, o) },
	}
	showFlags(cmd, &o)
	return cmd
}

func (m *Main) scopeExpandCommand() *cobra.Command {
	var o scopeOptions
	cmd := &cobra.Command{
		Use:   "expand (--add PATTERNS | --mode RULE=MODE,...) --reason TEXT",
		Short: "widen where rules enforce, or set rule modes",
		Example: "  leaseguard scope expand --add db:orders --reason \"pilot report signed off: CHG-1234\"\n" +
			"  leaseguard scope expand --mode orphan-role=approve --reason CHG-1240 --expect-version 3",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return scopeChange(cmd.Context(), m, o, func(pols *rollout.Policies, who string) (rollout.Record, error) {
				return pols.Expand(cmd.Context(), rollout.Expand{Actor: who, Reason: o.reason, Add: o.add, Modes: o.modes, ExpectVersion: o.expect})
			})
		},
	}
	cmd.Flags().StringVar(&o.add, "add", "", "scope patterns to add: *, db:<glob>, role:<mount/role glob>, comma-separated (* is everywhere)")
	cmd.Flags().StringVar(&o.modes, "mode", "", "rule=mode,… to set (observe, approve, enforce)")
	changeFlags(cmd, &o)
	return cmd
}

func (m *Main) scopeRollbackCommand() *cobra.Command {
	var o scopeOptions
	cmd := &cobra.Command{
		Use:   "rollback [--to VERSION|config] --reason TEXT",
		Short: "return to an earlier version of the policy, or to the configuration",
		Example: "  leaseguard scope rollback --reason \"INC-77: too wide\"\n" +
			"  leaseguard scope rollback --to config --reason \"adopt the new configuration\"",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return scopeChange(cmd.Context(), m, o, func(pols *rollout.Policies, who string) (rollout.Record, error) {
				rb, err := rollbackRequest(o.to, who, o.reason, o.expect)
				if err != nil {
					return rollout.Record{}, err
				}
				return pols.Rollback(cmd.Context(), rb)
			})
		},
	}
	cmd.Flags().StringVar(&o.to, "to", "", "the version to return to, or config (default: the version before the one in force)")
	changeFlags(cmd, &o)
	return cmd
}

func scopeShow(ctx context.Context, m *Main, o scopeOptions) error {
	cfg, err := loadStoreConfig("scope")
	if err != nil {
		return err
	}
	st, pols, err := openPolicies(ctx, cfg, quietLogger())
	if err != nil {
		return err
	}
	defer st.Close()
	return showScope(ctx, m.Stdout, pols, o.history, o.output)
}

// scopeChange records one change (expand or rollback) and prints it.
func scopeChange(ctx context.Context, m *Main, o scopeOptions,
	change func(*rollout.Policies, string) (rollout.Record, error)) error {
	if strings.TrimSpace(o.reason) == "" {
		return usageError{"--reason is required: every change of the enforcement policy says why"}
	}
	cfg, err := loadStoreConfig("scope")
	if err != nil {
		return err
	}
	st, pols, err := openPolicies(ctx, cfg, quietLogger())
	if err != nil {
		return err
	}
	defer st.Close()
	rec, err := change(pols, actor(o.actor))
	if err != nil {
		return scopeError(err)
	}
	return printRecord(m.Stdout, rec, o.output)
}

func rollbackRequest(to, who, reason string, expect int64) (rollout.Rollback, error) {
	rb := rollout.Rollback{Actor: who, Reason: reason, ExpectVersion: expect}
	switch to {
	case "":
	case "config", "configuration":
		rb.ToConfiguration = true
	default:
		v, err := strconv.ParseInt(to, 10, 64)
		if err != nil || v < 1 {
			return rb, usageError{fmt.Sprintf("--to %q: want a version number or config", to)}
		}
		rb.To = v
	}
	return rb, nil
}

// scopeError maps a refused change to its exit code: 2 for a bad request,
// 4 when it would change nothing or another change came first.
func scopeError(err error) error {
	switch {
	case errors.Is(err, rollout.ErrInvalid), errors.Is(err, rollout.ErrUnknownVersion):
		return usageError{err.Error()}
	case errors.Is(err, rollout.ErrNothingChanges), errors.Is(err, rollout.ErrConflict):
		return exitError{code: exitNotClean, err: fmt.Errorf("refused: %w", err)}
	}
	return err
}

// rolloutSpec is the configured starting point (after Validate).
func (c Config) rolloutSpec() rollout.Spec {
	return rollout.Spec{Scope: c.parsed().scope, Modes: c.parsed().modes}
}

// openPolicies opens the state store and its policy (bootstrapPolicies).
func openPolicies(ctx context.Context, cfg Config, logger *slog.Logger) (*store.Store, *rollout.Policies, error) {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	pols, err := bootstrapPolicies(ctx, cfg, st, logger)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, pols, nil
}

// bootstrapPolicies returns the policy store of st, recording the
// configured policy as version 1 if there is none, and logs the policy in
// force (and, loudly, a configuration that differs from it).
func bootstrapPolicies(ctx context.Context, cfg Config, st *store.Store, logger *slog.Logger) (*rollout.Policies, error) {
	pols := rollout.New(st.Pool(), evidenceBuilder(cfg), cfg.rolloutSpec()).WithGuard(cfg.dropperConfig().Guard)
	status, err := pols.Bootstrap(ctx)
	if err != nil {
		return nil, err
	}
	logPolicy(logger, cfg, status)
	return pols, nil
}

// logPolicy logs the policy a process acts under and, loudly, a
// configuration that differs from it: the recorded policy stays in force
// (a restart must not silently undo or widen what an operator decided).
func logPolicy(logger *slog.Logger, cfg Config, st rollout.Status) {
	cur := st.Current
	logger.Info("enforcement policy in force", "version", cur.Version, "scope", scopeText(cur.Scope.String()),
		"modes", cur.Modes.String(), "managed_role_pattern", cfg.ManagedRolePattern, "changed_by", cur.Actor,
		"recorded_now", st.Recorded)
	if st.Drift {
		conf := cfg.rolloutSpec()
		logger.Error("the configured enforcement policy differs from the one in force, which stays; "+
			"adopt the configuration with: leaseguard scope rollback --to config --reason …",
			"in_force_version", cur.Version, "in_force_scope", scopeText(cur.Scope.String()), "in_force_modes", cur.Modes.String(),
			"configured_scope", scopeText(conf.Scope.String()), "configured_modes", conf.Modes.String())
	}
}

func scopeText(s string) string {
	if s == "" {
		return "(none: nothing is enforced)"
	}
	return s
}

func showScope(ctx context.Context, w io.Writer, pols *rollout.Policies, limit int, format outputFormat) error {
	o, err := pols.Overview(ctx, max(limit, 1))
	if err != nil {
		return err
	}
	if format == outputJSON {
		return json.NewEncoder(w).Encode(o)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "in force: version %d, scope %s\n", o.Current.Version, scopeText(o.Current.Scope))
	fmt.Fprintf(tw, "modes: %s\n", modesText(o.Current.Modes))
	if o.Drift {
		fmt.Fprintf(tw, "the configuration says scope %s, modes %s (adopt: leaseguard scope rollback --to config --reason …)\n",
			scopeText(o.Configured.Scope), modesText(o.Configured.Modes))
	}
	fmt.Fprintln(tw, "\nVERSION\tKIND\tBY\tAT\tSCOPE\tREASON")
	for _, h := range o.History {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", h.Version, h.Kind, h.Actor, h.ChangedAt.Format(time.RFC3339), scopeText(h.Scope), h.Reason)
	}
	return tw.Flush()
}

func printRecord(w io.Writer, rec rollout.Record, format outputFormat) error {
	v := rec.View()
	if format == outputJSON {
		return json.NewEncoder(w).Encode(v)
	}
	_, err := fmt.Fprintf(w, "recorded version %d (%s) by %s: scope %s; modes %s; evidence %s\n"+
		"every process acts under it from its next pass\n", v.Version, v.Kind, v.Actor, scopeText(v.Scope), modesText(v.Modes), v.EvidenceID)
	return err
}

// modesText lists the rules that act (enforce or approve); the others
// observe.
func modesText(modes map[string]schemas.Mode) string {
	var acting []string
	for _, r := range slices.Sorted(maps.Keys(modes)) {
		if detectors.Acts(modes[r]) {
			acting = append(acting, r+"="+string(modes[r]))
		}
	}
	if len(acting) == 0 {
		return "every rule observes"
	}
	return strings.Join(acting, ",") + " (the others observe)"
}

// quietLogger is the scope and pilot commands' logger: what run logs about
// the policy, they print (the drift included).
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
