package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// revokeOptions are revoke's flags.
type revokeOptions struct {
	req    operator.Request
	actor  string
	yes    bool
	output outputFormat
}

// revokeCommand drops the database users an operator names, through the
// revoker's guards, directly against the target databases: it needs
// neither NATS nor a running pipeline. Evidence goes to the outbox; the
// relay of `leaseguard run` publishes it when it can.
func (m *Main) revokeCommand() *cobra.Command {
	var o revokeOptions
	cmd := &cobra.Command{
		Use: "revoke (--db-user NAME | --lease-id ID | --prefix P | --entity-id ID | --token-accessor A | " +
			"--all-managed --database NAME) --reason TEXT",
		Short: "drop the database users of a lease, user, prefix, entity or token now (operator, break-glass)",
		Long: "Revoke drops the database users of one selector now, through the revoker's guards, directly\n" +
			"against the target databases: it needs neither NATS nor a running leaseguard run. Without --yes\n" +
			"it shows the plan and asks. Evidence (naming the actor) goes to the outbox. Exit 0 only if every\n" +
			"selected user is gone; rerun with the printed --request-id to resume without acting twice.",
		Example: "  leaseguard revoke --db-user v-token-app-x --reason \"INC-1234 leaked\" --dry-run\n" +
			"  leaseguard revoke --entity-id 2f6e0c1a-… --reason INC-1234 --yes --emergency -o json",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return revokeCmd(cmd.Context(), m, o) },
	}
	revokeFlags(cmd, &o)
	return cmd
}

func revokeFlags(cmd *cobra.Command, o *revokeOptions) {
	f, req := cmd.Flags(), &o.req
	f.SortFlags = false // the selectors first, as the usage line lists them
	f.StringVar(&req.DBUser, "db-user", "", "drop this database user (in every target, or --database)")
	f.StringVar(&req.LeaseID, "lease-id", "", "drop the user of this Vault lease")
	f.StringVar(&req.Prefix, "prefix", "", "drop the users of the leases under this lease id prefix, e.g. database/creds/readonly/ (matched as Vault's revoke-prefix does)")
	f.StringVar(&req.EntityID, "entity-id", "", "drop the users of every lease this Vault entity obtained")
	f.StringVar(&req.TokenAccessor, "token-accessor", "", "drop the users of every lease obtained with this token accessor, as the audit log shows it (an HMAC unless the audit device sets hmac_accessor=false)")
	f.BoolVar(&req.AllManaged, "all-managed", false, "break-glass: drop every role of --database that matches LEASEGUARD_MANAGED_ROLE_PATTERN (guards still apply)")
	f.StringVar(&req.Database, "database", "", "target database to act in (required with --all-managed; otherwise narrows the selection)")
	f.StringVar(&req.Reason, "reason", "", "why (required; recorded in every command and its evidence)")
	f.BoolVar(&req.DryRun, "dry-run", false, "list exactly what would be dropped and why; change nothing")
	f.BoolVar(&req.Emergency, "emergency", false, "bypass the blast-radius limit (LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE); the guards still apply")
	f.StringVar(&req.RequestID, "request-id", "", "name of this request; repeat a run's request id to resume it without acting twice (default: a new one)")
	f.StringVar(&o.actor, "actor", "", "who is acting, recorded in the evidence (default: the OS user)")
	f.BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	outputFlag(cmd, &o.output, "table, or json: the evidence events of the outcomes, one per line (with --dry-run: the plan, one item per line)")
}

func revokeCmd(ctx context.Context, m *Main, o revokeOptions) error {
	req := o.req
	req.Actor = actor(o.actor)
	if err := req.Validate(); err != nil {
		return revokeUsage(err)
	}
	cfg, err := loadStoreConfig("revoke")
	if err != nil {
		return err
	}
	logger := operatorLogger(m.Stderr, cfg)
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	tc := cfg.parsed().targets
	targets, err := target.Open(ctx, tc)
	if err != nil {
		return err
	}
	defer targets.Close()
	deps := operator.Deps{State: st.Pool(), Targets: targets, Guard: cfg.dropperConfig().Guard,
		Batch: cfg.RevocationBatch, Logger: logger}
	plan, err := revokePlan(ctx, m, deps, req)
	if err != nil {
		return err
	}
	if req.DryRun {
		return printPlan(m.Stdout, m.Stderr, plan, o.output)
	}
	if len(plan.Items) == 0 {
		return nothingToRevoke(m, plan, o.output)
	}
	if !o.yes {
		if err := confirm(m.Stdin, stdinIsTerminal(m.Stdin), m.Stderr, plan); err != nil {
			return err
		}
	}
	results, runErr := revokeExecute(ctx, m, cfg, st, targets, deps, plan, logger)
	if results == nil && runErr != nil {
		return runErr
	}
	if err := printResults(context.WithoutCancel(ctx), m.Stdout, m.Stderr, st.Pool(), plan, results, o.output); err != nil {
		return err
	}
	revokeInVault(ctx, m.Stderr, cfg, st, targets, logger)
	return revokeOutcome(plan, results, runErr)
}

// operatorLogger is the logger of revoke, approve and reject: warnings
// only at the default level, as the table says what the per-revocation
// logs would.
func operatorLogger(w io.Writer, cfg Config) *slog.Logger {
	level := cfg.parsed().logLevel
	if level == slog.LevelInfo {
		level = slog.LevelWarn
	}
	return newLevelLogger(w, level, "text")
}

// revokePlan plans req and shows the planner's warnings.
func revokePlan(ctx context.Context, m *Main, deps operator.Deps, req operator.Request) (operator.Plan, error) {
	planner, err := operator.New(deps)
	if err != nil {
		return operator.Plan{}, err
	}
	plan, err := planner.Plan(ctx, req)
	if err != nil {
		return plan, revokeUsage(err)
	}
	for _, w := range plan.Warnings {
		fmt.Fprintln(m.Stderr, "warning:", w)
	}
	return plan, nil
}

func stdinIsTerminal(in io.Reader) bool {
	f, ok := in.(*os.File)
	return ok && isTerminal(f)
}

// revokeExecute carries out plan through the revoker, with progress on a
// terminal.
func revokeExecute(ctx context.Context, m *Main, cfg Config, st *store.Store, targets *target.Set, deps operator.Deps,
	plan operator.Plan, logger *slog.Logger) ([]revoker.Executed, error) {
	exec, err := newOperatorExecutor(cfg, st, targets, logger)
	if err != nil {
		return nil, err
	}
	deps.Executor, deps.Issuer = exec.executor, exec.issuer
	svc, err := operator.New(deps)
	if err != nil {
		return nil, err
	}
	if n := countUnrefused(plan); !plan.Request.Emergency && n > cfg.MaxRevocationsPerMin {
		fmt.Fprintf(m.Stderr, "%d users at most %d a minute (%s): about %d minutes; --emergency lifts the limit\n",
			n, cfg.MaxRevocationsPerMin, env("MAX_REVOCATIONS_PER_MINUTE"), (n-cfg.MaxRevocationsPerMin)/cfg.MaxRevocationsPerMin+1)
	}
	progress, stopProgress := revokeProgress(m.Stderr, showProgress(m.Stderr), time.Now)
	defer stopProgress()
	return svc.Execute(ctx, plan, progress)
}

// revokeOutcome is the exit of a revoke that ran: clean only if every
// selected user is gone.
func revokeOutcome(plan operator.Plan, results []revoker.Executed, runErr error) error {
	if runErr != nil {
		return exitError{code: exitNotClean, err: fmt.Errorf("interrupted (%v): run the same command with --request-id %s (same reason and actor) to finish this request", runErr, plan.Request.RequestID)}
	}
	if bad := notGone(plan, results); bad > 0 {
		return exitError{code: exitNotClean, err: fmt.Errorf("%d of %d selected users are not verifiably gone", bad, len(results)+len(plan.Skipped))}
	}
	return nil
}

func revokeUsage(err error) error {
	if errors.Is(err, operator.ErrInvalid) {
		return usageError{err.Error()}
	}
	return err
}

// actor is who acts: --actor, or the OS user (the invoking user under
// sudo). A name given with --actor that is not the OS user keeps the OS
// user beside it, so the evidence always names the account that ran it.
func actor(flagValue string) string {
	osUser := ""
	if u, err := user.Current(); err == nil {
		osUser = u.Username
	}
	if sudo := os.Getenv("SUDO_USER"); osUser == "root" && sudo != "" {
		osUser = sudo + " (sudo)"
	}
	switch {
	case flagValue == "":
		return osUser
	case osUser == "" || flagValue == osUser:
		return flagValue
	}
	return fmt.Sprintf("%s (os user %s)", flagValue, osUser)
}

// operatorExecutor is the revoker as the CLI runs it: no queue, the same
// guards, keys and blast-radius limit as `leaseguard run`.
type operatorExecutor struct {
	executor *revoker.Executor
	issuer   *revoker.Issuer
}

func newOperatorExecutor(cfg Config, st *store.Store, targets *target.Set, logger *slog.Logger) (operatorExecutor, error) {
	issuer, verifier, err := commandAuth(cfg, logger, targets)
	if err != nil {
		return operatorExecutor{}, err
	}
	dropper, err := revoker.NewDropper(cfg.dropperConfig())
	if err != nil {
		return operatorExecutor{}, configError{err}
	}
	limiter, err := revoker.NewLimiter(revoker.LimiterConfig{PerMinute: cfg.MaxRevocationsPerMin})
	if err != nil {
		return operatorExecutor{}, configError{err}
	}
	x, err := revoker.NewExecutor(revoker.ExecutorDeps{
		Dropper: dropper, Verifier: verifier, Limiter: limiter, Targets: targets, State: st.Pool(),
		Evidence: evidenceBuilder(cfg), Logger: logger.With("part", "revoker"),
		RequiresApproval: cfg.requiresApproval(), TargetWorkers: cfg.RevocationWorkers,
	})
	if err != nil {
		return operatorExecutor{}, err
	}
	return operatorExecutor{executor: x, issuer: issuer}, nil
}

// errNotConfirmed: the operator did not say yes.
var errNotConfirmed = errors.New("not confirmed; nothing was done")

// confirm shows the plan on w and asks for a yes on in. Without a terminal
// on stdin nobody can answer: it refuses, pointing at --yes.
func confirm(in io.Reader, interactive bool, w io.Writer, plan operator.Plan) error {
	if !interactive {
		return usageError{"stdin is not a terminal, so nobody can confirm: pass --yes to revoke non-interactively (or --dry-run to look first)"}
	}
	const shown = 20
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tUSER\tLEASE\tEXPECT")
	for i, it := range plan.Items {
		if i == shown {
			fmt.Fprintf(tw, "… and %d more\t\t\t\n", len(plan.Items)-shown)
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Database, it.DBUser, dash(it.LeaseID), it.Expect())
	}
	tw.Flush()
	req := plan.Request
	mode := ""
	if req.Emergency {
		mode = ", EMERGENCY: no blast-radius limit"
	}
	fmt.Fprintf(w, "About to revoke %d database user(s)%s; %d will be refused by a guard.\n  reason: %s\n  actor:  %s\nProceed? [y/N] ",
		len(plan.Items), mode, len(plan.Items)-countUnrefused(plan), req.Reason, req.Actor)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	case "":
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(w)
			return fmt.Errorf("%w (no answer on stdin; pass --yes to revoke non-interactively)", errNotConfirmed)
		}
	}
	return errNotConfirmed
}

func countUnrefused(p operator.Plan) int {
	n := 0
	for _, it := range p.Items {
		if it.Guard == "" {
			n++
		}
	}
	return n
}

// revokeProgress reports progress on w when it is a terminal (show), at
// most every 200ms; stop clears the line (safe twice).
func revokeProgress(w io.Writer, show bool, now func() time.Time) (progress func(done, total int), stop func()) {
	if !show {
		return nil, func() {}
	}
	start := now()
	var last time.Time
	shown := false
	progress = func(done, total int) {
		t := now()
		if done < total && t.Sub(last) < 200*time.Millisecond {
			return
		}
		last, shown = t, true
		fmt.Fprintf(w, "\r\033[Krevoking: %d/%d users, %s", done, total, t.Sub(start).Round(time.Second))
	}
	stop = func() {
		if shown {
			fmt.Fprint(w, "\r\033[K")
			shown = false
		}
	}
	return progress, stop
}

// planItemLine and planSkippedLine are the lines of a dry run's JSON output.
type planItemLine struct {
	Expect string `json:"expect"`
	operator.Item
}

type planSkippedLine struct {
	Expect string `json:"expect"`
	operator.Skipped
}

func printPlan(out, errw io.Writer, plan operator.Plan, format outputFormat) error {
	req := plan.Request
	if format == outputJSON {
		enc := json.NewEncoder(out)
		for i := range plan.Items {
			if err := enc.Encode(planItemLine{Expect: plan.Items[i].Expect(), Item: plan.Items[i]}); err != nil {
				return err
			}
		}
		for i := range plan.Skipped {
			if err := enc.Encode(planSkippedLine{Expect: "skipped", Skipped: plan.Skipped[i]}); err != nil {
				return err
			}
		}
		fmt.Fprintln(errw, planSummary(plan))
		return nil
	}
	fmt.Fprintf(out, "dry run, nothing was changed: %s, reason %q, actor %s\n\n", req.Selector, req.Reason, req.Actor)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tUSER\tLEASE\tROLE\tEXPECT\tWHY")
	for _, it := range plan.Items {
		role := "absent"
		switch {
		case it.Unverified:
			role = "unknown"
		case it.Exists:
			role = "exists"
		}
		expect := it.Expect()
		if it.Refusal != "" {
			expect += " (" + it.Refusal + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Database, it.DBUser, dash(it.LeaseID), role, expect, it.Why)
	}
	tw.Flush()
	printSkipped(out, plan)
	fmt.Fprintln(out)
	fmt.Fprintln(out, planSummary(plan))
	return nil
}

func printSkipped(w io.Writer, plan operator.Plan) {
	if len(plan.Skipped) == 0 {
		return
	}
	fmt.Fprintf(w, "\nskipped, cannot be revoked (not verifiably gone):\n")
	for _, s := range plan.Skipped {
		fmt.Fprintf(w, "  lease %s: %s\n", s.LeaseID, s.Reason)
	}
}

func planSummary(plan operator.Plan) string {
	drop, refused, absent, unknown := 0, 0, 0, 0
	for _, it := range plan.Items {
		switch {
		case it.Guard != "":
			refused++
		case it.Unverified:
			unknown++
		case it.Exists:
			drop++
		default:
			absent++
		}
	}
	s := fmt.Sprintf("%d selected: %d to drop, %d to be refused by a guard, %d already absent", len(plan.Items), drop, refused, absent)
	if unknown > 0 {
		s += fmt.Sprintf(", %d in an unreadable target", unknown)
	}
	if len(plan.Skipped) > 0 {
		s += fmt.Sprintf(", %d skipped", len(plan.Skipped))
	}
	if plan.Gone > 0 {
		s += fmt.Sprintf("; %d matching lease(s) left out, their user already gone", plan.Gone)
	}
	if plan.Request.AllManaged {
		s += fmt.Sprintf("; %d role(s) not managed (or built in) left alone", plan.Unmanaged)
	}
	return s
}

// nothingToRevoke ends a run whose plan is empty. It is clean when the
// selector's users are known gone; a ledger selector that matched no lease
// at all, or live leases that cannot be acted on, are not.
func nothingToRevoke(m *Main, plan operator.Plan, format outputFormat) error {
	w := m.Stdout
	if format == outputJSON {
		w = m.Stderr
	}
	printSkipped(w, plan)
	req := plan.Request
	kind := req.Kind()
	var why string
	switch {
	case len(plan.Skipped) > 0:
		why = fmt.Sprintf("%d matching live lease(s) cannot be revoked", len(plan.Skipped))
	case plan.Matched > 0:
		why = fmt.Sprintf("%d matching lease(s) in the ledger, every user already gone", plan.Matched)
	case kind == operator.KindDBUser:
		why = "no role of that name in the target(s) and no lease of it in the ledger"
	case kind == operator.KindAllManaged:
		why = fmt.Sprintf("no managed role in %s (%d other role(s) left alone)", req.Database, plan.Unmanaged)
	default:
		why = "no lease in the ledger matches"
	}
	fmt.Fprintf(w, "nothing to revoke for %s: %s\n", req.Selector, why)
	switch {
	case len(plan.Skipped) > 0:
		return exitError{code: exitNotClean, err: fmt.Errorf("%d matching lease(s) cannot be revoked", len(plan.Skipped))}
	case plan.Matched == 0 && kind != operator.KindDBUser && kind != operator.KindAllManaged:
		return exitError{code: exitNotClean, err: fmt.Errorf("no lease in the ledger matches %s: cannot tell whether its users are gone", req.Selector)}
	}
	return nil
}

func printResults(ctx context.Context, out, errw io.Writer, q store.Querier, plan operator.Plan, results []revoker.Executed, format outputFormat) error {
	if format == outputJSON {
		ids := make([]string, 0, len(results))
		for _, x := range results {
			if x.Recorded {
				ids = append(ids, x.Command.ID)
			}
		}
		evs, err := store.RevocationEvidence(ctx, q, ids)
		if err != nil {
			return err
		}
		for _, x := range results {
			raw, ok := evs[x.Command.ID]
			if !ok {
				fmt.Fprintf(errw, "no evidence for %s/%s: %s\n", x.Command.Database, x.Command.DBUser, outcomeText(x))
				continue
			}
			var line bytes.Buffer
			if err := json.Compact(&line, raw); err != nil {
				return fmt.Errorf("evidence of %s: %w", x.Command.ID, err)
			}
			line.WriteByte('\n')
			if _, err := out.Write(line.Bytes()); err != nil {
				return err
			}
		}
		fmt.Fprintln(errw, resultSummary(plan, results))
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tUSER\tLEASE\tOUTCOME\tSESSIONS\tREASON")
	for _, x := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", x.Command.Database, x.Command.DBUser, dash(x.Command.LeaseID),
			outcomeText(x), x.Result.SessionsTerminated, dash(resultReason(x)))
	}
	tw.Flush()
	printSkipped(out, plan)
	fmt.Fprintln(out)
	fmt.Fprintln(out, resultSummary(plan, results))
	return nil
}

func outcomeText(x revoker.Executed) string {
	switch {
	case !x.Recorded:
		return "not recorded"
	case x.Duplicate:
		return string(x.Result.Outcome) + " (recorded before)"
	}
	return string(x.Result.Outcome)
}

func resultReason(x revoker.Executed) string {
	if !x.Recorded {
		if x.Err != nil {
			return x.Err.Error()
		}
		return ""
	}
	if x.Result.Guard != "" {
		return x.Result.Guard + ": " + x.Result.Reason
	}
	return x.Result.Reason
}

func resultSummary(plan operator.Plan, results []revoker.Executed) string {
	counts := map[string]int{}
	for _, x := range results {
		if x.Recorded {
			counts[string(x.Result.Outcome)]++
		} else {
			counts["not recorded"]++
		}
	}
	s := fmt.Sprintf("request %s by %s: %d dropped, %d already absent, %d refused, %d failed",
		plan.Request.RequestID, plan.Request.Actor, counts[string(schemas.OutcomeDropped)],
		counts[string(schemas.OutcomeAlreadyAbsent)], counts[string(schemas.OutcomeRefused)], counts[string(schemas.OutcomeFailed)])
	if n := counts["not recorded"]; n > 0 {
		s += fmt.Sprintf(", %d not recorded", n)
	}
	if len(plan.Skipped) > 0 {
		s += fmt.Sprintf(", %d skipped", len(plan.Skipped))
	}
	return s + "; evidence is in the outbox (the relay of leaseguard run publishes it)"
}

func notGone(plan operator.Plan, results []revoker.Executed) int {
	n := len(plan.Skipped)
	for _, x := range results {
		if !operator.Gone(x) {
			n++
		}
	}
	return n
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
