package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AuditSocketConfig configures the listener for Vault's socket audit device
// (LEASEGUARD_AUDIT_SOCKET_ADDR).
type AuditSocketConfig struct {
	DirectConfig
	// Addr is the TCP address to listen on (the device's address), or
	// "unix:" and the absolute path of a unix socket (socket_type=unix).
	Addr string
	// IdleTimeout closes a connection that sent nothing for this long
	// (0: never). Vault reconnects when it next writes.
	IdleTimeout time.Duration
	// AllowedNets are the TCP peers served; a connection from any other
	// address is closed before a byte of it is read. Empty: loopback only
	// (DefaultAllowedNets). Unix socket peers are not matched: the socket
	// file's Mode decides who may connect.
	AllowedNets []netip.Prefix
	// Mode is the unix socket file's permissions (0: DefaultSocketMode).
	Mode os.FileMode
}

// Validate checks the configuration.
func (c AuditSocketConfig) Validate() error {
	if err := c.validateAddr(); err != nil {
		return err
	}
	if err := c.validateAccess(); err != nil {
		return err
	}
	if c.IdleTimeout < 0 {
		return errors.New("audit socket: idle timeout must not be negative")
	}
	return c.DirectConfig.validate("socket")
}

// AuditSocket accepts Vault socket audit devices: TCP or a unix socket,
// one JSON entry per line, any number of connections. TCP peers outside
// the allowed networks are closed on before anything is read from them.
// Every line is stored in JetStream before the next one is read from its
// connection, so a line counts as received only once it is durable, and
// a slow or unavailable JetStream slows Vault's writes down through the
// socket instead of losing entries (Vault times a write out after the
// device's write_timeout). Lines over MaxLineBytes and lines that are not
// JSON objects are dead-lettered.
type AuditSocket struct {
	cfg    AuditSocketConfig
	nets   []netip.Prefix
	pub    *directPublisher
	logger *slog.Logger

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	// unixFile is the unix socket file bound, removed at shutdown.
	unixFile os.FileInfo
}

// NewAuditSocket builds the listener; Listen binds, Run serves.
func NewAuditSocket(cfg AuditSocketConfig, js jetstream.JetStream, metrics *Metrics, logger *slog.Logger) (*AuditSocket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &AuditSocket{
		cfg: cfg, nets: cfg.allowedNets(), logger: logger, conns: map[net.Conn]struct{}{},
		pub: &directPublisher{cfg: cfg.DirectConfig, js: js, transport: "socket", metrics: metrics, logger: logger},
	}, nil
}

// Listen binds the address, so that Addr is known (and Vault can connect)
// before Run. Run calls it when it was not called.
func (s *AuditSocket) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	if path, ok := s.cfg.UnixPath(); ok {
		ln, fi, err := listenUnix(path, s.cfg.mode())
		if err != nil {
			return fmt.Errorf("audit socket: %w", err)
		}
		s.ln, s.unixFile = ln, fi
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("audit socket: %w", err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (nil before Listen).
func (s *AuditSocket) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	if path, ok := s.cfg.UnixPath(); ok {
		// The listener was bound under a private name, then linked here.
		return &net.UnixAddr{Name: path, Net: "unix"}
	}
	return s.ln.Addr()
}

// Run accepts connections until ctx ends, then closes the listener and the
// connections; a line being stored when ctx ends is finished first. A unix
// socket's file is removed once the listener is closed.
func (s *AuditSocket) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.logStart()
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = s.ln.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	err := s.accept(ctx, &wg)
	s.removeUnixFile()
	s.mu.Lock()
	for c := range s.conns {
		// Unblock reads; a publish in progress still completes.
		_ = c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	wg.Wait()
	return err
}

func (s *AuditSocket) logStart() {
	if _, unix := s.cfg.UnixPath(); unix {
		s.logger.Info("accepting Vault socket audit devices", "addr", s.Addr().String(), "mode", fmt.Sprintf("%#o", uint32(s.cfg.mode())))
		return
	}
	s.logger.Info("accepting Vault socket audit devices", "addr", s.Addr().String(), "allowed", fmt.Sprint(s.nets))
}

// accept serves each connection from an allowed peer in its own goroutine
// until the listener is closed.
func (s *AuditSocket) accept(ctx context.Context, wg *sync.WaitGroup) error {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("audit socket: accept: %w", err)
		}
		if !peerAllowed(conn, s.nets) {
			s.refuse(conn)
			continue
		}
		s.track(conn, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.track(conn, false)
			s.serve(ctx, conn)
		}()
	}
}

// refuse closes a connection from outside the allowed networks before
// anything is read from it: whoever it is cannot put an entry in the
// ledger. Only its address is logged.
func (s *AuditSocket) refuse(conn net.Conn) {
	peer := conn.RemoteAddr().String()
	_ = conn.Close()
	s.pub.metrics.socketRefused()
	s.logger.Warn("audit socket connection refused: the peer is outside the allowed networks", "peer", peer)
}

// removeUnixFile removes the unix socket's file, if it is still ours.
func (s *AuditSocket) removeUnixFile() {
	path, ok := s.cfg.UnixPath()
	if !ok || s.unixFile == nil {
		return
	}
	if err := removeSocketFile(path, s.unixFile); err != nil {
		s.logger.Warn("audit socket file not removed", "path", path, "err", err)
	}
}

func (s *AuditSocket) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
		return
	}
	delete(s.conns, c)
	_ = c.Close()
}

// serve reads one connection line by line.
func (s *AuditSocket) serve(ctx context.Context, conn net.Conn) {
	peer := conn.RemoteAddr().String()
	if _, unix := s.cfg.UnixPath(); unix {
		peer = s.cfg.Addr // a unix peer has no address of its own
	}
	log := s.logger.With("peer", peer)
	log.Info("audit device connected")
	s.pub.metrics.socketConnected()
	reason := disconnectClosed
	defer func() { s.pub.metrics.socketDisconnected(reason) }()
	// A line in hand when ctx ends is still stored (bounded by the
	// publish timeout and one retry window).
	pubCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopPub := context.AfterFunc(ctx, func() {
		time.AfterFunc(s.pubTimeout(), cancel)
	})
	defer stopPub()
	r := bufio.NewReaderSize(conn, 64<<10)
	var received int64
	for ctx.Err() == nil {
		if s.cfg.IdleTimeout > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		data, size, _, complete, err := readLine(r, s.cfg.MaxLineBytes)
		if len(bytes.TrimSpace(data)) > 0 || size > int64(len(data)) {
			l := line{data: data, origin: "socket:" + peer}
			if !complete {
				l.reason = "connection closed in the middle of a line"
			}
			l = prepareLine(l, size, s.cfg.MaxLineBytes, "auditsocket", "")
			s.cfg.Progress.Start()
			perr := s.pub.publish(pubCtx, []line{l})
			s.cfg.Progress.Finish(perr)
			if perr != nil {
				log.Warn("audit entry not stored; closing the connection so Vault sees the failure", "err", perr)
				reason = disconnectStoreFailed
				return
			}
			received++
		}
		if err != nil || !complete {
			var ne net.Error
			switch {
			case ctx.Err() != nil:
				reason = disconnectShutdown
			case errors.As(err, &ne) && ne.Timeout():
				reason = disconnectIdle
				log.Info("audit device idle; closing the connection")
			case err != nil:
				reason = disconnectError
				log.Warn("audit device connection failed", "err", err)
			}
			break
		}
	}
	if ctx.Err() != nil {
		reason = disconnectShutdown
	}
	log.Info("audit device disconnected", "entries", received, "reason", reason)
}

func (s *AuditSocket) pubTimeout() time.Duration {
	if s.cfg.PublishTimeout > 0 {
		return s.cfg.PublishTimeout
	}
	return 10 * time.Second
}
