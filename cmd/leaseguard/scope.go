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

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

const scopeSynopsis = "[show] [--history N] [--output table|json]\n" +
	"       expand (--add '*|db:<glob>|role:<glob>,…' | --mode rule=mode,…) --reason TEXT [--actor NAME] [--expect-version N] [--output table|json]\n" +
	"       rollback [--to VERSION|config] --reason TEXT [--actor NAME] [--expect-version N] [--output table|json]"

// scopeCmd shows or changes the enforcement policy in force (package
// rollout): the scope where rules may act and their modes. A change needs
// a reason, names its actor in its evidence, and applies on every process
// at its next pass.
func scopeCmd(ctx context.Context, m *Main, args []string) error {
	verb := "show"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	switch verb {
	case "show", "expand", "rollback":
	default:
		return usageError{fmt.Sprintf("unknown scope command %q: want show, expand or rollback", verb)}
	}
	fs := m.flags("scope", scopeSynopsis)
	output := fs.String("output", "table", "table, or json")
	history := fs.Int("history", 10, "show: versions listed")
	add := fs.String("add", "", "expand: scope patterns to add (* is everywhere)")
	modes := fs.String("mode", "", "expand: rule=mode,… to set (observe, approve, enforce)")
	to := fs.String("to", "", "rollback: the version to return to, or config (default: the version before the one in force)")
	reason := fs.String("reason", "", "why (required for a change), recorded in the policy and its evidence")
	actorFlag := fs.String("actor", "", "who changes it, recorded in the evidence (default: the OS user)")
	fs.StringVar(actorFlag, "as", "", "same as --actor")
	expect := fs.Int64("expect-version", 0, "refuse unless this version is in force (the one you looked at)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkScopeFlags(verb, fs.NArg(), *output, *reason); err != nil {
		return err
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
	var rec rollout.Record
	switch verb {
	case "show":
		return showScope(ctx, m.Stdout, pols, *history, *output)
	case "expand":
		rec, err = pols.Expand(ctx, rollout.Expand{Actor: actor(*actorFlag), Reason: *reason, Add: *add, Modes: *modes, ExpectVersion: *expect})
	default:
		var rb rollout.Rollback
		if rb, err = rollbackRequest(*to, actor(*actorFlag), *reason, *expect); err == nil {
			rec, err = pols.Rollback(ctx, rb)
		}
	}
	if err != nil {
		return scopeError(err)
	}
	return printRecord(m.Stdout, rec, *output)
}

func checkScopeFlags(verb string, nargs int, output, reason string) error {
	switch {
	case nargs > 0:
		return usageError{"scope takes no arguments after its flags"}
	case output != "table" && output != "json":
		return usageError{fmt.Sprintf("--output %q: want table or json", output)}
	case verb != "show" && strings.TrimSpace(reason) == "":
		return usageError{"--reason is required: every change of the enforcement policy says why"}
	}
	return nil
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
	spec, _ := rollout.ParseSpec(c.EnforceScope, c.RuleModes)
	return spec
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
	pols := rollout.New(st.Pool(), evidence.Builder{Source: evidenceSource(cfg)}, cfg.rolloutSpec()).WithGuard(cfg.dropperConfig().Guard)
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

func showScope(ctx context.Context, w io.Writer, pols *rollout.Policies, limit int, format string) error {
	o, err := pols.Overview(ctx, max(limit, 1))
	if err != nil {
		return err
	}
	if format == "json" {
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

func printRecord(w io.Writer, rec rollout.Record, format string) error {
	v := rec.View()
	if format == "json" {
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
