package revoker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/nodes"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// RuleCommandRefused names the finding raised for a command refused before
// it was recorded: an unsigned, forged, replayed or unapproved command on
// the work queue is an attack (or a broken issuer), and someone must look.
const RuleCommandRefused = "command-refused"

// refusedSeverity: a command nobody trusted signed, or aimed elsewhere, is
// critical; one that only outlived its lifetime (a slow queue, a replay)
// is high.
func refusedSeverity(guard string) schemas.Severity {
	if guard == GuardExpired {
		return schemas.SeverityHigh
	}
	return schemas.SeverityCritical
}

// refuseUnrecorded records a command refused by admit, keyed by its hash:
// no claim, no use of its id, so a forged command cannot occupy the id of a
// real one. The refusal gets its evidence and a finding (which raises an
// alert) once, however often the command is redelivered.
func (x *Executor) refuseUnrecorded(ctx context.Context, cmd schemas.RevocationCommand, r *Refusal) Executed {
	body, _ := json.Marshal(cmd)
	now := x.Clock()
	res := schemas.RevocationResult{CommandID: cmd.ID, CommandHash: CommandHash(body), Database: cmd.Database,
		DBUser: cmd.DBUser, Outcome: schemas.OutcomeRefused, Guard: r.Guard, Reason: r.Reason, StartedAt: now, FinishedAt: now}
	sctx, cancel := x.stateCtx(ctx)
	defer cancel()
	err := pgx.BeginFunc(sctx, x.State, func(tx pgx.Tx) error { return x.recordRefused(sctx, tx, cmd, res) })
	if err != nil {
		x.Logger.Warn("cannot record refused command; will retry", "command_hash", res.CommandHash, "err", err)
		return Executed{Command: cmd, Result: res, Retry: true, Err: err}
	}
	return x.recorded(cmd, res)
}

func (x *Executor) recordRefused(ctx context.Context, tx pgx.Tx, cmd schemas.RevocationCommand, res schemas.RevocationResult) error {
	ev, err := x.Evidence.Revocation(cmd, res, nil)
	if err != nil {
		return fmt.Errorf("build refusal evidence: %w", err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO refused_commands (command_hash, command_id, database, db_user, rule, issuer,
			key_id, guard, reason, received_at, evidence_id)
		VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), $8, $9, $10, $11) ON CONFLICT (command_hash) DO NOTHING`,
		res.CommandHash, clip(cmd.ID), clip(cmd.Database), clip(cmd.DBUser), clip(cmd.Rule), clip(cmd.Issuer),
		clip(cmd.KeyID), res.Guard, res.Reason, res.FinishedAt, ev.ID)
	if err != nil {
		return fmt.Errorf("record refused command: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil // a redelivery: recorded before
	}
	f := refusedFinding(cmd, res)
	if res.Guard == GuardSignature && cmd.KeyID != "" {
		// A key a live process signs with, which this revoker does not
		// accept yet: the configurations disagree (see docs/operations.md).
		if who, ok := nodes.Owner(ctx, tx, cmd.KeyID, nodes.DefaultLiveFor); ok {
			f.Facts["key_of_registered_process"] = who
			f.Summary += "; the key is the signing key of " + who + ", which this revoker does not accept: add its public key to LEASEGUARD_COMMAND_VERIFY_KEYS"
		}
	}
	fev, err := x.Evidence.Finding(f, nil)
	if err != nil {
		return fmt.Errorf("build refusal finding evidence: %w", err)
	}
	if _, err := store.InsertFinding(ctx, tx, f, fev.ID); err != nil {
		return err
	}
	// Evidence last: appending holds the chain head lock until commit.
	if _, err := evidence.AppendMany(ctx, tx, []evidence.Event{ev, fev}); err != nil {
		return fmt.Errorf("append refusal evidence: %w", err)
	}
	return nil
}

// refusedFinding is the finding of a refused command: it names what the
// command claimed (database, user) and why it was refused.
func refusedFinding(cmd schemas.RevocationCommand, res schemas.RevocationResult) schemas.Finding {
	facts := map[string]any{
		"guard": res.Guard, "reason": res.Reason, "command_hash": res.CommandHash,
		"claimed_command_id": clip(cmd.ID), "claimed_rule": clip(cmd.Rule), "claimed_issuer": clip(cmd.Issuer),
	}
	if cmd.KeyID != "" {
		facts["key_id"] = clip(cmd.KeyID)
	}
	return schemas.Finding{
		Type: schemas.FindingType, ID: "refused-" + res.CommandHash[:32], Rule: RuleCommandRefused,
		Severity: refusedSeverity(res.Guard), Mode: schemas.ModeObserve, DetectedAt: res.FinishedAt.UTC(),
		Database: clip(cmd.Database), DBUser: clip(cmd.DBUser), LeaseID: clip(cmd.LeaseID),
		Summary: fmt.Sprintf("a revocation command for %s/%s was refused before it was recorded (guard %s): %s",
			clip(cmd.Database), clip(cmd.DBUser), res.Guard, res.Reason),
		Facts: facts, Action: schemas.ActionNone,
	}
}

// clip bounds what an unauthenticated command may put into the state
// store and the evidence.
func clip(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "")
}
