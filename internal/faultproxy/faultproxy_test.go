package faultproxy

import (
	"bufio"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// echo is an upstream that sends back every line and counts its
// connections.
type echo struct {
	ln       net.Listener
	accepted atomic.Int64
	open     atomic.Int64
	// ended receives once per connection the upstream saw end.
	ended chan struct{}
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln, ended: make(chan struct{}, 100)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.open.Add(1)
			go func() {
				defer func() { e.open.Add(-1); e.ended <- struct{}{} }()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					if _, err := c.Write(l); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return e
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// dialRoundTrip connects and makes one round trip: an error of either.
func dialRoundTrip(p *Proxy, wait time.Duration) error {
	c, err := net.DialTimeout("tcp", p.Addr(), wait)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, wait)
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes a line and reads the answer within wait.
func roundTrip(c net.Conn, wait time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("wrong echo: " + line)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPassForwards(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	for range 3 {
		if err := roundTrip(c, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if p.Accepted() != 1 || e.accepted.Load() != 1 {
		t.Fatalf("accepted: proxy %d, upstream %d; want 1 and 1", p.Accepted(), e.accepted.Load())
	}
	// A client that closes closes its upstream too.
	_ = c.Close()
	waitFor(t, "upstream connection closed", func() bool { return e.open.Load() == 0 })
	waitFor(t, "proxy forgot the connection", func() bool { return p.Open() == 0 })
}

func TestResetClosesOpenAndNewConnections(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	if err := roundTrip(c, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Reset)
	if err := roundTrip(c, 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("open connection after reset: got %v, want a connection error at once", err)
	}
	waitFor(t, "upstream side closed", func() bool { return e.open.Load() == 0 })
	if err := dialRoundTrip(p, 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("new connection in reset: got %v, want a connection error at once", err)
	}
	if e.accepted.Load() != 1 {
		t.Fatalf("a connection reached the upstream during the reset (%d accepted)", e.accepted.Load())
	}
	p.SetMode(Pass)
	if err := roundTrip(dial(t, p), 2*time.Second); err != nil {
		t.Fatalf("after reset, pass again: %v", err)
	}
}

func TestBlackholeSilencesWithoutClosing(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	caught := dial(t, p)
	if err := roundTrip(caught, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Blackhole)
	if p.Mode() != Blackhole {
		t.Fatalf("mode %s", p.Mode())
	}
	// The write is taken, the answer never comes, the connection stays.
	if err := roundTrip(caught, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("open connection in a blackhole: got %v, want a read timeout", err)
	}
	fresh := dial(t, p)
	if err := roundTrip(fresh, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection in a blackhole: got %v, want a read timeout", err)
	}
	if got := e.accepted.Load(); got != 1 {
		t.Fatalf("a connection made in the blackhole reached the upstream (%d accepted)", got)
	}
	if p.Open() != 2 || e.open.Load() != 1 {
		t.Fatalf("open: proxy %d, upstream %d; want 2 and 1", p.Open(), e.open.Load())
	}

	// Back in pass: new connections work, the caught ones stay silent.
	p.SetMode(Pass)
	after := dial(t, p)
	if err := roundTrip(after, 2*time.Second); err != nil {
		t.Fatalf("new connection after the blackhole: %v", err)
	}
	if err := roundTrip(caught, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("caught connection after the blackhole: got %v, want a read timeout", err)
	}
	// The client of a caught connection goes away: the upstream is not told.
	_ = caught.Close()
	waitFor(t, "proxy saw the client go", func() bool { return p.ClientsEnded() == 1 })
	// A round trip through the upstream lets it notice a close, had there
	// been one.
	if err := roundTrip(after, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(e.ended); n != 0 {
		t.Fatalf("the upstream of a caught connection was closed with its client (%d ended)", n)
	}
	// Close ends everything.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "upstream connections closed by Close", func() bool { return e.open.Load() == 0 })
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("a closed proxy still accepts")
	}
}

func TestResetEndsBlackholedConnections(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	if err := roundTrip(c, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Blackhole)
	p.SetMode(Reset)
	waitFor(t, "upstream closed", func() bool { return e.open.Load() == 0 })
	if err := roundTrip(c, 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("got %v, want a connection error", err)
	}
}

func TestUnreachableUpstreamResetsClient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := startProxy(t, addr)
	if err := dialRoundTrip(p, 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("got %v, want a connection error", err)
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for _, m := range []Mode{Pass, Reset, Blackhole} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("drop"); err == nil {
		t.Error("ParseMode accepted an unknown mode")
	}
	if _, err := Start("127.0.0.1:0", "no-port"); err == nil {
		t.Error("Start accepted a target without a port")
	}
}
