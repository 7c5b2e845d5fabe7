package revoker

import (
	"context"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

// ghostOf drops name under a live session of it, as Vault's own revocation
// does, and returns the terminate_session command naming that session.
func ghostOf(t *testing.T, name string) (schemas.RevocationCommand, func() error) {
	t.Helper()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	createRole(t, pool, name, "LOGIN")
	conn := connectAs(t, name)
	var s schemas.SessionRef
	if err := pool.QueryRow(ctx, `SELECT pid, backend_start, usesysid FROM pg_stat_activity WHERE pid = $1`,
		conn.PgConn().PID()).Scan(&s.PID, &s.BackendStart, &s.UserOID); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, "DROP ROLE "+ident(name))
	cmd := cmdtest.Drop(t, pool, testTarget, name)
	cmd.Action, cmd.RoleOID, cmd.Session = schemas.ActionTerminateSession, 0, &s
	return cmd, func() error { return conn.Ping(context.Background()) }
}

// TestTerminateGhost ends a session whose role was dropped under it, only
// while it is exactly the ghost the command names.
func TestTerminateGhost(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	sfx := pgtest.Suffix()
	ghost, alive := ghostOf(t, "v-ghost-"+sfx)
	reused, reusedAlive := ghostOf(t, "v-ghost-reused-"+sfx)
	reused.Session.BackendStart = reused.Session.BackendStart.Add(-time.Microsecond) // another session on that pid
	protected, protectedAlive := ghostOf(t, "v-ghost-prot-"+sfx)
	d := newTestDropper(t, DropperConfig{Guard: GuardConfig{Protected: []string{protected.DBUser}}})

	res := d.TerminateBatch(ctx, pool, testTarget, []schemas.RevocationCommand{ghost, reused, protected})
	wantOutcome(t, res[0], schemas.OutcomeTerminated)
	if res[0].SessionsTerminated != 1 || res[0].SessionsLeftAfter != 0 || len(res[0].Statements) != 1 {
		t.Errorf("terminated: %+v", res[0])
	}
	if alive() == nil {
		t.Error("the ghost session still answers")
	}
	wantOutcome(t, res[1], schemas.OutcomeAlreadyAbsent)
	if reusedAlive() != nil {
		t.Error("a session the command does not name exactly was ended")
	}
	wantOutcome(t, res[2], schemas.OutcomeRefused)
	if res[2].Guard != GuardProtected || protectedAlive() != nil {
		t.Errorf("protected: %+v", res[2])
	}
	// Again: the session is gone.
	wantOutcome(t, d.TerminateBatch(ctx, pool, testTarget, []schemas.RevocationCommand{ghost})[0], schemas.OutcomeAlreadyAbsent)
	// Another database's command is refused.
	other, otherAlive := ghostOf(t, "v-ghost-other-"+sfx)
	other.Target.DatabaseOID++
	if r := d.TerminateBatch(ctx, pool, testTarget, []schemas.RevocationCommand{other})[0]; r.Outcome != schemas.OutcomeRefused || r.Guard != GuardTarget || otherAlive() != nil {
		t.Errorf("another database's command: %+v", r)
	}
}
