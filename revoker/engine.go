package revoker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target/engine"
)

// engineTargets is what a target set has when some of its targets drop
// their accounts themselves (MySQL, MariaDB): target.Set. A set without it
// (target.Pools) has PostgreSQL targets only.
type engineTargets interface {
	Revoker(name string) (engine.Revoker, bool)
}

// engineRevoker returns the named target if its engine drops by itself.
func (x *Executor) engineRevoker(db string) (engine.Revoker, bool) {
	if et, ok := x.Targets.(engineTargets); ok {
		return et.Revoker(db)
	}
	return nil, false
}

// kind is the engine of the named target (PostgreSQL when it is not one
// that drops by itself, or unknown: the stricter names).
func (x *Executor) kind(db string) engine.Kind {
	if r, ok := x.engineRevoker(db); ok {
		return r.Kind()
	}
	return engine.KindPostgres
}

// known reports whether a target of that name is configured, of any
// engine.
func (x *Executor) known(db string) bool {
	if _, ok := x.Targets.Pool(db); ok {
		return true
	}
	_, ok := x.engineRevoker(db)
	return ok
}

// engineParallel bounds the accounts one target's engine works on at once.
// Each holds one connection for its whole drop (its named lock is the
// connection's), and the engine's pool keeps one of its four for the
// observer and the checks.
const engineParallel = 3

// dropThrough carries out one target's commands through its engine (each
// locks, kills, revokes and drops every host of its user, and verifies; or
// ends one ghost session), a few accounts at a time: an account whose lock
// another revoker holds must not hold up the others. Two commands of one
// account wait on each other through that lock. The engine applies its own
// guards, with the Dropper's managed pattern and protected names.
func (x *Executor) dropThrough(ctx context.Context, r engine.Revoker, db string, idx []int,
	cmds []schemas.RevocationCommand) map[int]schemas.RevocationResult {
	g := x.Dropper.guard
	eg := engine.Guard{ManagedPattern: g.ManagedPattern, Protected: g.Protected, AllowSuper: g.AllowSuperuser}
	results := make(map[int]schemas.RevocationResult, len(idx))
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, engineParallel)
	for _, i := range idx {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			res := x.dropOne(ctx, r, db, cmds[i], eg)
			mu.Lock()
			results[i] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	return results
}

// dropOne carries out one command through the engine.
func (x *Executor) dropOne(ctx context.Context, r engine.Revoker, db string, cmd schemas.RevocationCommand, eg engine.Guard) schemas.RevocationResult {
	if gt, ok := r.(ghostTerminator); ok && cmd.Action == schemas.ActionTerminateSession {
		return gt.TerminateGhost(ctx, db, cmd, eg)
	}
	res := r.Drop(ctx, db, cmd, eg)
	switch res.Outcome {
	case schemas.OutcomeDropped:
		x.noteDrop(ctx, res)
	case schemas.OutcomeAlreadyAbsent:
		res = x.earlierDrop(ctx, res)
	}
	return res
}

// noteDrop keeps the verified drop on the command's claim before anything
// else can stop the attempt: if it ends before recording the outcome, the
// redelivery finds the user absent and this tells it the drop was its own.
// A crash between the DROP USER and this note still leaves the redelivery
// an already_absent (the engine keeps no transaction id to ask).
func (x *Executor) noteDrop(ctx context.Context, res schemas.RevocationResult) {
	sctx, cancel := x.stateCtx(ctx)
	defer cancel()
	if err := store.NoteEngineDrop(sctx, x.State, res); err != nil {
		x.Logger.Warn("cannot note the drop before recording it", "command_id", res.CommandID, "err", err)
	}
}

// earlierDrop turns an already_absent into the drop an earlier attempt of
// the same command carried out and did not record: one drop, as the
// evidence of a crash-free run would show, saying the user was absent at
// the re-check. Sessions found at the re-check were killed now, and one
// still left makes it a failure, as after any drop.
func (x *Executor) earlierDrop(ctx context.Context, now schemas.RevocationResult) schemas.RevocationResult {
	sctx, cancel := x.stateCtx(ctx)
	defer cancel()
	prior, ok, err := store.EngineDrop(sctx, x.State, now.CommandID)
	if err != nil {
		x.Logger.Warn("cannot read an earlier attempt's drop; the user is already absent", "command_id", now.CommandID, "err", err)
		return now
	}
	if !ok || prior.Outcome != schemas.OutcomeDropped {
		return now
	}
	res := prior
	res.Reason = fmt.Sprintf("absent at the re-check; dropped by an earlier attempt of this command (started %s, verified gone then) "+
		"that ended before recording its outcome", prior.StartedAt.UTC().Format(time.RFC3339Nano))
	res.Statements = append(slices.Clone(prior.Statements), now.Statements...)
	res.SessionsTerminated += now.SessionsTerminated
	res.RoleAbsentAfter, res.SessionsLeftAfter, res.FinishedAt = now.RoleAbsentAfter, now.SessionsLeftAfter, now.FinishedAt
	if now.SessionsLeftAfter > 0 {
		res.Outcome = schemas.OutcomeFailed
		res.Reason += fmt.Sprintf("; %d session(s) of the user left", now.SessionsLeftAfter)
	}
	return res
}

// ghostTerminator is an engine that ends ghost sessions itself (MySQL:
// mysql.Engine.TerminateGhost), checking with the server, under the user's
// lock, that the session is still a ghost just before it acts. An engine
// without it refuses terminate_session commands in Drop.
type ghostTerminator interface {
	TerminateGhost(ctx context.Context, database string, cmd schemas.RevocationCommand, g engine.Guard) schemas.RevocationResult
}
