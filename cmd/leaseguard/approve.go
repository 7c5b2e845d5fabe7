package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/approval"
	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// decideOptions are the flags of approve and reject.
type decideOptions struct {
	actor, comment, state string
	list, resume          bool
	output                outputFormat
}

// approveCommand approves a pending revocation (a rule in approve mode held
// it for an owner) and executes its command through the revoker directly
// against the target database, as `leaseguard revoke` does: no NATS, no
// running pipeline needed.
func (m *Main) approveCommand() *cobra.Command {
	return m.decideCommand("approve", "approve a pending revocation (rule mode approve) and drop its user; --list shows them",
		"Approve records an owner's approval of a pending revocation (a rule in approve mode held it) and\n"+
			"drops its user now, through the revoker, directly against the target database: no NATS, no\n"+
			"running pipeline needed. --list shows the pending revocations and their ids.")
}

// rejectCommand rejects a pending revocation: nothing is dropped.
func (m *Main) rejectCommand() *cobra.Command {
	return m.decideCommand("reject", "reject a pending revocation (rule mode approve): nothing is dropped",
		"Reject records an owner's rejection of a pending revocation: nothing is dropped.\n"+
			"--list shows the pending revocations and their ids.")
}

func (m *Main) decideCommand(verb, short, long string) *cobra.Command {
	var o decideOptions
	cmd := &cobra.Command{
		Use:     verb + " (ID | --list)",
		Short:   short,
		Long:    long,
		Example: fmt.Sprintf("  leaseguard %[1]s --list\n  leaseguard %[1]s 216e34caed2d7caee8976a46c3c33762 --comment INC-77", verb),
		Args:    maxOneArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			return decideCmd(cmd.Context(), m, verb, id, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.actor, "actor", "", "who decides, recorded in the evidence (default: the OS user)")
	f.StringVar(&o.actor, "as", "", "same as --actor")
	f.StringVar(&o.comment, "comment", "", "why, recorded with the decision and in its evidence")
	f.BoolVar(&o.list, "list", false, "list pending revocations (their ids) instead of deciding one")
	f.StringVar(&o.state, "state", "pending", "with --list: pending, approved, rejected or expired")
	if verb == "approve" {
		f.BoolVar(&o.resume, "resume", false, "finish an approved revocation whose run was interrupted (no new decision)")
	}
	outputFlag(cmd, &o.output, "table, or json: the evidence events of the decision (and of the revocation), one per line; with --list, one pending revocation per line")
	return cmd
}

func decideCmd(ctx context.Context, m *Main, verb, id string, o decideOptions) error {
	switch {
	case o.list && id != "":
		return usageError{"--list takes no id"}
	case !o.list && id == "":
		return usageError{"name the pending revocation: leaseguard " + verb + " ID (leaseguard " + verb + " --list shows them)"}
	}
	cfg, err := loadStoreConfig(verb)
	if err != nil {
		return err
	}
	logger := operatorLogger(m.Stderr, cfg)
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if o.list {
		return listPending(ctx, m.Stdout, st, schemas.ApprovalState(o.state), o.output)
	}

	var exec *operatorExecutor
	if verb == "approve" {
		tc := cfg.parsed().targets
		targets, err := target.Open(ctx, tc)
		if err != nil {
			return err
		}
		defer targets.Close()
		x, err := newOperatorExecutor(cfg, st, targets, logger)
		if err != nil {
			return err
		}
		exec = &x
	}
	ap, err := newApprovals(cfg, st.Pool(), exec, logger)
	if err != nil {
		return err
	}
	res, err := decide(ctx, ap, verb, id, o)
	if err != nil {
		return err
	}
	if err := printDecision(context.WithoutCancel(ctx), m.Stdout, st.Pool(), res, o.output); err != nil {
		return err
	}
	if res.Executed != nil && !operator.Gone(*res.Executed) {
		return exitError{code: exitNotClean, err: fmt.Errorf("approved, but %s/%s is not verifiably gone", res.Pending.Database, res.Pending.DBUser)}
	}
	return nil
}

// decide records the decision (or resumes an approved one) and maps a
// refusal to its exit code.
func decide(ctx context.Context, ap *approval.Approvals, verb, id string, o decideOptions) (approval.Decided, error) {
	who := actor(o.actor)
	var res approval.Decided
	var err error
	switch {
	case o.resume:
		res, err = ap.Resume(ctx, id)
	case verb == "approve":
		res, err = ap.Approve(ctx, id, who, o.comment)
	default:
		res, err = ap.Reject(ctx, id, who, o.comment)
	}
	switch {
	case errors.Is(err, operator.ErrInvalid):
		return res, usageError{err.Error()}
	case errors.Is(err, approval.ErrAlreadyDecided), errors.Is(err, approval.ErrApprovalExpired):
		if strings.HasSuffix(err.Error(), "resume it") {
			err = fmt.Errorf("%w with: leaseguard approve --resume %s", err, id)
		}
		return res, exitError{code: exitNotClean, err: fmt.Errorf("refused: %w", err)}
	}
	return res, err
}

func listPending(ctx context.Context, w io.Writer, st *store.Store, state schemas.ApprovalState, format outputFormat) error {
	switch state {
	case schemas.ApprovalPending, schemas.ApprovalApproved, schemas.ApprovalRejected, schemas.ApprovalExpired:
	default:
		return usageError{fmt.Sprintf("--state %q: want pending, approved, rejected or expired", state)}
	}
	ps, err := pending.List(ctx, st.Pool(), pending.Page{State: state, Limit: 1000})
	if err != nil {
		return err
	}
	if format == outputJSON {
		enc := json.NewEncoder(w)
		for _, p := range ps {
			if err := enc.Encode(map[string]any{"id": p.ID, "state": p.State, "rule": p.Rule, "severity": p.Severity,
				"database": p.Database, "db_user": p.DBUser, "lease_id": p.LeaseID, "summary": p.Summary,
				"requested_at": p.RequestedAt.UTC(), "expires_at": p.ExpiresAt.UTC(), "decided_by": p.DecidedBy}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tRULE\tDATABASE/USER\tREQUESTED\tEXPIRES\tDECIDED BY")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\n", p.ID, p.State, p.Rule, p.Database, p.DBUser,
			p.RequestedAt.UTC().Format(time.RFC3339), p.ExpiresAt.UTC().Format(time.RFC3339), p.DecidedBy)
	}
	return tw.Flush()
}

func printDecision(ctx context.Context, w io.Writer, q store.Querier, res approval.Decided, format outputFormat) error {
	p := res.Pending
	if format == outputJSON {
		raw, err := evidence.RawEvent(ctx, q, p.EvidenceID)
		if err != nil {
			return err
		}
		events := [][]byte{raw}
		if res.Executed != nil && res.Executed.Recorded {
			evs, err := store.RevocationEvidence(ctx, q, []string{res.Executed.Command.ID})
			if err != nil {
				return err
			}
			if ev, ok := evs[res.Executed.Command.ID]; ok {
				events = append(events, ev)
			}
		}
		for _, ev := range events {
			if _, err := fmt.Fprintln(w, strings.TrimSpace(string(ev))); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDECISION\tBY\tDATABASE/USER\tOUTCOME\tEVIDENCE")
	out := "-"
	if x := res.Executed; x != nil {
		out = string(x.Result.Outcome)
		if x.Result.Guard != "" {
			out += " (" + x.Result.Guard + ")"
		}
		if !x.Recorded {
			out = "not recorded"
			if x.Err != nil {
				out += ": " + x.Err.Error()
			}
		}
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%s\n", p.ID, p.State, p.DecidedBy, p.Database, p.DBUser, out, p.EvidenceID)
	return tw.Flush()
}
