package revoker

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target"
)

// Ghost sessions: a session whose role was dropped under it (what Vault's
// own revocation leaves running) has no role left to drop. The observer
// issues a signed terminate_session command for it, and the revoker ends
// it here, behind the same signature, freshness, target, guards,
// blast-radius limit and evidence as a drop. This file is PostgreSQL's; a
// MySQL or MariaDB target ends its ghosts itself (engine.go,
// mysql.Engine.TerminateGhost).
const (
	// terminateGhostsSQL ends each named session only if, at that instant,
	// its pid still has the start time and user oid the command names, it
	// is a client backend, and no role has that oid: a pid reused by
	// another session, or a role that exists, is never touched.
	terminateGhostsSQL = `SELECT t.pid, pg_terminate_backend(s.pid) ` +
		`FROM unnest($1::int[], $2::timestamptz[], $3::oid[]) AS t(pid, started, useroid) ` +
		`JOIN pg_stat_activity AS s ON s.pid = t.pid AND s.backend_start = t.started AND s.usesysid = t.useroid ` +
		`WHERE s.backend_type = 'client backend' AND NOT EXISTS (SELECT 1 FROM pg_roles AS r WHERE r.oid = t.useroid)`
	// ghostsLeftSQL finds which of the sessions are still there.
	ghostsLeftSQL = `SELECT t.pid FROM unnest($1::int[], $2::timestamptz[]) AS t(pid, started) ` +
		`JOIN pg_stat_activity AS s ON s.pid = t.pid AND s.backend_start = t.started`
)

// ghost is one terminate_session command on its way.
type ghost struct {
	cmd schemas.RevocationCommand
	res schemas.RevocationResult
	// live: still to be terminated (passed the guards).
	live bool
}

// TerminateBatch ends the ghost sessions named by terminate_session
// commands in the target named database. Like DropBatch it never returns
// an error: every command ends in an outcome with its reason — terminated
// (the session is gone afterwards), already_absent (no such ghost session
// any more), refused (a guard) or failed. Results are in the order of cmds.
func (d *Dropper) TerminateBatch(ctx context.Context, pool *pgxpool.Pool, database string, cmds []schemas.RevocationCommand) []schemas.RevocationResult {
	gs := make([]*ghost, len(cmds))
	for i, cmd := range cmds {
		gs[i] = &ghost{cmd: cmd, res: schemas.RevocationResult{CommandID: cmd.ID, Database: database,
			DBUser: cmd.DBUser, StartedAt: d.now()}}
		gs[i].live = d.precheckGhost(gs[i], database)
	}
	if err := d.terminateGhosts(ctx, pool, gs); err != nil {
		for _, g := range gs {
			if g.live {
				g.res.Outcome, g.res.Reason = schemas.OutcomeFailed, "terminate ghost sessions: "+err.Error()
			}
		}
	}
	out := make([]schemas.RevocationResult, len(gs))
	for i, g := range gs {
		g.res.FinishedAt = d.now()
		out[i] = g.res
	}
	return out
}

// precheckGhost applies the guards that need no database: the command's
// target name, and, when the former user is known, the managed pattern and
// the protected list (a protected role's session is never ended by an
// automatic rule, whatever became of the role).
func (d *Dropper) precheckGhost(g *ghost, database string) bool {
	var err error
	switch {
	case g.cmd.Database != database:
		err = refuse(GuardDatabase, "command is for target %q, not %q", g.cmd.Database, database)
	case g.cmd.DBUser != "":
		err = d.guard.CheckName(g.cmd.DBUser)
	}
	if err != nil {
		g.res.Outcome = schemas.OutcomeRefused
		if r, ok := asRefusal(err); ok {
			g.res.Guard, g.res.Reason = r.Guard, r.Reason
		}
		return false
	}
	return true
}

// terminateGhosts checks the target's identity, ends the sessions that are
// still ghosts, and waits for them to leave pg_stat_activity.
func (d *Dropper) terminateGhosts(ctx context.Context, pool *pgxpool.Pool, gs []*ghost) error {
	var live []*ghost
	for _, g := range gs {
		if g.live {
			live = append(live, g)
		}
	}
	if len(live) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.statementTimeout+d.settle)
	defer cancel()
	var sess sessionFacts
	if err := pool.QueryRow(ctx, target.IdentitySQL).Scan(&sess.Target.SystemIdentifier, &sess.Target.DatabaseOID); err != nil {
		return fmt.Errorf("read target identity: %w", err)
	}
	var act []*ghost
	for _, g := range live {
		if err := checkTarget(sess, expect(g.cmd)); err != nil {
			g.live = false
			g.res.Outcome, g.res.Guard, g.res.Reason = schemas.OutcomeRefused, GuardTarget, err.(*Refusal).Reason
			continue
		}
		act = append(act, g)
	}
	if len(act) == 0 {
		return nil
	}
	done, err := queryTerminated(ctx, pool, act)
	if err != nil {
		return err
	}
	return d.settleGhosts(ctx, pool, act, done)
}

func sessionArgs(gs []*ghost) ([]int32, []time.Time) {
	pids := make([]int32, len(gs))
	starts := make([]time.Time, len(gs))
	for i, g := range gs {
		pids[i], starts[i] = g.cmd.Session.PID, g.cmd.Session.BackendStart
	}
	return pids, starts
}

// queryTerminated runs terminateGhostsSQL and returns the pids it signalled.
func queryTerminated(ctx context.Context, pool *pgxpool.Pool, gs []*ghost) (map[int32]bool, error) {
	pids, starts := sessionArgs(gs)
	oids := make([]uint32, len(gs))
	for i, g := range gs {
		oids[i] = g.cmd.Session.UserOID
		g.res.Statements = []string{fmt.Sprintf("SELECT pg_terminate_backend(%d)", g.cmd.Session.PID)}
	}
	rows, err := pool.Query(ctx, terminateGhostsSQL, pids, starts, oids)
	if err != nil {
		return nil, err
	}
	done := map[int32]bool{}
	var pid int32
	var ok bool
	if _, err := pgx.ForEachRow(rows, []any{&pid, &ok}, func() error {
		done[pid] = done[pid] || ok
		return nil
	}); err != nil {
		return nil, err
	}
	return done, nil
}

// settleGhosts waits, up to d.settle, for the signalled sessions to leave
// pg_stat_activity, and sets each outcome from what is left.
func (d *Dropper) settleGhosts(ctx context.Context, pool *pgxpool.Pool, gs []*ghost, done map[int32]bool) error {
	var signalled []*ghost
	for _, g := range gs {
		if !done[g.cmd.Session.PID] {
			g.res.Statements = nil
			g.res.Outcome = schemas.OutcomeAlreadyAbsent
			g.res.Reason = "no such ghost session: it ended, or its pid, start or role no longer match"
			continue
		}
		g.res.SessionsTerminated = 1
		signalled = append(signalled, g)
	}
	left, err := pause.Until(ctx, d.settle, func() (map[int32]bool, bool, error) {
		left, err := ghostsLeft(ctx, pool, signalled)
		return left, len(left) == 0, err
	})
	if err != nil {
		return err
	}
	for _, g := range signalled {
		if left[g.cmd.Session.PID] {
			g.res.Outcome, g.res.SessionsLeftAfter = schemas.OutcomeFailed, 1
			g.res.Reason = "the session was signalled and is still there"
			continue
		}
		g.res.Outcome = schemas.OutcomeTerminated
	}
	return nil
}

// ghostsLeft returns which of gs are still in pg_stat_activity.
func ghostsLeft(ctx context.Context, pool *pgxpool.Pool, gs []*ghost) (map[int32]bool, error) {
	left := map[int32]bool{}
	if len(gs) == 0 {
		return left, nil
	}
	pids, starts := sessionArgs(gs)
	rows, err := pool.Query(ctx, ghostsLeftSQL, pids, starts)
	if err != nil {
		return nil, err
	}
	var pid int32
	_, err = pgx.ForEachRow(rows, []any{&pid}, func() error {
		left[pid] = true
		return nil
	})
	return left, err
}
