package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/target/engine"
)

// The database observer's reads of a MySQL or MariaDB server. They need
// PROCESS (to see other accounts' connections) and SELECT on mysql.user.

// Observation is one read of the server by the observer: its sessions
// first, then its accounts, so that a session whose account is missing
// from Accounts had its account dropped (never one created in between).
type Observation struct {
	// ServerStart is when the server started, to the second: the same for
	// every read until it restarts. Connection ids are never reused while
	// a server runs, so (id, ServerStart) names one connection for good;
	// the processlist has no connection start (its TIME is the time in
	// the current state).
	ServerStart time.Time
	Sessions    []ObservedSession
	// Accounts are all of mysql.user, hosts of a name together.
	Accounts []engine.Account
}

// ObservedSession is one client connection of the processlist.
type ObservedSession struct {
	ID   int64
	User string
	// Addr is the client's address ("" for a local socket); Port its port
	// (0 for a socket).
	Addr string
	Port int32
	// DB is the connection's default database, Command what it does
	// ("Sleep", "Query", …).
	DB, Command string
}

// serverStartSQL: UNIX_TIMESTAMP() and Uptime are both taken from the
// statement's start, so their difference is the server's start, exactly,
// whenever it is read. MySQL 8 keeps the status in performance_schema.
var serverStartSQL = []string{
	`SELECT UNIX_TIMESTAMP() - CAST(VARIABLE_VALUE AS SIGNED) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'`,
	`SELECT UNIX_TIMESTAMP() - CAST(VARIABLE_VALUE AS SIGNED) FROM performance_schema.global_status WHERE VARIABLE_NAME = 'Uptime'`,
}

// observeSessionsSQL reads the client connections: not the reader's own,
// not the server's threads ('system user' replication and background
// threads, the event scheduler, daemons), not a connection still
// authenticating (it has no account yet).
const observeSessionsSQL = `SELECT ID, USER, coalesce(HOST, ''), coalesce(DB, ''), coalesce(COMMAND, '') ` +
	`FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() ` +
	`AND USER NOT IN ('', 'system user', 'event_scheduler', 'unauthenticated user') AND COMMAND <> 'Daemon' ORDER BY ID`

// Observe reads the server for the observer: its start, its client
// connections, then its accounts.
func (e *Engine) Observe(ctx context.Context) (Observation, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var o Observation
	var err error
	if o.ServerStart, err = e.serverStart(ctx); err != nil {
		return o, err
	}
	if o.Sessions, err = e.observeSessions(ctx); err != nil {
		return o, err
	}
	if o.Accounts, err = e.Accounts(ctx, nil); err != nil {
		return o, err
	}
	return o, nil
}

func (e *Engine) serverStart(ctx context.Context) (time.Time, error) {
	var first error
	for _, q := range serverStartSQL {
		var secs int64
		err := e.db.QueryRowContext(ctx, q).Scan(&secs)
		if err == nil {
			return time.Unix(secs, 0).UTC(), nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return time.Time{}, fmt.Errorf("read the server's uptime: %w", first)
}

func (e *Engine) observeSessions(ctx context.Context) ([]ObservedSession, error) {
	rows, err := e.db.QueryContext(ctx, observeSessionsSQL)
	if err != nil {
		return nil, fmt.Errorf("read processlist: %w", err)
	}
	var out []ObservedSession
	err = eachRow(rows, func(r *sql.Rows) error {
		var s ObservedSession
		var host string
		if err := r.Scan(&s.ID, &s.User, &host, &s.DB, &s.Command); err != nil {
			return err
		}
		s.Addr, s.Port = SplitHost(host)
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read processlist: %w", err)
	}
	return out, nil
}

// SplitHost splits the processlist's HOST column into the client's
// address and port. The server appends the port to every TCP client's
// address, IPv6 without brackets ("10.0.0.5:51234", "::1:51234",
// "app.example:51234" when it resolves names); a local socket is
// "localhost" with no port, and has no address (as a PostgreSQL socket
// has no client_addr). "[::1]:51234" and an address without a port are
// read too.
func SplitHost(h string) (string, int32) {
	if h == "" || h == "localhost" {
		return "", 0
	}
	if i := strings.LastIndexByte(h, ':'); i > 0 {
		if port, err := strconv.ParseUint(h[i+1:], 10, 16); err == nil {
			host := h[:i]
			if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil {
				return a.String(), int32(port)
			}
			if !strings.ContainsRune(host, ':') {
				return host, int32(port) // a host name
			}
		}
	}
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return a.String(), 0
	}
	return h, 0
}
