package observer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/observer/observed"
)

// foreignSession is a session of a role that is none of this test's, as
// another package's test opens on the shared cluster: the role's name is
// unique (v-foreign-<suffix>: the default managed pattern's, not the
// test's), and the role and the session are gone at cleanup.
type foreignSession struct {
	admin *pgxpool.Pool
	role  string
	conn  *pgx.Conn
}

func openForeign(t *testing.T, admin *pgxpool.Pool) *foreignSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := &foreignSession{admin: admin, role: "v-foreign-" + pgtest.Suffix()}
	pgtest.DropRoleAtCleanup(t, admin, f.role)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+pgx.Identifier{f.role}.Sanitize()+" LOGIN"); err != nil {
		t.Fatalf("create role %s: %v", f.role, err)
	}
	cfg, err := pgx.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = f.role, ""
	cfg.RuntimeParams["application_name"] = "foreign-test"
	if f.conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		t.Fatalf("connect as %s: %v", f.role, err)
	}
	t.Cleanup(func() { f.close(t) })
	return f
}

// drop drops the role under its live session, which runs on as a ghost.
func (f *foreignSession) drop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.admin.Exec(ctx, "DROP ROLE "+pgx.Identifier{f.role}.Sanitize()); err != nil {
		t.Fatalf("drop role %s: %v", f.role, err)
	}
}

// close ends the session (again: a no-op).
func (f *foreignSession) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = f.conn.Close(ctx)
}

// openForeignGhost opens a foreign session and drops its role at once: a
// ghost of a role no observer saw.
func openForeignGhost(t *testing.T, admin *pgxpool.Pool) *foreignSession {
	t.Helper()
	f := openForeign(t, admin)
	f.drop(t)
	return f
}

// foreignChurn changes the rest of the cluster between passes, as other
// packages' tests do. At each step the ghosts of the step before end, the
// session it opened loses its role (a ghost whose former user an observer
// may know, not managed by the test), a new session opens and another
// loses its role at once (fresh: a ghost of a role no observer saw).
// lasting is a ghost there all along.
type foreignChurn struct {
	admin   *pgxpool.Pool
	lasting *foreignSession
	fresh   *foreignSession
	live    *foreignSession
	ghosts  []*foreignSession
}

func (c *foreignChurn) step(t *testing.T) {
	t.Helper()
	for _, g := range c.ghosts {
		g.close(t)
	}
	c.ghosts = c.ghosts[:0]
	if c.live != nil {
		c.live.drop(t)
		c.ghosts = append(c.ghosts, c.live)
	}
	c.fresh = openForeignGhost(t, c.admin)
	c.ghosts = append(c.ghosts, c.fresh)
	c.live = openForeign(t, c.admin)
}

// seen checks the pass saw the lasting and the fresh ghost, and reported
// the fresh one: the scenario did run among foreign ghosts. A ghost gone
// by now may have been ended by another process (a leaseguard of another
// test ends ghosts of roles it never saw): not seeing it is no error.
func (c *foreignChurn) seen(t *testing.T, rep observer.PassReport, p *observed.Pass) {
	t.Helper()
	ghosts := map[int32]bool{}
	for _, s := range p.Sessions {
		ghosts[s.PID] = ghosts[s.PID] || s.Ghost
	}
	t.Logf("the pass saw %d sessions, %d findings", len(p.Sessions), len(rep.Rules.Findings))
	for _, f := range []*foreignSession{c.lasting, c.fresh} {
		if !ghosts[f.pid()] && f.alive(t) {
			t.Errorf("the pass did not see the ghost of %s (pid %d)", f.role, f.pid())
		}
	}
	if !ghosts[c.fresh.pid()] {
		return
	}
	for _, fd := range rep.Rules.Findings {
		if fmt.Sprint(fd.Facts["pid"]) == fmt.Sprint(c.fresh.pid()) {
			return
		}
	}
	t.Errorf("no finding for the ghost of %s (pid %d): %+v", c.fresh.role, c.fresh.pid(), rep.Rules.Findings)
}

// alive reports whether the session still runs.
func (f *foreignSession) alive(t *testing.T) bool {
	t.Helper()
	var n int
	if err := f.admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, f.pid()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func (f *foreignSession) pid() int32 { return int32(f.conn.PgConn().PID()) }

// TestGhostSessionAmongForeignGhosts runs the ghost-session scenario while
// other tests' ghost sessions come and go on the same cluster: one lasting
// the whole scenario (there at the baseline pass) and new ones, of known
// and unknown roles, before each pass. The observer reports them too (they
// are real ghosts); what the scenario proves about its own user, session
// and events must hold all the same.
func TestGhostSessionAmongForeignGhosts(t *testing.T) {
	t.Parallel()
	admin := pgtest.Pool(t)
	churn := &foreignChurn{admin: admin, lasting: openForeignGhost(t, admin)}
	ghostScenario(t, scenarioHooks{beforePass: churn.step, afterPass: churn.seen})
}
