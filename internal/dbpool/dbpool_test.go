package dbpool

import (
	"context"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
	"github.com/leaseguard/leaseguard/internal/pgtest"
)

func open(t *testing.T, rawURL string, s Settings) *pgxpool.Pool {
	t.Helper()
	pc, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	Apply(pc, s)
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// behindProxy returns the test URL through a fault proxy (closed at
// cleanup, before the pools opened after it).
func behindProxy(t *testing.T, extra string) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.Start("127.0.0.1:0", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	u.Host = p.Addr()
	if extra != "" {
		q := u.Query()
		k, v, _ := strings.Cut(extra, "=")
		q.Set(k, v)
		u.RawQuery = q.Encode()
	}
	return u.String(), p
}

func show(t *testing.T, pool *pgxpool.Pool, name string) string {
	t.Helper()
	var v string
	if err := pool.QueryRow(context.Background(), "SHOW "+name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestServerTimeoutsPerConnection: every connection carries the
// statement, lock and idle-in-transaction timeouts; one the URL sets wins.
func TestServerTimeoutsPerConnection(t *testing.T) {
	t.Parallel()
	s := Settings{StatementTimeout: 3 * time.Second, LockTimeout: 1500 * time.Millisecond, IdleInTransactionTimeout: time.Minute}
	pool := open(t, pgtest.URL(), s)
	for name, want := range map[string]string{"statement_timeout": "3s", "lock_timeout": "1500ms", "idle_in_transaction_session_timeout": "1min"} {
		if got := show(t, pool, name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	u, _ := url.Parse(pgtest.URL())
	q := u.Query()
	q.Set("statement_timeout", "7000")
	u.RawQuery = q.Encode()
	if got := show(t, open(t, u.String(), s), "statement_timeout"); got != "7s" {
		t.Errorf("the URL's statement_timeout was overridden: %s", got)
	}
	// A statement past its timeout is cancelled by the server.
	_, err := pool.Exec(context.Background(), "SELECT pg_sleep(10)")
	if err == nil || !strings.Contains(err.Error(), "57014") {
		t.Errorf("a 10 s statement under a 3 s statement_timeout: %v", err)
	}
}

// TestIdleInTransactionSessionEndsOnTheServer: a client that vanishes in
// the middle of a transaction (its connection silenced, as behind a
// firewall that drops packets) leaves a server session holding its locks;
// the server ends it after the idle-in-transaction timeout, and the locks
// are free again.
func TestIdleInTransactionSessionEndsOnTheServer(t *testing.T) {
	t.Parallel()
	admin := pgtest.Pool(t)
	table := "dbpool_lock_" + pgtest.Suffix()
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE TABLE public."+table+" (id int primary key); INSERT INTO public."+table+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })

	proxied, proxy := behindProxy(t, "")
	pool := open(t, proxied, Settings{IdleInTransactionTimeout: time.Second, ConnectTimeout: time.Second})
	// Cut the silenced connections before the pool closes (cleanups run
	// last first): closing waits for them otherwise.
	t.Cleanup(func() { proxy.SetMode(faultproxy.Reset) })
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = tx.Rollback(rctx) // the pool waits for its connection back
	})
	if _, err := tx.Exec(ctx, "SELECT * FROM public."+table+" WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	proxy.SetMode(faultproxy.Blackhole)
	// The row is locked by a session whose client is gone; the lock is
	// released once the server ends the session.
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := admin.Exec(lctx, "SELECT * FROM public."+table+" WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatalf("the lock of the vanished client's transaction was never released: %v", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the lock was released after %s, want about the 1 s idle-in-transaction timeout", waited)
	}
}

// TestConnectTimeoutOnASilentServer: connecting to a server that accepts
// and answers nothing fails after the connect timeout, also with a caller
// that gave no deadline, and frees the pool's slot for the next attempt.
func TestConnectTimeoutOnASilentServer(t *testing.T) {
	t.Parallel()
	proxied, proxy := behindProxy(t, "")
	proxy.SetMode(faultproxy.Blackhole)
	pc, err := pgxpool.ParseConfig(proxied)
	if err != nil {
		t.Fatal(err)
	}
	Apply(pc, Settings{ConnectTimeout: 500 * time.Millisecond})
	pc.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for i := range 3 {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- pool.Ping(context.Background()) }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("attempt %d: a silent server answered", i)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("attempt %d failed after %s, want about the 500ms connect timeout", i, d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("attempt %d: connecting to a silent server never gave up", i)
		}
	}
	proxy.SetMode(faultproxy.Pass)
	if err := pool.Ping(context.Background()); err != nil {
		t.Fatalf("after the server came back: %v", err)
	}
}

// TestSilencedIdleConnectionIsReplaced: a connection that went silent
// while idle in the pool costs an acquire the ping timeout, not the
// caller's deadline: it is dropped and a fresh one is made.
func TestSilencedIdleConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	proxied, proxy := behindProxy(t, "")
	pc, err := pgxpool.ParseConfig(proxied)
	if err != nil {
		t.Fatal(err)
	}
	Apply(pc, Settings{ConnectTimeout: time.Second, PingTimeout: 300 * time.Millisecond})
	pc.MaxConns = 1
	// Ping every connection taken from the pool, not only those idle over
	// a second: the test need not wait for that.
	pc.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	proxy.SetMode(faultproxy.Blackhole)
	proxy.SetMode(faultproxy.Pass) // the pooled connection stays silent
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	var one int
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query after the silenced connection: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the query took %s, want about the 300ms ping timeout", d)
	}
	if got := proxy.Accepted(); got < 2 {
		t.Errorf("%d connections made, want the silenced one and a replacement", got)
	}
}

// TestDialerOptions: TCP connections get keepalive and the user timeout;
// a unix socket is dialled without them.
func TestDialerOptions(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := Dialer(time.Second, 6*time.Second)
	c, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkSocketOptions(t, c.(*boundedConn).Conn.(*net.TCPConn), 6*time.Second)
	// A far deadline is brought within a second; none stays none.
	if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("a read under a one-hour deadline ended after %s with %v; want a timeout after about a second", time.Since(start), err)
	}

	sock := filepath.Join(t.TempDir(), "s")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer uln.Close()
	uc, err := dial(context.Background(), "unix", sock)
	if err != nil {
		t.Fatalf("unix socket: %v", err)
	}
	_ = uc.Close()
}

func TestSettingsValidate(t *testing.T) {
	t.Parallel()
	if err := (Settings{}).Validate(); err != nil {
		t.Errorf("zero settings: %v", err)
	}
	if err := (Settings{ConnectTimeout: -time.Second}).Validate(); err == nil {
		t.Error("a negative connect timeout was accepted")
	}
	if err := (Settings{StatementTimeout: time.Microsecond}).Validate(); err == nil {
		t.Error("a statement timeout below 1ms was accepted")
	}
	d := Settings{}.WithDefaults()
	if d.ConnectTimeout != DefaultConnectTimeout || d.PingTimeout != DefaultConnectTimeout || d.TCPUserTimeout != DefaultTCPUserTimeout {
		t.Errorf("defaults %+v", d)
	}
}
