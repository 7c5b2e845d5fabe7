package target

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
)

// Postgres is a PostgreSQL target through the engine interface. Its drops
// are the revoker's own batched transactions (they need the pool, the
// advisory locks and the transaction id), not part of it.
type Postgres struct {
	Pool *pgxpool.Pool
}

var _ engine.Engine = Postgres{}

// Kind is engine.KindPostgres.
func (Postgres) Kind() engine.Kind { return engine.KindPostgres }

// Identity reads the cluster's system identifier and the database's oid.
func (p Postgres) Identity(ctx context.Context) (schemas.TargetIdentity, error) {
	return ReadIdentity(ctx, p.Pool)
}

// Accounts lists the roles whose name managed matches (nil: every role).
func (p Postgres) Accounts(ctx context.Context, managed *regexp.Regexp) ([]engine.Account, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := p.Pool.Query(ctx, `SELECT rolname::text, oid, rolvaliduntil, rolcanlogin, rolsuper FROM pg_roles ORDER BY rolname`)
	if err != nil {
		return nil, fmt.Errorf("read pg_roles: %w", err)
	}
	var out []engine.Account
	var a engine.Account
	var until pgtype.Timestamptz
	_, err = pgx.ForEachRow(rows, []any{&a.Name, &a.OID, &until, &a.CanLogin, &a.Superuser}, func() error {
		if managed != nil && !managed.MatchString(a.Name) {
			return nil
		}
		acc := a
		if until.Valid && until.InfinityModifier == pgtype.Finite {
			t := until.Time
			acc.ValidUntil = &t
		}
		out = append(out, acc)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pg_roles: %w", err)
	}
	return out, nil
}

// Sessions lists the sessions that have a user, but the caller's own. A
// session of a dropped role has User "".
func (p Postgres) Sessions(ctx context.Context) ([]engine.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := p.Pool.Query(ctx, `SELECT pid::int8, coalesce(usename::text, ''), coalesce(host(client_addr), ''), backend_start `+
		`FROM pg_stat_activity WHERE usesysid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY pid`)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	var out []engine.Session
	var s engine.Session
	_, err = pgx.ForEachRow(rows, []any{&s.ID, &s.User, &s.Host, &s.Started}, func() error {
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	return out, nil
}

// Expiry reads rolvaliduntil; roles without one (NULL, infinity) or absent
// are missing from the result.
func (p Postgres) Expiry(ctx context.Context, users []string) (map[string]time.Time, error) {
	roles, err := ReadRoles(ctx, p.Pool, users)
	if err != nil {
		return nil, fmt.Errorf("read pg_roles: %w", err)
	}
	out := make(map[string]time.Time, len(roles))
	for n, r := range roles {
		if r.ValidUntil != nil {
			out[n] = *r.ValidUntil
		}
	}
	return out, nil
}

// Terminate ends every session of the role by name.
func (p Postgres) Terminate(ctx context.Context, user string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var n int
	err := p.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, user).Scan(&n)
	return n, err
}

// Verify checks pg_roles and pg_stat_activity for the name. A session of a
// role already dropped has no name (usename NULL): the revoker finds those
// by the role's former oid, which only it knows.
func (p Postgres) Verify(ctx context.Context, user string) (engine.Gone, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var g engine.Gone
	err := p.Pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), `+
		`(SELECT count(*) FROM pg_stat_activity WHERE usename = $1)::int`, user).Scan(&g.Absent, &g.Sessions)
	if err != nil {
		return g, fmt.Errorf("verify %q: %w", user, err)
	}
	return g, nil
}

// Ping checks the target answers.
func (p Postgres) Ping(ctx context.Context) error { return p.Pool.Ping(ctx) }

// Close does nothing: the pool is the Set's.
func (Postgres) Close() {}
