package revoker

import (
	"context"

	"github.com/leaseguard/leaseguard/schemas"
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

// known reports whether a target of that name is configured, of any
// engine.
func (x *Executor) known(db string) bool {
	if _, ok := x.Targets.Pool(db); ok {
		return true
	}
	_, ok := x.engineRevoker(db)
	return ok
}

// dropThrough carries out one target's commands through its engine, one
// command at a time (each locks, kills, revokes and drops every host of
// its user, and verifies; or ends one ghost session). The engine applies its own guards, with the
// Dropper's managed pattern and protected names.
func (x *Executor) dropThrough(ctx context.Context, r engine.Revoker, db string, idx []int,
	cmds []schemas.RevocationCommand) map[int]schemas.RevocationResult {
	g := x.Dropper.guard
	eg := engine.Guard{ManagedPattern: g.ManagedPattern, Protected: g.Protected, AllowSuper: g.AllowSuperuser}
	results := make(map[int]schemas.RevocationResult, len(idx))
	for _, i := range idx {
		if gt, ok := r.(ghostTerminator); ok && cmds[i].Action == schemas.ActionTerminateSession {
			results[i] = gt.TerminateGhost(ctx, db, cmds[i], eg)
			continue
		}
		results[i] = r.Drop(ctx, db, cmds[i], eg)
	}
	return results
}

// ghostTerminator is an engine that ends ghost sessions itself (MySQL:
// mysql.Engine.TerminateGhost), checking with the server, under the user's
// lock, that the session is still a ghost just before it acts. An engine
// without it refuses terminate_session commands in Drop.
type ghostTerminator interface {
	TerminateGhost(ctx context.Context, database string, cmd schemas.RevocationCommand, g engine.Guard) schemas.RevocationResult
}
