package dbpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of Settings.
const (
	DefaultConnectTimeout    = 5 * time.Second
	DefaultTCPUserTimeout    = 10 * time.Second
	DefaultHealthCheckPeriod = 10 * time.Second
)

// Settings are the protections of a pool. A zero duration leaves that
// protection at its default (see each field); a server-side timeout set in
// the connection URL itself wins over the one here.
type Settings struct {
	// ConnectTimeout bounds one connection attempt, TLS and authentication
	// included (default 5s; a connect_timeout in the URL wins).
	ConnectTimeout time.Duration
	// StatementTimeout, LockTimeout and IdleInTransactionTimeout are set
	// as the connection's statement_timeout, lock_timeout and
	// idle_in_transaction_session_timeout. Zero leaves the server's
	// setting. The last one ends, on the server, a session whose client
	// vanished in the middle of a transaction, and with it the locks it
	// held.
	StatementTimeout         time.Duration
	LockTimeout              time.Duration
	IdleInTransactionTimeout time.Duration
	// TCPUserTimeout: a connection whose sent data stays unacknowledged
	// this long is closed by the kernel (Linux TCP_USER_TIMEOUT; default
	// 10s). Keepalive probes start after a third of it idle, every third of
	// it, so an idle connection to a vanished host dies in about that time
	// too.
	TCPUserTimeout time.Duration
	// PingTimeout bounds the check of a connection that sat idle in the
	// pool before it is handed out (default: ConnectTimeout): a connection
	// that went silent is replaced instead of taking the caller's whole
	// deadline.
	PingTimeout time.Duration
	// HealthCheckPeriod is how often the pool drops idle connections past
	// their lifetime and refills its minimum (default 10s).
	HealthCheckPeriod time.Duration
	// CallTimeout is the deadline given to an acquire, query, batch or
	// copy whose context has none (0: none is given). Callers give their
	// own; this catches those that do not (see WithoutDefaultDeadline).
	CallTimeout time.Duration
	// MaxCallTime caps how long a query, batch or copy waits for the
	// server, whatever deadline its context carries (0: no cap). For a
	// connection whose every statement the server ends at its
	// statement_timeout, a call that outlives that bound is waiting on a
	// silent network, and a caller's longer deadline (one for a whole
	// transaction of many statements) must not hold it.
	MaxCallTime time.Duration
}

// WithDefaults fills unset fields.
func (s Settings) WithDefaults() Settings {
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = DefaultConnectTimeout
	}
	if s.TCPUserTimeout == 0 {
		s.TCPUserTimeout = DefaultTCPUserTimeout
	}
	if s.PingTimeout == 0 {
		s.PingTimeout = s.ConnectTimeout
	}
	if s.HealthCheckPeriod == 0 {
		s.HealthCheckPeriod = DefaultHealthCheckPeriod
	}
	return s
}

// Validate checks the settings.
func (s Settings) Validate() error {
	for _, d := range []time.Duration{s.ConnectTimeout, s.StatementTimeout, s.LockTimeout, s.IdleInTransactionTimeout,
		s.TCPUserTimeout, s.PingTimeout, s.HealthCheckPeriod, s.CallTimeout, s.MaxCallTime} {
		if d < 0 {
			return errors.New("database connection: timeouts must not be negative")
		}
	}
	for _, d := range []time.Duration{s.StatementTimeout, s.LockTimeout, s.IdleInTransactionTimeout} {
		if d > 0 && d < time.Millisecond {
			return fmt.Errorf("database connection: server-side timeout %s is below the server's unit of 1ms", d)
		}
	}
	return nil
}

// Apply sets the settings (after WithDefaults) on a pool configuration made
// by pgxpool.ParseConfig.
func Apply(pc *pgxpool.Config, s Settings) {
	s = s.WithDefaults()
	cc := pc.ConnConfig
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = s.ConnectTimeout
	}
	setParam(cc.RuntimeParams, "statement_timeout", s.StatementTimeout)
	setParam(cc.RuntimeParams, "lock_timeout", s.LockTimeout)
	setParam(cc.RuntimeParams, "idle_in_transaction_session_timeout", s.IdleInTransactionTimeout)
	cc.DialFunc = Dialer(cc.ConnectTimeout, s.TCPUserTimeout)
	pc.PingTimeout = s.PingTimeout
	pc.HealthCheckPeriod = s.HealthCheckPeriod
	if (s.CallTimeout > 0 || s.MaxCallTime > 0) && cc.Tracer == nil {
		cc.Tracer = defaultDeadline{d: s.CallTimeout, max: s.MaxCallTime}
	}
}

// setParam sets a server-side timeout unless the URL set it (or d is 0).
func setParam(params map[string]string, name string, d time.Duration) {
	if d <= 0 {
		return
	}
	if _, set := params[name]; set {
		return
	}
	params[name] = fmt.Sprintf("%dms", d.Milliseconds())
}

// Dialer returns a dial function for pgx: TCP connections get keepalive
// probes after userTimeout/3 idle, every userTimeout/3, and (on Linux) the
// TCP user timeout; a unix socket is dialled as it is. connectTimeout
// bounds the dial itself. Every connection keeps the deadlines set on it
// within closeDeadline (see boundedConn).
func Dialer(connectTimeout, userTimeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	probe := max(userTimeout/3, time.Second)
	d := &net.Dialer{
		Timeout: connectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: probe, Interval: probe, Count: 3,
		},
		Control: func(network, _ string, c rawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil
			}
			return setUserTimeout(c, userTimeout)
		},
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &boundedConn{Conn: c, limit: closeDeadline}, nil
	}
}

// closeDeadline is the longest a deadline set on a connection may lie
// ahead. pgx sets one only when it gives a connection up (its context
// ended in the middle of a query): it then drains the connection for up
// to 15 s so that it closes cleanly, and the pool keeps the connection's
// slot meanwhile. Behind a silent server nothing ever arrives, and a pool
// whose connections all went silent would have no slot for 15 s after the
// server came back.
const closeDeadline = time.Second

// boundedConn brings deadlines further ahead than limit back to limit.
// A zero deadline (none) is left alone: queries are bounded by their
// contexts, which set a deadline of now when they end.
type boundedConn struct {
	net.Conn
	limit time.Duration
}

func (c *boundedConn) bound(t time.Time) time.Time {
	if latest := time.Now().Add(c.limit); !t.IsZero() && t.After(latest) {
		return latest
	}
	return t
}

func (c *boundedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.bound(t)) }
func (c *boundedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.bound(t)) }
func (c *boundedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.bound(t)) }
