package observer

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/store"
)

// Targets resolves target databases (target.Set fits).
type Targets interface {
	Names() []string
	Pool(name string) (*pgxpool.Pool, bool)
}

// The observer's reads. Its role in the target needs pg_read_all_stats to
// see other roles' sessions (without it backend_start and client_addr are
// NULL and such sessions are not tracked), and pg_signal_backend (or
// superuser) for the ghost-session rule to terminate.
const (
	// sessionsSQL reads every session that has a user, except the
	// observer's own. usename is NULL for a ghost.
	sessionsSQL = `SELECT pid, backend_start, usesysid::int8, coalesce(usename::text, ''),
		coalesce(host(client_addr), ''), coalesce(client_port, 0), coalesce(application_name, ''),
		coalesce(datname::text, ''), coalesce(backend_type, '')
		FROM pg_stat_activity WHERE usesysid IS NOT NULL AND pid <> pg_backend_pid()`
	// rolesSQL reads all of pg_roles; the managed pattern is applied here
	// (Go's regular expressions, the same as the revoker's guard).
	rolesSQL = `SELECT oid::int8, rolname::text, rolvaliduntil, rolcanlogin, rolsuper FROM pg_roles`
	// terminateSQL ends ghost sessions, each only if its pid still has the
	// observed backend_start and usesysid, no role has that oid, and it is
	// a client backend: a reused pid, or a role re-created with the oid, is
	// never touched.
	terminateSQL = `SELECT a.pid, pg_terminate_backend(a.pid)
		FROM pg_stat_activity AS a
		JOIN unnest($1::int4[], $2::timestamptz[], $3::int8[]) AS g(pid, backend_start, oid)
		  ON a.pid = g.pid AND a.backend_start = g.backend_start AND a.usesysid::int8 = g.oid
		WHERE a.backend_type = 'client backend'
		  AND NOT EXISTS (SELECT 1 FROM pg_roles AS r WHERE r.oid = a.usesysid)`
)

// read takes a snapshot of a target: sessions first, then roles (see
// store.Snapshot for why the order matters).
func read(ctx context.Context, pool *pgxpool.Pool) ([]store.DBSession, []store.DBRole, error) {
	rows, err := pool.Query(ctx, sessionsSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	var sessions []store.DBSession
	var s store.DBSession
	var start pgtype.Timestamptz
	var oid int64
	_, err = pgx.ForEachRow(rows, []any{&s.PID, &start, &oid, &s.UserName, &s.ClientAddr, &s.ClientPort,
		&s.ApplicationName, &s.Datname, &s.BackendType}, func() error {
		c := s
		c.UserOID = uint32(oid)
		if start.Valid {
			c.BackendStart = start.Time.UTC()
		} else {
			c.BackendStart = time.Time{}
		}
		sessions = append(sessions, c)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	rows, err = pool.Query(ctx, rolesSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_roles: %w", err)
	}
	var roles []store.DBRole
	var r store.DBRole
	var until pgtype.Timestamptz
	_, err = pgx.ForEachRow(rows, []any{&oid, &r.Name, &until, &r.CanLogin, &r.Superuser}, func() error {
		c := r
		c.OID = uint32(oid)
		c.ValidUntil = nil
		if until.Valid && until.InfinityModifier == pgtype.Finite {
			t := until.Time.UTC()
			c.ValidUntil = &t
		}
		roles = append(roles, c)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_roles: %w", err)
	}
	return sessions, roles, nil
}

// Terminator ends ghost sessions in the targets (the ghost-session rule's
// detectors.GhostTerminator).
type Terminator struct {
	Targets Targets
}

var _ detectors.GhostTerminator = Terminator{}

// TerminateGhosts terminates each session only if it is still the same
// ghost client backend (see terminateSQL); it returns the pids terminated.
func (t Terminator) TerminateGhosts(ctx context.Context, database string, sessions []store.DBSession) (map[int32]bool, error) {
	pool, ok := t.Targets.Pool(database)
	if !ok {
		return nil, fmt.Errorf("unknown target %q", database)
	}
	pids, starts, oids := make([]int32, len(sessions)), make([]time.Time, len(sessions)), make([]int64, len(sessions))
	for i, s := range sessions {
		pids[i], starts[i], oids[i] = s.PID, s.BackendStart, int64(s.UserOID)
	}
	rows, err := pool.Query(ctx, terminateSQL, pids, starts, oids)
	if err != nil {
		return nil, fmt.Errorf("terminate ghost sessions in %s: %w", database, err)
	}
	out := map[int32]bool{}
	var pid int32
	var done bool
	_, err = pgx.ForEachRow(rows, []any{&pid, &done}, func() error {
		if done {
			out[pid] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("terminate ghost sessions in %s: %w", database, err)
	}
	return out, nil
}
