package observer

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/target/engine"
)

// Targets resolves target databases (target.Set fits). Names and Pool are
// the PostgreSQL targets; a set that also has AllNames and Engine
// (mysqlTargets) has its MySQL and MariaDB targets observed too.
type Targets interface {
	Names() []string
	Pool(name string) (*pgxpool.Pool, bool)
}

// reader returns how to read the named target and its engine: PostgreSQL
// through its pool, MySQL and MariaDB through their engine (mysql.go).
func (o *Observer) reader(db string) (func(context.Context) ([]observed.DBSession, []observed.DBRole, error), engine.Kind, bool) {
	if pool, ok := o.Targets.Pool(db); ok {
		return func(ctx context.Context) ([]observed.DBSession, []observed.DBRole, error) {
				return read(ctx, pool, o.readHint(db))
			},
			engine.KindPostgres, true
	}
	if m, ok := o.mysqlTarget(db); ok {
		return func(ctx context.Context) ([]observed.DBSession, []observed.DBRole, error) { return readMySQL(ctx, m) },
			engine.KindMySQL, true
	}
	return nil, "", false
}

// The observer's reads. Its role in the target needs pg_read_all_stats to
// see other roles' sessions (without it backend_start and client_addr are
// NULL and such sessions are not tracked), and pg_signal_backend (or
// superuser) for the ghost-session rule to terminate.
const (
	// sessionsSQL reads every session that has a user, except the
	// observer's own, in the target's database (and those in none, such
	// as a walsender): a session in another database of the server is
	// that database's target's. usename is NULL for a ghost.
	sessionsSQL = `SELECT pid, backend_start, usesysid::int8, coalesce(usename::text, ''),
		coalesce(host(client_addr), ''), coalesce(client_port, 0), coalesce(application_name, ''),
		coalesce(datname::text, ''), coalesce(backend_type, '')
		FROM pg_stat_activity WHERE usesysid IS NOT NULL AND pid <> pg_backend_pid()
		  AND (datname = current_database() OR datname IS NULL)`
	// rolesSQL reads all of pg_roles; the managed pattern is applied here
	// (Go's regular expressions, the same as the revoker's guard).
	rolesSQL = `SELECT oid::int8, rolname::text, rolvaliduntil, rolcanlogin, rolsuper FROM pg_roles`
)

// read takes a snapshot of a target: sessions first, then roles (see
// Snapshot for why the order matters), in lists made for hint.
func read(ctx context.Context, pool *pgxpool.Pool, hint readHint) ([]observed.DBSession, []observed.DBRole, error) {
	rows, err := pool.Query(ctx, sessionsSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	sessions := make([]observed.DBSession, 0, hint.sessions+hint.sessions/32+8)
	var s observed.DBSession
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
	roles := newRoleList(hint.roles)
	var name string
	var until pgtype.Timestamptz
	var login, super bool
	_, err = pgx.ForEachRow(rows, []any{&oid, &name, &until, &login, &super}, func() error {
		roles.add(uint32(oid), name, until, login, super)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_roles: %w", err)
	}
	return sessions, roles.roles, nil
}

// readHint is how many roles and sessions the last pass of a target read:
// the lists of the next are made for as many, not grown a row at a time.
type readHint struct{ roles, sessions int }

// roleList collects the roles read from pg_roles, their validities in
// blocks rather than one object each.
type roleList struct {
	roles []observed.DBRole
	times []time.Time
}

// newRoleList is a list made for about n roles (a few more may come).
func newRoleList(n int) roleList {
	n += n/32 + 8
	return roleList{roles: make([]observed.DBRole, 0, n), times: make([]time.Time, 0, n)}
}

func (l *roleList) add(oid uint32, name string, until pgtype.Timestamptz, login, super bool) {
	r := observed.DBRole{OID: oid, Name: name, CanLogin: login, Superuser: super}
	if until.Valid && until.InfinityModifier == pgtype.Finite {
		if len(l.times) == cap(l.times) {
			// A new block: the roles listed point into the full one.
			l.times = make([]time.Time, 0, max(64, cap(l.times)))
		}
		l.times = append(l.times, until.Time.UTC())
		r.ValidUntil = &l.times[len(l.times)-1]
	}
	l.roles = append(l.roles, r)
}
