package revoker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// IssuerApproval issues the commands of approved pending revocations.
const IssuerApproval = "approval"

// IssuerOperator issues an operator's commands (package operator).
const IssuerOperator = "operator"

// ExecutorDeps are what carrying out a revocation needs.
type ExecutorDeps struct {
	Dropper  *Dropper
	Verifier *Verifier
	// Limiter bounds automatic revocations; nil means no limit.
	Limiter *Limiter
	Targets Targets
	// State is the state-store pool (search_path set to its schema).
	State    *pgxpool.Pool
	Evidence evidence.Builder
	// RequiresApproval reports whether a rule is in approve mode: its
	// commands are carried out only if an owner approved exactly that
	// command. An error (the policy unreadable) hands the command back for
	// a retry. nil: no rule is.
	RequiresApproval func(ctx context.Context, rule string) (bool, error)
	Logger           *slog.Logger
	Metrics          *Metrics
	Clock            func() time.Time
	// Progress hears of each chunk carried out, and of each batch of the
	// consumer (Service); nil: nobody.
	Progress *progress.Worker
	// StateTimeout bounds each state-store step (claim, approval check,
	// target transaction id, outcome records; default
	// DefaultStateTimeout): a silent store fails the step, and the
	// commands are handed back for a retry, instead of holding the batch
	// for the whole work timeout.
	StateTimeout time.Duration
	// TargetWorkers bounds how many target databases are worked on at
	// once (default DefaultTargetWorkers).
	TargetWorkers int
}

// DefaultTargetWorkers is ExecutorDeps.TargetWorkers when it is 0.
const DefaultTargetWorkers = 8

// DefaultStateTimeout bounds a state-store step of the Executor when its
// deps give no StateTimeout.
const DefaultStateTimeout = 10 * time.Second

// Executor carries out revocation commands: it authenticates each one
// (signature, lifetime, target, approval) before recording anything under
// its id, claims it in the state store, waits on the blast-radius limit,
// drops the users or ends the ghost sessions (batched per target database)
// and records every outcome with its evidence in one state-store
// transaction. The JetStream consumer and the operator's direct path
// (pipeline down) both go through it, so both apply the same guards and the
// same idempotency.
type Executor struct {
	ExecutorDeps
	// throttled counts the batches waiting on the blast-radius limit.
	throttling sync.Mutex
	throttled  int
}

// NewExecutor builds an Executor.
func NewExecutor(d ExecutorDeps) (*Executor, error) {
	if d.Dropper == nil || d.Verifier == nil || d.Targets == nil || d.State == nil {
		return nil, errors.New("revoker: dropper, verifier, targets and state store are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.StateTimeout <= 0 {
		d.StateTimeout = DefaultStateTimeout
	}
	if d.TargetWorkers <= 0 {
		d.TargetWorkers = DefaultTargetWorkers
	}
	return &Executor{ExecutorDeps: d}, nil
}

// stateCtx bounds one state-store step.
func (x *Executor) stateCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, x.StateTimeout)
}

// Executed is what became of one command.
type Executed struct {
	Command schemas.RevocationCommand
	Result  schemas.RevocationResult
	// Recorded: the outcome and its evidence are committed, by this call or
	// by an earlier attempt of the same command (Duplicate).
	Recorded  bool
	Duplicate bool
	// Retry: a transient failure; nothing was recorded; try again later.
	Retry bool
	Err   error
}

// Execute carries out cmds. final(i) says whether this is the last attempt
// of cmds[i]: a transient failure on the last attempt is recorded as failed
// instead of being handed back for a retry.
//
// The blast-radius limit is applied command by command, in order: the
// commands that find a token are carried out together, then the next
// ones as tokens come. A throttled call lasts as long as the limit says;
// ctx bounds it (a command not reached when ctx ends is handed back).
func (x *Executor) Execute(ctx context.Context, cmds []schemas.RevocationCommand, final func(i int) bool) []Executed {
	out := make([]Executed, len(cmds))
	for i := range cmds {
		out[i].Command = cmds[i]
	}
	// Work once started is finished (a drop is not left half recorded)
	// within workTimeout; only waiting for the limit ends with ctx.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), workTimeout)
	defer cancel()
	start := time.Now()
	admitted := x.admitAll(wctx, cmds, out)
	start = x.Metrics.step("admit", start)
	claims, err := x.claim(wctx, cmds, admitted)
	start = x.Metrics.step("claim", start)
	if err != nil {
		x.Logger.Warn("cannot claim revocations; will retry", "commands", len(admitted), "err", err)
		for _, i := range admitted {
			out[i].Retry, out[i].Err = true, err
		}
		return out
	}
	todo := x.triage(wctx, cmds, admitted, claims, out)
	x.Metrics.step("triage", start)
	var throttled bool
	defer func() {
		if throttled {
			x.throttle(-1)
		}
	}()
	for len(todo) > 0 {
		chunk, rest, err := x.takeTokens(ctx, cmds, todo, &throttled)
		if err != nil {
			for _, i := range todo {
				out[i].Retry, out[i].Err = true, err
			}
			return out
		}
		x.runChunk(cmds, chunk, claims, final, out)
		x.Progress.Advance() // a throttled batch is slow, not stuck
		todo = rest
	}
	return out
}

// workTimeout bounds the work on one chunk of commands: the drops (which
// have their own statement and lock timeouts) and the records.
const workTimeout = 2 * time.Minute

// runChunk carries out the commands of chunk, per target database: up to
// TargetWorkers databases at once, so that a drop waiting on a lock in one
// database holds no other database's drops. Each database's commands are
// still one transaction at a time (one connection of its pool), and each
// writes only its own entries of out.
func (x *Executor) runChunk(cmds []schemas.RevocationCommand, chunk []int, claims []store.Claim, final func(int) bool, out []Executed) {
	ctx, cancel := context.WithTimeout(context.Background(), workTimeout)
	defer cancel()
	byDB := map[string][]int{}
	for _, i := range chunk {
		byDB[cmds[i].Database] = append(byDB[cmds[i].Database], i)
	}
	var wg sync.WaitGroup
	workers := make(chan struct{}, x.TargetWorkers)
	for _, db := range dbOrder(cmds, byDB) {
		workers <- struct{}{}
		wg.Go(func() {
			defer func() { <-workers }()
			x.runIn(ctx, db, byDB[db], cmds, claims, final, out)
		})
	}
	wg.Wait()
}

// admitAll authenticates each command. A refused one is recorded under its
// own hash (refuseUnrecorded) and takes no id; one whose check could not be
// made (the target unreachable) is handed back for a retry. It returns the
// indexes of the admitted commands.
func (x *Executor) admitAll(ctx context.Context, cmds []schemas.RevocationCommand, out []Executed) []int {
	var admitted []int
	modes := approvalModes{}
	for i, cmd := range cmds {
		err := x.admit(ctx, cmd, modes)
		var r *Refusal
		switch {
		case err == nil:
			admitted = append(admitted, i)
		case errors.As(err, &r):
			out[i] = x.refuseUnrecorded(ctx, cmd, r)
		default:
			x.Logger.Warn("cannot check revocation command; will retry", "command_id", cmd.ID, "err", err)
			out[i].Retry, out[i].Err = true, err
		}
	}
	return admitted
}

// admit is everything a command must pass before anything is recorded
// under its id: a valid signature by a trusted key, its lifetime, an action
// that fits, a configured target whose identity it carries, and, for a rule
// in approve mode, an owner's approval of exactly this command.
func (x *Executor) admit(ctx context.Context, cmd schemas.RevocationCommand, modes approvalModes) error {
	if err := x.Verifier.Verify(cmd); err != nil {
		return err
	}
	if err := CheckFresh(cmd, x.Clock()); err != nil {
		return err
	}
	if !x.known(cmd.Database) {
		return refuse(GuardUnknownTarget, "no target database named %q is configured", cmd.Database)
	}
	if err := CheckShape(cmd); err != nil {
		return err
	}
	id, err := x.Targets.Identity(ctx, cmd.Database)
	if err != nil {
		return err
	}
	if err := checkTarget(sessionFacts{Target: id}, expect(cmd)); err != nil {
		return err
	}
	return x.checkApproval(ctx, cmd, modes)
}

// approvalModes holds, for one batch, whether each rule it met needs an
// owner's approval: the policy is read once per rule and batch, which is
// as fresh as once per command (a batch is admitted in moments) without a
// trip to the state store for each.
type approvalModes map[string]bool

func (x *Executor) needsApproval(ctx context.Context, rule string, modes approvalModes) (bool, error) {
	if x.RequiresApproval == nil {
		return false, nil
	}
	if needs, ok := modes[rule]; ok {
		return needs, nil
	}
	needs, err := x.RequiresApproval(ctx, rule)
	if err != nil {
		return false, err // not kept: the next command asks again
	}
	modes[rule] = needs
	return needs, nil
}

// checkApproval refuses a command of a rule in approve mode (or one issued
// as approved) unless an owner approved exactly this command: the pending
// revocation of its id is approved, and the command the approval issued
// has this command's nonce.
func (x *Executor) checkApproval(ctx context.Context, cmd schemas.RevocationCommand, modes approvalModes) error {
	needs := cmd.Issuer == IssuerApproval
	if !needs {
		var err error
		if needs, err = x.needsApproval(ctx, cmd.Rule, modes); err != nil {
			return err
		}
	}
	if !needs {
		return nil
	}
	sctx, cancel := x.stateCtx(ctx)
	defer cancel()
	p, err := pending.Get(sctx, x.State, cmd.ID)
	switch {
	case errors.Is(err, pending.ErrNotFound):
		return refuse(GuardApproval, "rule %s needs an owner's approval and none is recorded for command %s", cmd.Rule, cmd.ID)
	case err != nil:
		return err
	case p.State != schemas.ApprovalApproved || p.Approved == nil:
		return refuse(GuardApproval, "the pending revocation %s is %s, not approved", cmd.ID, p.State)
	case p.Approved.Nonce != cmd.Nonce || p.Database != cmd.Database || p.DBUser != cmd.DBUser:
		return refuse(GuardApproval, "the pending revocation %s was approved for another command", cmd.ID)
	}
	return nil
}

// claim records every admitted command in one statement (one commit for
// the batch) and returns the claims by command index.
func (x *Executor) claim(ctx context.Context, cmds []schemas.RevocationCommand, admitted []int) ([]store.Claim, error) {
	claims := make([]store.Claim, len(cmds))
	batch := make([]schemas.RevocationCommand, len(admitted))
	for k, i := range admitted {
		batch[k] = cmds[i]
	}
	sctx, cancel := x.stateCtx(ctx)
	defer cancel()
	got, err := store.ClaimRevocations(sctx, x.State, batch)
	if err != nil {
		return nil, err
	}
	for k, i := range admitted {
		claims[i] = got[k]
	}
	return claims, nil
}

// triage settles the commands an earlier attempt finished, and refuses at
// once those a guard that needs no database refuses (they take no
// blast-radius token); it returns the others, in order.
func (x *Executor) triage(ctx context.Context, cmds []schemas.RevocationCommand, admitted []int, claims []store.Claim,
	out []Executed) []int {
	var todo, refusedIdx []int
	var refused []schemas.RevocationResult
	for _, i := range admitted {
		cmd := cmds[i]
		if claims[i].Done {
			out[i] = x.duplicate(ctx, cmd, claims[i])
			continue
		}
		if res, ok := x.Dropper.refuseByName(cmd, x.kind(cmd.Database), x.Clock()); ok {
			refusedIdx, refused = append(refusedIdx, i), append(refused, res)
			continue
		}
		todo = append(todo, i)
	}
	todo, refusedIdx, refused = x.refuseSiblings(ctx, cmds, todo, out, refusedIdx, refused)
	for k, e := range x.settle(ctx, pick(cmds, refusedIdx), refused) {
		out[refusedIdx[k]] = e
	}
	return todo
}

// refuseSiblings moves to the refused the drops GuardSiblingLease refuses;
// when the ledger cannot be read, the drops it would check are handed back
// for a retry (never carried out unchecked).
func (x *Executor) refuseSiblings(ctx context.Context, cmds []schemas.RevocationCommand, todo []int, out []Executed,
	refusedIdx []int, refused []schemas.RevocationResult) ([]int, []int, []schemas.RevocationResult) {
	elsewhere, err := x.liveLeaseElsewhere(ctx, cmds, todo)
	keep := todo[:0]
	for _, i := range todo {
		c := cmds[i]
		checked := siblingChecked(c)
		switch l, found := elsewhere[i]; {
		case err != nil && checked:
			x.Logger.Warn("cannot read the ledger before a drop; will retry", "command_id", c.ID, "err", err)
			out[i].Retry, out[i].Err = true, err
		case found:
			refusedIdx, refused = append(refusedIdx, i), append(refused, siblingRefusal(c, l, x.Clock()))
		default:
			keep = append(keep, i)
		}
	}
	return keep, refusedIdx, refused
}

// takeTokens returns the longest head of todo the blast-radius limit lets
// through now, and the rest. When it lets none through, it waits for one
// token (the revoker reports throttling meanwhile).
func (x *Executor) takeTokens(ctx context.Context, cmds []schemas.RevocationCommand, todo []int, throttled *bool) (chunk, rest []int, err error) {
	if x.Limiter == nil {
		return todo, nil, nil
	}
	for k, i := range todo {
		if ok, _ := x.Limiter.TryTake(cmds[i].Emergency); !ok {
			if k > 0 {
				return todo[:k], todo[k:], nil
			}
			break
		}
		if k == len(todo)-1 {
			return todo, nil, nil
		}
	}
	if !*throttled {
		*throttled = true
		x.throttle(1)
	}
	waited, err := x.Limiter.Wait(ctx, cmds[todo[0]].Emergency)
	if waited > 0 {
		x.Metrics.throttled.Add(waited.Seconds())
	}
	if err != nil {
		return nil, todo, fmt.Errorf("blast-radius limit: %w", err)
	}
	return todo[:1], todo[1:], nil
}

// throttle counts the batches waiting on the limit (the revoker has more
// than one in flight): the gauge is 1 while any is.
func (x *Executor) throttle(delta int) {
	x.throttling.Lock()
	defer x.throttling.Unlock()
	x.throttled += delta
	if x.throttled > 0 {
		x.Metrics.Throttling.Set(1)
	} else {
		x.Metrics.Throttling.Set(0)
	}
}

// dbOrder lists the databases of byDB in the order their first command
// appears in cmds.
func dbOrder(cmds []schemas.RevocationCommand, byDB map[string][]int) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range cmds {
		if _, ok := byDB[c.Database]; ok && !seen[c.Database] {
			seen[c.Database] = true
			out = append(out, c.Database)
		}
	}
	return out
}

// duplicate is the result of a command an earlier attempt recorded.
func (x *Executor) duplicate(ctx context.Context, cmd schemas.RevocationCommand, claim store.Claim) Executed {
	x.Metrics.duplicates.Inc()
	e := Executed{Command: cmd, Recorded: true, Duplicate: true}
	sctx, cancel := x.stateCtx(ctx)
	defer cancel()
	if rev, err := store.GetRevocation(sctx, x.State, cmd.ID); err == nil && rev.Result != nil {
		e.Result = *rev.Result
	} else {
		e.Result = schemas.RevocationResult{CommandID: cmd.ID, Database: cmd.Database, DBUser: cmd.DBUser, Outcome: claim.Outcome}
	}
	return e
}

// runIn carries out one target's commands, drops and terminations, and
// records their outcomes.
func (x *Executor) runIn(ctx context.Context, db string, idx []int, cmds []schemas.RevocationCommand,
	claims []store.Claim, final func(int) bool, out []Executed) {
	start := time.Now()
	results, err := x.carryOut(ctx, db, idx, cmds, claims)
	start = x.Metrics.step("carry_out", start)
	if err != nil {
		for _, i := range idx {
			out[i] = Executed{Command: cmds[i], Result: results[i], Retry: true, Err: err}
		}
		return // nothing recorded: no record step observed
	}
	x.record(ctx, db, idx, cmds, results, final, out)
	x.Metrics.step("record", start)
}

// carryOut drops and terminates in one target. A panic there fails every
// command of the target, as a failure without SQLSTATE: handed back for a
// retry, and recorded as failed with its evidence on the last attempt,
// instead of ending the process. An error is a drop stopped by a fault
// before the record.
func (x *Executor) carryOut(ctx context.Context, db string, idx []int, cmds []schemas.RevocationCommand,
	claims []store.Claim) (results map[int]schemas.RevocationResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			results, err = x.panicked(db, idx, cmds, p), nil
		}
	}()
	start := time.Now()
	if r, ok := x.engineRevoker(db); ok {
		results = x.dropThrough(ctx, r, db, idx, cmds)
		x.Metrics.batchSeconds.Observe(time.Since(start).Seconds())
		return results, x.Dropper.faultIDs(ctx, StepBeforeRecord, pickIDs(cmds, idx))
	}
	var drops, terms []int
	for _, i := range idx {
		if cmds[i].Action == schemas.ActionTerminateSession {
			terms = append(terms, i)
		} else {
			drops = append(drops, i)
		}
	}
	pool, _ := x.Targets.Pool(db)
	results = make(map[int]schemas.RevocationResult, len(idx))
	if len(drops) > 0 {
		dropped, lock := x.drop(ctx, pool, db, pick(cmds, drops), claims, drops)
		for k, res := range dropped {
			results[drops[k]] = res
		}
		x.Metrics.dropLockWait.Observe(lock.waited.Seconds())
		x.Metrics.dropLockHeld.Observe(lock.held.Seconds())
	}
	if len(terms) > 0 {
		for k, res := range x.Dropper.TerminateBatch(ctx, pool, db, pick(cmds, terms)) {
			results[terms[k]] = res
		}
	}
	x.Metrics.batchSeconds.Observe(time.Since(start).Seconds())
	return results, x.Dropper.faultIDs(ctx, StepBeforeRecord, pickIDs(cmds, idx))
}

// panicked is the failed result of each command of a target whose
// handling panicked.
func (x *Executor) panicked(db string, idx []int, cmds []schemas.RevocationCommand, p any) map[int]schemas.RevocationResult {
	reason, _ := schemas.RedactText(fmt.Sprintf("panic in revocation: %v", p))
	x.Logger.Error("revocation panicked; its commands failed", "database", db, "commands", len(idx),
		"reason", reason, "stack", string(debug.Stack()))
	now := x.Clock()
	results := make(map[int]schemas.RevocationResult, len(idx))
	for _, i := range idx {
		results[i] = schemas.RevocationResult{CommandID: cmds[i].ID, Database: db, DBUser: cmds[i].DBUser,
			Outcome: schemas.OutcomeFailed, Reason: reason, StartedAt: now, FinishedAt: now}
	}
	return results
}

func pickIDs(cmds []schemas.RevocationCommand, idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = cmds[i].ID
	}
	return out
}

func pick(cmds []schemas.RevocationCommand, idx []int) []schemas.RevocationCommand {
	out := make([]schemas.RevocationCommand, len(idx))
	for k, i := range idx {
		out[k] = cmds[i]
	}
	return out
}

// drop runs DropBatch, recording the target transaction id before it
// commits, and resolves roles found absent that an earlier attempt of the
// same command dropped without recording it. It also returns how long the
// drops waited for the target's drop lock and held it.
func (x *Executor) drop(ctx context.Context, pool *pgxpool.Pool, db string, batch []schemas.RevocationCommand,
	claims []store.Claim, idx []int) ([]schemas.RevocationResult, dropLockTimes) {
	results, lock := x.Dropper.dropBatch(ctx, pool, db, batch, func(ctx context.Context, xid int64, ids []string) error {
		sctx, cancel := x.stateCtx(ctx)
		defer cancel()
		return store.SetTargetXID(sctx, x.State, ids, xid)
	})
	// A role found absent may have been dropped by another attempt of the
	// same command (a redelivery, another revoker) that has not recorded
	// its outcome yet: its drop transaction id is recorded before that
	// transaction commits, so read it now, not as it was at the claim.
	var absentIDs []string
	for _, res := range results {
		if res.Outcome == schemas.OutcomeAlreadyAbsent {
			absentIDs = append(absentIDs, res.CommandID)
		}
	}
	sctx, cancel := x.stateCtx(ctx)
	xids, err := store.TargetXIDs(sctx, x.State, absentIDs)
	cancel()
	if err != nil {
		x.Logger.Warn("cannot read target transactions; using the claims'", "err", err)
		xids = nil
	}
	for k := range results {
		res := &results[k]
		xid := claims[idx[k]].TargetXID
		if v, ok := xids[res.CommandID]; ok {
			xid = v
		}
		if res.Outcome != schemas.OutcomeAlreadyAbsent || xid == 0 {
			continue
		}
		if status, err := x.targetXIDStatus(ctx, pool, xid); err == nil && status == "committed" {
			// An earlier attempt dropped the role and ended before it
			// recorded the outcome: the drop is that attempt's, and ours,
			// on the same terms (no session of the role left).
			res.Reason = fmt.Sprintf("dropped by an earlier attempt (target transaction %d committed) that ended before recording", xid)
			res.Outcome = schemas.OutcomeDropped
			if res.SessionsLeftAfter > 0 {
				res.Outcome = schemas.OutcomeFailed
				res.Reason += fmt.Sprintf("; %d session(s) of the role left", res.SessionsLeftAfter)
			}
		}
	}
	return results, lock
}

// targetXIDStatus asks the target about a drop transaction, within
// StateTimeout.
func (x *Executor) targetXIDStatus(ctx context.Context, pool *pgxpool.Pool, xid int64) (string, error) {
	ctx, cancel := x.stateCtx(ctx)
	defer cancel()
	return txidStatus(ctx, pool, xid)
}

// record hands transient failures back for a retry (unless it is the last
// attempt) and records every other outcome with its evidence.
func (x *Executor) record(ctx context.Context, db string, idx []int, cmds []schemas.RevocationCommand,
	results map[int]schemas.RevocationResult, final func(int) bool, out []Executed) {
	var settleIdx []int
	var settleRes []schemas.RevocationResult
	for _, i := range idx {
		res := results[i]
		if res.Outcome == schemas.OutcomeFailed && transient(res.SQLState) && (final == nil || !final(i)) {
			x.Logger.Warn("revocation failed; will retry", "database", db, "db_user", res.DBUser, "sqlstate", res.SQLState, "reason", res.Reason)
			out[i] = Executed{Command: cmds[i], Result: res, Retry: true, Err: errors.New(res.Reason)}
			continue
		}
		settleIdx = append(settleIdx, i)
		settleRes = append(settleRes, res)
	}
	for k, e := range x.settle(ctx, pick(cmds, settleIdx), settleRes) {
		out[settleIdx[k]] = e
	}
}

// settle records outcomes and their evidence in one transaction; if that
// fails for several, each is recorded on its own so one bad record does
// not hold back the others. An outcome that cannot be recorded is handed
// back for a retry.
func (x *Executor) settle(ctx context.Context, cmds []schemas.RevocationCommand, results []schemas.RevocationResult) []Executed {
	out := make([]Executed, len(cmds))
	if len(cmds) == 0 {
		return out
	}
	var fresh []bool
	var expiries map[string]time.Time
	sctx, cancel := x.stateCtx(ctx)
	defer cancel()
	err := pgx.BeginFunc(sctx, x.State, func(tx pgx.Tx) error {
		ctx := sctx
		evs, f, exp, err := x.finish(ctx, tx, cmds, results)
		if err != nil {
			return err
		}
		fresh, expiries = f, exp
		fs, fevs, err := x.trustFindings(cmds, results, fresh)
		if err != nil {
			return err
		}
		for k, f := range fs {
			if _, err := store.InsertFinding(ctx, tx, f, fevs[k].ID); err != nil {
				return err
			}
		}
		// Evidence last: the chain head stays locked until commit.
		if _, err := evidence.AppendMany(ctx, tx, append(evs, fevs...)); err != nil {
			return fmt.Errorf("append evidence: %w", err)
		}
		return nil
	})
	switch {
	case err == nil:
		for i := range cmds {
			if !fresh[i] {
				// Another attempt of the command (a redelivery racing this
				// one, another revoker) recorded its outcome first: that
				// one is the command's, with its evidence.
				out[i] = x.duplicate(ctx, cmds[i], store.Claim{Outcome: results[i].Outcome})
				continue
			}
			out[i] = x.recorded(cmds[i], results[i])
			x.observeExpiryToDrop(cmds[i], results[i], expiries)
		}
	case len(cmds) > 1:
		x.Logger.Warn("recording a batch of outcomes failed; recording one by one", "commands", len(cmds), "err", err)
		for i := range cmds {
			out[i] = x.settle(ctx, cmds[i:i+1], results[i:i+1])[0]
		}
	default:
		x.Logger.Warn("cannot record revocation outcome; will retry", "command_id", cmds[0].ID, "err", err)
		out[0] = Executed{Command: cmds[0], Result: results[0], Retry: true, Err: err}
	}
	return out
}

// recorded counts and logs an outcome that is committed.
func (x *Executor) recorded(cmd schemas.RevocationCommand, res schemas.RevocationResult) Executed {
	x.Metrics.outcomes.WithLabelValues(string(res.Outcome), res.Guard).Inc()
	x.Logger.Info("revocation", "outcome", res.Outcome, "action", cmd.Action, "database", res.Database, "db_user", res.DBUser,
		"command_id", res.CommandID, "rule", cmd.Rule, "issuer", cmd.Issuer, "actor", cmd.Actor, "guard", res.Guard,
		"reason", res.Reason, "sessions_terminated", res.SessionsTerminated, "corroboration", cmd.Corroboration.Source)
	return Executed{Command: cmd, Result: res, Recorded: true}
}

// observeExpiryToDrop measures how long after its lease's expiry a user
// was dropped: the delay leaseguard exists to keep short. Drops before the
// expiry (an operator's, a revoked lease's) and leases of unknown expiry
// are not expiry latency and are left out.
func (x *Executor) observeExpiryToDrop(cmd schemas.RevocationCommand, res schemas.RevocationResult, expiries map[string]time.Time) {
	expire, ok := expiries[cmd.LeaseID]
	if !ok || cmd.Action == schemas.ActionTerminateSession || res.Outcome != schemas.OutcomeDropped || !res.FinishedAt.After(expire) {
		return
	}
	x.Metrics.expiryToDrop.Observe(res.FinishedAt.Sub(expire).Seconds())
}

// finish records the outcomes of cmds inside tx, in a few statements
// whatever their number, and returns the evidence of those recorded now
// (an outcome an earlier attempt recorded gets no second evidence) and
// which those are.
func (x *Executor) finish(ctx context.Context, tx pgx.Tx, cmds []schemas.RevocationCommand, results []schemas.RevocationResult) ([]evidence.Event, []bool, map[string]time.Time, error) {
	leases, expiries, err := leaseContexts(ctx, tx, cmds)
	if err != nil {
		return nil, nil, nil, err
	}
	evs := make([]evidence.Event, len(cmds))
	fs := make([]store.Finish, len(cmds))
	for i, cmd := range cmds {
		ev, err := x.Evidence.Revocation(cmd, results[i], leases[cmd.LeaseID])
		if err != nil {
			return nil, nil, nil, fmt.Errorf("build evidence: %w", err)
		}
		evs[i] = ev
		fs[i] = store.Finish{Result: results[i], EvidenceID: ev.ID}
	}
	fresh, err := store.FinishRevocations(ctx, tx, fs, x.Clock())
	if err != nil {
		return nil, nil, nil, err
	}
	var out []evidence.Event
	for i, ev := range evs {
		if fresh[i] {
			out = append(out, ev)
		}
	}
	return out, fresh, expiries, nil
}

// trustFindings are the command-refused findings (alerts) of the outcomes
// recorded now that the database refused because the command does not fit
// it: a role replaced since the command was signed, or another database. A
// genuine command does not meet either; a replayed one does.
func (x *Executor) trustFindings(cmds []schemas.RevocationCommand, results []schemas.RevocationResult, fresh []bool) ([]schemas.Finding, []evidence.Event, error) {
	var fs []schemas.Finding
	var evs []evidence.Event
	for i, res := range results {
		if !fresh[i] || res.Outcome != schemas.OutcomeRefused || (res.Guard != GuardRoleOID && res.Guard != GuardTarget) {
			continue
		}
		body, _ := json.Marshal(cmds[i])
		res.CommandHash = CommandHash(body)
		f := refusedFinding(cmds[i], res)
		ev, err := x.Evidence.Finding(f, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("build refusal finding evidence: %w", err)
		}
		fs, evs = append(fs, f), append(evs, ev)
	}
	return fs, evs, nil
}

// leaseContexts reads what the ledger knows of the commands' leases, for
// their evidence. A lease the ledger does not know has only its id.
func leaseContexts(ctx context.Context, q store.Querier, cmds []schemas.RevocationCommand) (map[string]*evidence.LeaseContext, map[string]time.Time, error) {
	out := map[string]*evidence.LeaseContext{}
	expiries := map[string]time.Time{}
	var ids []string
	for _, cmd := range cmds {
		if cmd.LeaseID != "" && out[cmd.LeaseID] == nil {
			out[cmd.LeaseID] = &evidence.LeaseContext{LeaseID: cmd.LeaseID}
			ids = append(ids, cmd.LeaseID)
		}
	}
	if len(ids) == 0 {
		return out, expiries, nil
	}
	rows, err := q.Query(ctx, `SELECT lease_id, coalesce(last_request_id, ''), coalesce(entity_id, ''), coalesce(remote_address, ''),
		coalesce(mount, ''), coalesce(role, ''), expire_at FROM leases WHERE lease_id = ANY($1)`, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("read leases: %w", err)
	}
	var lc evidence.LeaseContext
	var expire *time.Time
	if _, err := pgx.ForEachRow(rows, []any{&lc.LeaseID, &lc.VaultRequestID, &lc.EntityID, &lc.RemoteAddress, &lc.Mount, &lc.Role, &expire}, func() error {
		c := lc
		out[c.LeaseID] = &c
		if expire != nil {
			expiries[c.LeaseID] = *expire
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("read leases: %w", err)
	}
	return out, expiries, nil
}
