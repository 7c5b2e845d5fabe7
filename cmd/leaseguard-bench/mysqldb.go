package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/leaseguard/leaseguard/target/mysql"
)

// defaultMySQLURL is the MariaDB of the mysql scenarios when neither
// -mysql-url nor TEST_MYSQL_URL says otherwise: the local server, root
// without a password from loopback.
const defaultMySQLURL = "mysql://root@127.0.0.1:3306/"

// mysqlQueryTimeout bounds each statement the harness sends to MariaDB.
const mysqlQueryTimeout = time.Minute

// mariadb is the harness's administrative connection to the MariaDB of
// the mysql scenarios. Accounts are server-wide: every name this run makes
// starts with rolePrefix, and sweep drops what is left of them.
type mariadb struct {
	url string
	db  *sql.DB
	b   *Bench
}

// openMariaDB connects as the URL's (administrative) user and registers
// the sweep of this run's accounts and database with the cleanups, so
// that they go also after a failure or an interrupt.
func (b *Bench) openMariaDB(ctx context.Context) (*mariadb, error) {
	db, err := mysqlDB(b.opt.mysqlURL, "", "")
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("MariaDB at %s is unreachable: %w", redactMySQL(b.opt.mysqlURL), err)
	}
	db.SetMaxOpenConns(4)
	m := &mariadb{url: b.opt.mysqlURL, db: db, b: b}
	b.undo.add("close mariadb", func(context.Context) error { return m.db.Close() })
	b.undo.add("mariadb sweep", func(ctx context.Context) error { m.sweep(ctx); return nil })
	return m, nil
}

// mysqlDB opens a pool on a mysql:// URL (target/mysql's parsing: its
// timeouts, interpolated arguments), as user with password if user is set.
func mysqlDB(url, user, password string) (*sql.DB, error) {
	cfg, err := mysql.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("-mysql-url: %w", err)
	}
	if user != "" {
		cfg.User, cfg.Passwd = user, password
	}
	// The driver logs to stderr what it also returns (a session the
	// revoker killed, …).
	cfg.Logger = driver.Logger(log.New(io.Discard, "", 0))
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

// redactMySQL shows a mysql:// URL's address, never its password.
func redactMySQL(url string) string {
	cfg, err := mysql.ParseURL(url)
	if err != nil {
		return "(unparseable url)"
	}
	return cfg.Addr
}

// exec runs one statement with its own deadline.
func (m *mariadb) exec(ctx context.Context, query string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, mysqlQueryTimeout)
	defer cancel()
	_, err := m.db.ExecContext(ctx, query, args...)
	return err
}

// mysqlIdent quotes a database or table name with backticks.
func mysqlIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// appDatabase creates a database with tables, like the one a Vault role
// grants SELECT on, and returns its name; sweep drops it.
func (m *mariadb) appDatabase(ctx context.Context, what string, tables int) (string, error) {
	name := m.b.schemaName(what)
	if err := m.exec(ctx, "CREATE DATABASE "+mysqlIdent(name)); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	for i := 1; i <= tables; i++ {
		if err := m.exec(ctx, fmt.Sprintf("CREATE TABLE %s.t%d (id bigint PRIMARY KEY, payload text)", mysqlIdent(name), i)); err != nil {
			return "", fmt.Errorf("create table in %s: %w", name, err)
		}
	}
	return name, nil
}

// userName follows the mysql plugin's default template: v-<display
// 10>-<role 10>-<random>, cut to 32 characters.
func (b *Bench) mysqlUserName(role string) string {
	return cut(fmt.Sprintf("v-%s-%s-%s", cut(b.displayName(), 10), cut(role, 10), randomString(20)), 32)
}

// createUsers creates the users as Vault's mysql-database-plugin does with
// the usual creation statements, CREATE USER '{{name}}'@'%' IDENTIFIED BY
// '{{password}}'; GRANT SELECT ON db.* TO '{{name}}'@'%'. Each statement
// names up to a hundred users (two connections at a time), which leaves
// the same accounts and grants as one statement per user.
func (m *mariadb) createUsers(ctx context.Context, names []string, password, db string) error {
	const chunk = 100
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for lo := 0; lo < len(names); lo += chunk {
		part := names[lo:min(lo+chunk, len(names))]
		g.Go(func() error {
			accounts := make([]string, len(part))
			creates := make([]string, len(part))
			args := make([]any, 0, 2*len(part))
			for i, u := range part {
				accounts[i], creates[i] = "?@'%'", "?@'%' IDENTIFIED BY ?"
				args = append(args, u, password)
			}
			if err := m.exec(gctx, "CREATE USER "+strings.Join(creates, ", "), args...); err != nil {
				return fmt.Errorf("create users: %w", err)
			}
			grantArgs := make([]any, len(part))
			for i, u := range part {
				grantArgs[i] = u
			}
			if err := m.exec(gctx, "GRANT SELECT ON "+mysqlIdent(db)+".* TO "+strings.Join(accounts, ", "), grantArgs...); err != nil {
				return fmt.Errorf("grant: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// mysqlSessions are live client connections of some users.
type mysqlSessions struct {
	conns []*sql.DB
}

// openSessions logs in as each user, runs a query and keeps the
// connection open.
func (m *mariadb) openSessions(ctx context.Context, users []string, password, db string) (*mysqlSessions, error) {
	s := &mysqlSessions{}
	for _, u := range users {
		c, err := mysqlDB(m.url, u, password)
		if err != nil {
			s.close()
			return nil, err
		}
		c.SetMaxOpenConns(1)
		s.conns = append(s.conns, c)
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = c.ExecContext(qctx, "SELECT count(*) FROM "+mysqlIdent(db)+".t1")
		cancel()
		if err != nil {
			s.close()
			return nil, fmt.Errorf("log in as a test user: %w", err)
		}
	}
	return s, nil
}

func (s *mysqlSessions) close() {
	if s == nil {
		return
	}
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

// usersLeft counts the names still in mysql.user (any host).
func (m *mariadb) usersLeft(ctx context.Context, names []string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, mysqlQueryTimeout)
	defer cancel()
	if len(names) == 0 {
		return 0, nil
	}
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	var n int
	err := m.db.QueryRowContext(ctx, "SELECT count(DISTINCT User) FROM mysql.user WHERE User IN (?"+strings.Repeat(", ?", len(names)-1)+")", args...).Scan(&n)
	return n, err
}

// sweep removes whatever this run made in MariaDB and is still there:
// sessions of its accounts, the accounts (every host), its databases. It
// is safe to run any time and more than once.
func (m *mariadb) sweep(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	prefix := m.b.rolePrefix()
	like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
	ids, err := m.strings(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER LIKE ?", like)
	errs = append(errs, err)
	for _, id := range ids {
		// A session may end before its KILL: nothing to do then.
		_ = m.exec(ctx, "KILL CONNECTION "+id)
	}
	accounts, err := m.strings(ctx, "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user WHERE User LIKE ?", like)
	errs = append(errs, err)
	for lo := 0; lo < len(accounts); lo += 200 {
		// The accounts come quoted by the server itself (QUOTE).
		errs = append(errs, m.exec(ctx, "DROP USER IF EXISTS "+strings.Join(accounts[lo:min(lo+200, len(accounts))], ", ")))
	}
	dbs, err := m.strings(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?",
		strings.ReplaceAll(m.b.schemaName(""), "_", `\_`)+"%")
	errs = append(errs, err)
	for _, d := range dbs {
		errs = append(errs, m.exec(ctx, "DROP DATABASE IF EXISTS "+mysqlIdent(d)))
	}
	if len(accounts) > 0 || len(dbs) > 0 {
		m.b.logf("cleanup: dropped %d MariaDB account(s) and %d database(s) of this run", len(accounts), len(dbs))
	}
	if err := errors.Join(errs...); err != nil {
		m.b.logf("cleanup: mariadb: %v", err)
	}
}

// strings runs a query of one text column.
func (m *mariadb) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := m.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
