package mysql

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"regexp"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
)

// queryTimeout bounds every read this package makes of a target.
const queryTimeout = 10 * time.Second

// Engine is one MySQL or MariaDB server leaseguard watches and revokes in.
// Its accounts are server-wide: the database of the URL, if any, does not
// scope them.
type Engine struct {
	db *sql.DB
	// settle bounds the wait for killed sessions to leave the processlist.
	settle time.Duration
}

var _ engine.Revoker = (*Engine)(nil)

// Open builds an Engine (connecting lazily) from a mysql:// URL.
func Open(url string, maxConns int) (*Engine, error) {
	cfg, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	// The driver logs what it also returns (a connection the server
	// closed, …) to the process's stderr: the callers report it instead.
	cfg.Logger = driver.Logger(log.New(io.Discard, "", 0))
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("connection settings: %w", err)
	}
	db := sql.OpenDB(conn)
	if maxConns <= 0 {
		maxConns = 4
	}
	db.SetMaxOpenConns(maxConns)
	db.SetConnMaxIdleTime(time.Minute)
	return &Engine{db: db, settle: 2 * time.Second}, nil
}

// Kind is engine.KindMySQL.
func (e *Engine) Kind() engine.Kind { return engine.KindMySQL }

// Close closes the connections.
func (e *Engine) Close() { _ = e.db.Close() }

// Ping checks the server answers.
func (e *Engine) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	return e.db.PingContext(ctx)
}

// identitySQL reads what identifies a server. MySQL 8 has server_uuid;
// MariaDB has none, so its identity is a digest of what sets one instance
// apart from another (host name, port, data directory, server id).
const identitySQL = `SHOW GLOBAL VARIABLES WHERE Variable_name IN ` +
	`('server_uuid', 'hostname', 'port', 'datadir', 'server_id', 'version_comment')`

// Identity identifies the server. SystemIdentifier is "mysql:<server_uuid>"
// or "mariadb:<digest>"; DatabaseOID is 0 (accounts are server-wide).
func (e *Engine) Identity(ctx context.Context) (schemas.TargetIdentity, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	return readIdentity(ctx, e.db)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func readIdentity(ctx context.Context, q querier) (schemas.TargetIdentity, error) {
	rows, err := q.QueryContext(ctx, identitySQL)
	if err != nil {
		return schemas.TargetIdentity{}, fmt.Errorf("read server identity: %w", err)
	}
	vars := map[string]string{}
	err = eachRow(rows, func(r *sql.Rows) error {
		var k, v string
		err := r.Scan(&k, &v)
		vars[k] = v
		return err
	})
	if err != nil {
		return schemas.TargetIdentity{}, fmt.Errorf("read server identity: %w", err)
	}
	if u := vars["server_uuid"]; u != "" {
		return schemas.TargetIdentity{SystemIdentifier: "mysql:" + u}, nil
	}
	sum := sha256.Sum256([]byte(vars["hostname"] + "\x00" + vars["port"] + "\x00" + vars["datadir"] + "\x00" + vars["server_id"]))
	return schemas.TargetIdentity{SystemIdentifier: "mariadb:" + hex.EncodeToString(sum[:16])}, nil
}

// eachRow calls fn for each row and closes rows.
func eachRow(rows *sql.Rows, fn func(*sql.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// accountsSQL reads every account of mysql.user. Super_priv is there on
// MySQL and MariaDB alike; account_locked is MySQL's, so the lock is not
// read here.
const accountsSQL = `SELECT User, Host, Super_priv = 'Y' FROM mysql.user ORDER BY User, Host`

// Accounts lists the accounts whose name managed matches, hosts together.
func (e *Engine) Accounts(ctx context.Context, managed *regexp.Regexp) ([]engine.Account, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := e.db.QueryContext(ctx, accountsSQL)
	if err != nil {
		return nil, fmt.Errorf("read mysql.user: %w", err)
	}
	byName := map[string]*engine.Account{}
	var out []*engine.Account
	err = eachRow(rows, func(r *sql.Rows) error {
		var user, host string
		var super bool
		if err := r.Scan(&user, &host, &super); err != nil {
			return err
		}
		if managed != nil && !managed.MatchString(user) {
			return nil
		}
		a := byName[user]
		if a == nil {
			a = &engine.Account{Name: user, CanLogin: true}
			byName[user] = a
			out = append(out, a)
		}
		a.Hosts = append(a.Hosts, host)
		a.Superuser = a.Superuser || super
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read mysql.user: %w", err)
	}
	res := make([]engine.Account, len(out))
	for i, a := range out {
		res[i] = *a
	}
	return res, nil
}

// sessionsSQL reads the processlist, but for the reader's own connection
// and the server's own threads (no user, or system user).
const sessionsSQL = `SELECT ID, USER, HOST, TIME FROM information_schema.PROCESSLIST ` +
	`WHERE ID <> CONNECTION_ID() AND USER <> '' AND USER <> 'system user' ORDER BY ID`

// Sessions lists the sessions of the server but the caller's own.
func (e *Engine) Sessions(ctx context.Context) ([]engine.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	now := time.Now()
	rows, err := e.db.QueryContext(ctx, sessionsSQL)
	if err != nil {
		return nil, fmt.Errorf("read processlist: %w", err)
	}
	var out []engine.Session
	err = eachRow(rows, func(r *sql.Rows) error {
		var s engine.Session
		var secs int64
		if err := r.Scan(&s.ID, &s.User, &s.Host, &secs); err != nil {
			return err
		}
		s.Host = hostOnly(s.Host)
		s.Started = now.Add(-time.Duration(secs) * time.Second).Truncate(time.Second)
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read processlist: %w", err)
	}
	return out, nil
}

// hostOnly strips the port the processlist appends ("10.0.0.5:51234",
// "[::1]:51234"); a socket's "localhost" has none.
func hostOnly(h string) string {
	if i := lastColon(h); i > 0 && (h[0] != '[' || h[i-1] == ']') {
		h = h[:i]
	}
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return h
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

// Expiry is engine.ErrNoExpiry: MySQL and MariaDB have no VALID UNTIL, and
// Vault's plugin sets no password expiry. The expiry comes from Vault.
func (e *Engine) Expiry(context.Context, []string) (map[string]time.Time, error) {
	return nil, engine.ErrNoExpiry
}

// Terminate kills every session of user but the caller's own. It has no
// caller in the program (drops and ghost terminations have their own
// steps), and refuses what no drop would touch whatever the managed
// pattern: no name, an invalid one, the server's own accounts and the
// caller's own account.
func (e *Engine) Terminate(ctx context.Context, user string) (int, error) {
	if err := checkTerminateName(user); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if rf, err := ownAccount(ctx, conn, user); err != nil || rf != nil {
		if rf != nil {
			return 0, rf
		}
		return 0, err
	}
	n, _, err := killSessions(ctx, conn, user)
	return n, err
}

// Verify checks mysql.user and the processlist for the name.
func (e *Engine) Verify(ctx context.Context, user string) (engine.Gone, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	return verify(ctx, e.db, user)
}

const verifySQL = `SELECT (SELECT count(*) FROM mysql.user WHERE User = ?), ` +
	`(SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID())`

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func verify(ctx context.Context, q rowQuerier, user string) (engine.Gone, error) {
	var hosts, sessions int
	if err := q.QueryRowContext(ctx, verifySQL, user, user).Scan(&hosts, &sessions); err != nil {
		return engine.Gone{}, fmt.Errorf("verify %q: %w", user, err)
	}
	return engine.Gone{Absent: hosts == 0, Sessions: sessions}, nil
}

// Existing reports which of the named users have an account on some host.
func (e *Engine) Existing(ctx context.Context, users []string) (map[string]bool, error) {
	out := make(map[string]bool, len(users))
	if len(users) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(users)), ", ")
	args := make([]any, len(users))
	for i, u := range users {
		args[i] = u
	}
	rows, err := e.db.QueryContext(ctx, `SELECT DISTINCT User FROM mysql.user WHERE User IN (`+marks+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read mysql.user: %w", err)
	}
	err = eachRow(rows, func(r *sql.Rows) error {
		var u string
		err := r.Scan(&u)
		out[u] = true
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read mysql.user: %w", err)
	}
	return out, nil
}
