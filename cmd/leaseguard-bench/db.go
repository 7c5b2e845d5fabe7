package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// connect opens the admin pool and registers the final sweep.
func (b *Bench) connect(ctx context.Context) error {
	cfg, err := pgxpool.ParseConfig(b.opt.dbURL)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.RuntimeParams["application_name"] = "leaseguard-bench"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redactURL(b.opt.dbURL), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return fmt.Errorf("PostgreSQL at %s is unreachable (make bench starts it): %w", redactURL(b.opt.dbURL), err)
	}
	b.admin = pool
	b.undo.add("close admin pool", func(context.Context) error { pool.Close(); return nil })
	b.undo.add("final sweep", func(ctx context.Context) error { b.sweep(ctx); return nil })
	return nil
}

// schemaName names a schema of this run.
func (b *Bench) schemaName(what string) string { return "lgbench_" + b.sfx + "_" + what }

// rolePrefix starts every role this run creates: Vault's default username
// template with the display name "lb<suffix>".
func (b *Bench) rolePrefix() string { return "v-" + b.displayName() + "-" }

func (b *Bench) displayName() string { return "lb" + b.sfx }

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomString(n int) string {
	var sb strings.Builder
	for range n {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(base62))))
		sb.WriteByte(base62[k.Int64()])
	}
	return sb.String()
}

// userName follows Vault's default template,
// v-<display 8>-<role 8>-<20 random>-<unix time>, cut to 63 bytes.
func (b *Bench) userName(role string, at time.Time) string {
	u := fmt.Sprintf("v-%s-%s-%s-%d", cut(b.displayName(), 8), cut(role, 8), randomString(20), at.Unix())
	return cut(u, 63)
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// newPassword is a throwaway password for the users of one run; it is
// never printed.
func newPassword() string {
	var p [12]byte
	_, _ = rand.Read(p[:])
	return "A1a-" + hex.EncodeToString(p[:])
}

// pgTime formats a time for VALID UNTIL as Vault's plugin renders
// {{expiration}}.
func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999-07") }

// appSchema creates a schema with tables, like the application schema a
// Vault role grants on, and returns the grant statements of a creation
// statement ({{name}} is the user).
func (b *Bench) appSchema(ctx context.Context, what string, tables int) ([]string, error) {
	return b.appSchemaIn(ctx, b.admin, what, tables)
}

// appSchemaIn is appSchema in the database of db.
func (b *Bench) appSchemaIn(ctx context.Context, db *pgxpool.Pool, what string, tables int) ([]string, error) {
	s := b.schemaName(what)
	stmts := []string{"CREATE SCHEMA " + ident(s)}
	var names []string
	for i := 1; i <= tables; i++ {
		t := ident(s, fmt.Sprintf("t%d", i))
		stmts = append(stmts, "CREATE TABLE "+t+" (id bigint PRIMARY KEY, payload text)")
		names = append(names, t)
	}
	if _, err := db.Exec(ctx, strings.Join(stmts, "; ")); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", s, err)
	}
	return []string{
		"GRANT USAGE ON SCHEMA " + ident(s) + " TO {{name}}",
		"GRANT SELECT ON " + strings.Join(names, ", ") + " TO {{name}}",
	}, nil
}

// Grant modes: how a user gets its privileges on the application schema.
const (
	// grantDirect: each user is granted on the objects, as Vault's
	// documented creation statements do. Every table's ACL gains an entry
	// per user; PostgreSQL keeps an ACL inside its catalog row (8 KB, no
	// TOAST), so a few thousand users on one table fail with "row is too
	// big".
	grantDirect = "direct"
	// grantGroup: the privileges are granted once to a group role and each
	// user is made its member (GRANT group TO "{{name}}"), as fleets of
	// that size do; the ACLs keep one entry whatever the number of users.
	grantGroup = "group"
)

// groupRoleName names the group role of an application schema of this
// run. It starts like the run's schemas, not like its users, so that
// nothing mistakes it for a Vault user; the sweep drops it.
func (b *Bench) groupRoleName(what string) string { return b.schemaName(what) + "_ro" }

// userGrants returns the creation statements that give a user ({{name}})
// the privileges of grants, the application schema's statements: those
// statements themselves (grantDirect), or, for grantGroup, a membership in
// a group role created here and granted them once.
func (b *Bench) userGrants(ctx context.Context, db *pgxpool.Pool, what, mode string, grants []string) ([]string, error) {
	if mode != grantGroup {
		return grants, nil
	}
	group := ident(b.groupRoleName(what))
	stmts := []string{"CREATE ROLE " + group + " NOLOGIN"}
	for _, g := range grants {
		stmts = append(stmts, strings.ReplaceAll(g, "{{name}}", group))
	}
	if _, err := db.Exec(ctx, strings.Join(stmts, "; ")); err != nil {
		return nil, fmt.Errorf("create group role %s: %w", group, err)
	}
	return []string{"GRANT " + group + " TO {{name}}"}, nil
}

// dropGroup drops the group role of an application schema, if any, once
// the schema is gone (its tables took the group's privileges with them;
// its memberships go with the role).
func (b *Bench) dropGroup(ctx context.Context, what string) error {
	_, err := b.admin.Exec(ctx, "DROP ROLE IF EXISTS "+ident(b.groupRoleName(what)))
	return err
}

// createUsers creates users as Vault's PostgreSQL plugin does: CREATE ROLE
// … LOGIN PASSWORD … VALID UNTIL, then the grants. The roles are created a
// hundred per transaction on two connections (the server hashes each
// password); the grants follow on one connection, each statement naming a
// hundred users (concurrent GRANTs on one table fail with "tuple
// concurrently updated"), which leaves the same ACLs as one GRANT per user.
func (b *Bench) createUsers(ctx context.Context, names []string, password string, validUntil func(i int) time.Time, grants []string) error {
	const chunk = 100
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for lo := 0; lo < len(names); lo += chunk {
		hi := min(lo+chunk, len(names))
		g.Go(func() error {
			var sb strings.Builder
			sb.WriteString("BEGIN")
			for i := lo; i < hi; i++ {
				fmt.Fprintf(&sb, "; CREATE ROLE %s WITH LOGIN PASSWORD %s VALID UNTIL '%s'", ident(names[i]), quoteLiteral(password), pgTime(validUntil(i)))
			}
			sb.WriteString("; COMMIT")
			if _, err := b.admin.Exec(gctx, sb.String()); err != nil {
				return fmt.Errorf("create users: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for lo := 0; lo < len(names); lo += chunk {
		ids := make([]string, 0, chunk)
		for _, n := range names[lo:min(lo+chunk, len(names))] {
			ids = append(ids, ident(n))
		}
		stmts := make([]string, len(grants))
		for i, gr := range grants {
			stmts[i] = strings.ReplaceAll(gr, "{{name}}", strings.Join(ids, ", "))
		}
		if _, err := b.admin.Exec(ctx, strings.Join(stmts, "; ")); err != nil {
			return fmt.Errorf("grant: %w", err)
		}
	}
	return nil
}

// sessions are live client connections of some users.
type sessions struct {
	mu    sync.Mutex
	conns []*pgx.Conn
}

// openSessions logs in as each user and keeps the connection open.
func (b *Bench) openSessions(ctx context.Context, users []string, password string) (*sessions, error) {
	s := &sessions{}
	for _, u := range users {
		cfg, err := pgx.ParseConfig(b.opt.dbURL)
		if err != nil {
			return s, err
		}
		cfg.User, cfg.Password = u, password
		cfg.RuntimeParams["application_name"] = "leaseguard-bench-client"
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("log in as a test user: %w", err)
		}
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			_ = c.Close(ctx)
			s.close()
			return nil, err
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
	}
	return s, nil
}

func (s *sessions) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.Close(ctx)
		cancel()
	}
	s.conns = nil
}

// dropSchema drops a schema of this run and all it holds.
func (b *Bench) dropSchema(ctx context.Context, name string) error {
	_, err := b.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+ident(name)+" CASCADE")
	return err
}

// rolesLeft counts the names still in pg_roles.
func (b *Bench) rolesLeft(ctx context.Context, names []string) (int, error) {
	var n int
	err := b.admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)", names).Scan(&n)
	return n, err
}

// sweep removes whatever this run created in PostgreSQL and is still
// there: sessions of its roles, its schemas, its roles. It is safe to run
// any time and more than once.
func (b *Bench) sweep(ctx context.Context) {
	if b.admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	prefix := b.rolePrefix()
	var errs []error
	if _, err := b.admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE starts_with(usename::text, $1) AND pid <> pg_backend_pid()`, prefix); err != nil {
		errs = append(errs, err)
	}
	schemas, err := collect(ctx, b.admin, "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1) ORDER BY 1", "lgbench_"+b.sfx+"_")
	errs = append(errs, err)
	for _, s := range schemas {
		errs = append(errs, b.dropSchema(ctx, s))
	}
	// Users, then the group roles (named like the schemas) they are
	// members of.
	roles, err := collect(ctx, b.admin, "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname::text, $1) OR starts_with(rolname::text, $2) "+
		"ORDER BY starts_with(rolname::text, $2), 1", prefix, "lgbench_"+b.sfx+"_")
	errs = append(errs, err)
	for lo := 0; lo < len(roles); lo += 200 {
		ids := make([]string, 0, 200)
		for _, r := range roles[lo:min(lo+200, len(roles))] {
			ids = append(ids, ident(r))
		}
		list := strings.Join(ids, ", ")
		if _, err := b.admin.Exec(ctx, "DROP OWNED BY "+list+"; DROP ROLE IF EXISTS "+list); err != nil {
			errs = append(errs, fmt.Errorf("drop roles: %w", err))
		}
	}
	if len(schemas) > 0 || len(roles) > 0 {
		b.logf("cleanup: dropped %d schema(s) and %d role(s) of this run", len(schemas), len(roles))
	}
	if err := errors.Join(errs...); err != nil {
		b.logf("cleanup: %v", err)
	}
}

func collect(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) ([]string, error) {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// appURL is the database URL with an application_name of ours, so that
// the CPU of our PostgreSQL backends can be told from other clients'.
func (b *Bench) appURL(name string) string {
	u := b.opt.dbURL
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		// Appended to the raw query, which is kept as written (re-encoding
		// it would turn the spaces of an options parameter into '+').
		if pu, err := url.Parse(u); err == nil {
			if pu.RawQuery != "" {
				pu.RawQuery += "&"
			}
			pu.RawQuery += "application_name=" + url.QueryEscape(name)
			return pu.String()
		}
	}
	return u + " application_name=" + name
}

// ourBackends returns the pids of PostgreSQL backends whose
// application_name starts with "leaseguard": this harness's pools, the
// target pools it opens, and a leaseguard child's.
func (b *Bench) ourBackends() map[int]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := b.admin.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE starts_with(application_name, 'leaseguard')")
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := make(map[int]bool, len(pids))
	for _, p := range pids {
		out[int(p)] = true
	}
	return out
}

// redactURL shows host and database of a URL, never its password.
func redactURL(u string) string {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return "(unparseable url)"
	}
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

// churnedCatalogs are the catalogs every run rewrites: roles and their
// memberships and dependencies (shared by all databases), and the rows of
// tables and schemas whose ACLs gain and lose an entry per user.
const churnedCatalogs = "pg_catalog.pg_authid, pg_catalog.pg_auth_members, pg_catalog.pg_shdepend, " +
	"pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_namespace, pg_catalog.pg_depend, pg_catalog.pg_type"

// vacuumCatalogs vacuums, in pool's database, the catalogs the runs churn,
// before each run of the scenarios that create and drop thousands of
// users. On a server without autovacuum (as the test server here) their
// dead rows pile up run after run and every catalog scan slows (Vault's
// revocation fell from 17 to 7 users/s over three runs); this keeps runs
// comparable, as autovacuum would in production. Catalogs the harness's
// role does not own are skipped by PostgreSQL with a warning; a failure is
// logged, not fatal.
func (b *Bench) vacuumCatalogs(ctx context.Context, pool *pgxpool.Pool, scenario string) {
	start := time.Now()
	if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+churnedCatalogs); err != nil {
		b.logf("%s: vacuum of the churned catalogs failed (figures may drift run to run): %v", scenario, err)
		return
	}
	b.logf("%s: churned catalogs vacuumed in %s", scenario, time.Since(start).Round(time.Millisecond))
}
