package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with connections.
type Mode int32

// The modes; see the package documentation.
const (
	Pass Mode = iota
	Reset
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Reset:
		return "reset"
	case Blackhole:
		return "blackhole"
	}
	return fmt.Sprintf("mode(%d)", int32(m))
}

// ParseMode reads "pass", "reset" or "blackhole".
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Pass, Reset, Blackhole} {
		if m.String() == s {
			return m, nil
		}
	}
	return Pass, fmt.Errorf("faultproxy: unknown mode %q (pass, reset, blackhole)", s)
}

// DialTimeout bounds the proxy's connection to the upstream.
const DialTimeout = 5 * time.Second

// Proxy forwards connections from its listener to one upstream address.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	mode   Mode
	conns  map[*pair]struct{}
	closed bool

	accepted atomic.Int64
	// clientsEnded counts client sides that ended (closed or failed).
	clientsEnded atomic.Int64
	wg           sync.WaitGroup
}

// Start listens on listen (e.g. "127.0.0.1:0") and forwards to target
// (host:port), in Pass mode. Close stops it.
func Start(listen, target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the proxy. Reset closes every open connection at once;
// Blackhole silences every open connection for good (see the package
// documentation); Pass affects connections accepted from now on.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	for c := range p.conns {
		switch m {
		case Reset:
			c.reset()
			delete(p.conns, c)
		case Blackhole:
			c.silence()
		}
	}
}

// Accepted is how many connections the proxy has accepted so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// ClientsEnded is how many client connections the proxy saw end (the
// client closed it, or it failed), whether or not the upstream was told.
func (p *Proxy) ClientsEnded() int64 { return p.clientsEnded.Load() }

// Open is how many accepted connections are open now (silenced ones
// included).
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.reset()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(conn)
	}
}

// serve handles one accepted connection according to the mode it met.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	c := &pair{client: client, clientEnded: func() { p.clientsEnded.Add(1) }}
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	switch p.Mode() {
	case Reset:
		c.reset()
		return
	case Blackhole:
		c.silence()
		c.run(nil)
		return
	}
	up, err := net.DialTimeout("tcp", p.target, DialTimeout)
	if err != nil {
		c.reset()
		return
	}
	if !c.attach(up) {
		_ = up.Close()
		return
	}
	c.run(up)
}

// track registers c unless the proxy is closed.
func (p *Proxy) track(c *pair) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.client.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c *pair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// pair is one client connection and, once dialled, its upstream.
type pair struct {
	client net.Conn

	mu       sync.Mutex
	upstream net.Conn
	// silenced: a blackhole caught the pair; nothing is forwarded again.
	silenced atomic.Bool
	// dead: reset or closed; an upstream attached later is refused.
	dead bool
	// clientEnded is called once the client side ended and the upstream
	// was closed, or not (silenced).
	clientEnded func()
}

// attach sets the upstream unless the pair was reset meanwhile.
func (c *pair) attach(up net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return false
	}
	c.upstream = up
	return true
}

func (c *pair) silence() { c.silenced.Store(true) }

// reset closes both sides with a TCP reset (no linger).
func (c *pair) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = true
	for _, conn := range []net.Conn{c.client, c.upstream} {
		if conn == nil {
			continue
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
	}
}

// run copies both ways until both directions have ended. up is nil for a
// connection accepted in a blackhole: its client's bytes are read and
// dropped.
func (c *pair) run(up net.Conn) {
	var wg sync.WaitGroup
	wg.Go(func() {
		c.copy(up, c.client)
		c.clientEnded()
	})
	if up != nil {
		wg.Go(func() { c.copy(c.client, up) })
	}
	wg.Wait()
}

// copy forwards src to dst while the pair is not silenced, and drops what
// it reads once it is. When src ends, a forwarding pair is closed on both
// sides, as a proxy would; a silenced pair closes only src, so the other
// side never learns.
func (c *pair) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil && !c.silenced.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err == nil {
			continue
		}
		_ = src.Close()
		if dst != nil && !c.silenced.Load() {
			_ = dst.Close()
		}
		return
	}
}
