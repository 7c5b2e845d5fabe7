package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
)

// ghost is a managed user with a live session, whose role the case drops
// under it (what Vault's own revocation leaves running).
type ghost struct {
	name string
	conn *pgx.Conn
	pid  uint32
}

// runObserver: managed users hold live sessions; once the observer has
// seen their roles, the target is blackholed and the roles are dropped
// under the sessions (ghost sessions). After the restore, the observer
// must find every ghost and the revoker end it (exactly one `terminated`
// per user) within 10 s.
func runObserver(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
	goal := resumeGoal
	e.outcome = "terminated"
	e.extraEnv["LEASEGUARD_ROLES"] = "ingest,detectors,revoker,relay,observer"
	if err := e.start(); err != nil {
		return Observation{}, goal, err
	}
	ghosts, err := e.openGhosts(ctx, ghostCount(e.h.opt))
	defer closeGhosts(ghosts)
	if err != nil {
		return Observation{}, goal, err
	}
	if err := e.waitRolesSeen(ctx, ghosts); err != nil {
		return Observation{}, goal, err
	}
	f := proxyFault(e.target, faultproxy.Blackhole)
	during := func(ctx context.Context) error { return e.dropUnder(ctx, ghosts) }
	obs, goal, err := e.holdAndObserve(ctx, f, during, goal)
	if err == nil {
		obs.Extra = append(obs.Extra, e.ghostsAlive(ctx, ghosts)...)
	}
	return obs, goal, err
}

// ghostCount keeps the sessions well inside the server's connections.
func ghostCount(o options) int {
	if o.short {
		return 10
	}
	return 25
}

// openGhosts creates n managed users and a session as each.
func (e *caseEnv) openGhosts(ctx context.Context, n int) ([]*ghost, error) {
	var out []*ghost
	for range n {
		g := &ghost{name: vaultsim.Username(e.sim.DisplayName, "ghost", time.Now())}
		pw := "G1-" + suffix() + suffix()
		q := fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", pgx.Identifier{g.name}.Sanitize(), pw)
		if _, err := e.h.admin.Exec(ctx, q); err != nil {
			return out, err
		}
		cfg, err := pgx.ParseConfig(e.h.opt.dbURL)
		if err != nil {
			return out, err
		}
		cfg.User, cfg.Password = g.name, pw
		cfg.RuntimeParams["application_name"] = "chaos-ghost"
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		g.conn, err = pgx.ConnectConfig(cctx, cfg)
		cancel()
		if err != nil {
			return out, fmt.Errorf("connect as %s: %w", g.name, err)
		}
		g.pid = g.conn.PgConn().PID()
		out = append(out, g)
	}
	return out, nil
}

func closeGhosts(gs []*ghost) {
	for _, g := range gs {
		if g.conn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = g.conn.Close(ctx)
			cancel()
		}
	}
}

// waitRolesSeen waits until the observer has recorded every ghost's role.
func (e *caseEnv) waitRolesSeen(ctx context.Context, gs []*ghost) error {
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = g.name
	}
	q := "SELECT count(*) FROM " + pgx.Identifier{e.schema, "db_roles"}.Sanitize() + " WHERE rolname = ANY($1) AND gone_at IS NULL"
	return poll(ctx, "the observer to see the users", time.Minute, func(ctx context.Context) (bool, string, error) {
		var n int
		err := e.h.admin.QueryRow(ctx, q, names).Scan(&n)
		return n == len(gs), fmt.Sprintf("%d of %d seen", n, len(gs)), err
	})
}

// dropUnder drops every ghost's role while its session lives on; each is
// due from then.
func (e *caseEnv) dropUnder(ctx context.Context, gs []*ghost) error {
	for _, g := range gs {
		if _, err := e.h.admin.Exec(ctx, "DROP ROLE "+pgx.Identifier{g.name}.Sanitize()); err != nil {
			return fmt.Errorf("drop %s under its session: %w", g.name, err)
		}
		e.users[g.name] = time.Now()
	}
	return nil
}

// ghostsAlive reports the ghost sessions still running.
func (e *caseEnv) ghostsAlive(ctx context.Context, gs []*ghost) []string {
	pids := make([]uint32, len(gs))
	for i, g := range gs {
		pids[i] = g.pid
	}
	var n int
	if err := e.h.admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND application_name = 'chaos-ghost'", pids).Scan(&n); err != nil {
		return []string{"count ghost sessions: " + err.Error()}
	}
	if n > 0 {
		return []string{fmt.Sprintf("%d ghost sessions still running", n)}
	}
	return nil
}
