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

	"github.com/leaseguard/leaseguard/approval"
	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

const decideSynopsis = "ID [--actor NAME] [--comment TEXT] [--output table|json] [--resume]\n" +
	"       --list [--state pending|approved|rejected|expired] [--output table|json]"

// approveCmd approves a pending revocation (a rule in approve mode held it
// for an owner) and executes its command through the revoker directly
// against the target database, as `leaseguard revoke` does: no NATS, no
// running pipeline needed.
func approveCmd(ctx context.Context, m *Main, args []string) error {
	return decideCmd(ctx, m, "approve", args)
}

// rejectCmd rejects a pending revocation: nothing is dropped.
func rejectCmd(ctx context.Context, m *Main, args []string) error {
	return decideCmd(ctx, m, "reject", args)
}

func decideCmd(ctx context.Context, m *Main, verb string, args []string) error {
	fs := m.flags(verb, decideSynopsis)
	actorFlag := fs.String("actor", "", "who decides, recorded in the evidence (default: the OS user)")
	fs.StringVar(actorFlag, "as", "", "same as --actor")
	comment := fs.String("comment", "", "why, recorded with the decision and in its evidence")
	output := fs.String("output", "table", "table, or json: the evidence events of the decision (and of the revocation), one per line")
	list := fs.Bool("list", false, "list pending revocations (their ids) instead of deciding one")
	resume := fs.Bool("resume", false, "approve only: finish an approved revocation whose run was interrupted (no new decision)")
	state := fs.String("state", "pending", "with --list: pending, approved, rejected or expired")
	// The id may come before or after the flags.
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var id string
	if fs.NArg() > 0 {
		id = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
		}
	}
	if *output != "table" && *output != "json" {
		return usageError{fmt.Sprintf("--output %q: want table or json", *output)}
	}
	switch {
	case *list && id != "":
		return usageError{"--list takes no id"}
	case *resume && verb != "approve":
		return usageError{"--resume is for approve"}
	case !*list && id == "":
		return usageError{"name the pending revocation: leaseguard " + verb + " ID (leaseguard " + verb + " --list shows them)"}
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	level := cfg.LogLevel
	if level == "info" {
		level = "warn"
	}
	logger := newLogger(m.Stderr, level, "text")
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if *list {
		return listPending(ctx, m.Stdout, st, schemas.ApprovalState(*state), *output)
	}

	var exec *operatorExecutor
	if verb == "approve" {
		tc, _ := cfg.targetConfig()
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
	who := actor(*actorFlag)
	var res approval.Decided
	switch {
	case *resume:
		res, err = ap.Resume(ctx, id)
	case verb == "approve":
		res, err = ap.Approve(ctx, id, who, *comment)
	default:
		res, err = ap.Reject(ctx, id, who, *comment)
	}
	switch {
	case errors.Is(err, operator.ErrInvalid):
		return usageError{err.Error()}
	case errors.Is(err, approval.ErrAlreadyDecided), errors.Is(err, approval.ErrApprovalExpired):
		if strings.HasSuffix(err.Error(), "resume it") {
			err = fmt.Errorf("%w with: leaseguard approve --resume %s", err, id)
		}
		return exitError{code: exitNotClean, err: fmt.Errorf("refused: %w", err)}
	case err != nil:
		return err
	}
	if err := printDecision(context.WithoutCancel(ctx), m.Stdout, st.Pool(), res, *output); err != nil {
		return err
	}
	if res.Executed != nil && !operator.Gone(*res.Executed) {
		return exitError{code: exitNotClean, err: fmt.Errorf("approved, but %s/%s is not verifiably gone", res.Pending.Database, res.Pending.DBUser)}
	}
	return nil
}

func listPending(ctx context.Context, w io.Writer, st *store.Store, state schemas.ApprovalState, format string) error {
	switch state {
	case schemas.ApprovalPending, schemas.ApprovalApproved, schemas.ApprovalRejected, schemas.ApprovalExpired:
	default:
		return usageError{fmt.Sprintf("--state %q: want pending, approved, rejected or expired", state)}
	}
	ps, err := pending.List(ctx, st.Pool(), pending.Page{State: state, Limit: 1000})
	if err != nil {
		return err
	}
	if format == "json" {
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

func printDecision(ctx context.Context, w io.Writer, q store.Querier, res approval.Decided, format string) error {
	p := res.Pending
	if format == "json" {
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
