package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leaseguard/leaseguard/ops/progress"
)

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// Config configures the server.
type Config struct {
	Addr     string
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// Workers report their progress here; nil: no worker is judged.
	Workers *progress.Tracker
	// StallTimeout: a worker with work and no progress for this long makes
	// /readyz fail. WedgeTimeout (at least StallTimeout): a worker holding
	// one unit this long without progress or retry makes /livez fail.
	StallTimeout time.Duration
	WedgeTimeout time.Duration
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Addr == "" {
		return errors.New("metrics address is empty")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("metrics address %q: %w", c.Addr, err)
	}
	if c.Gatherer == nil {
		return errors.New("metrics gatherer is nil")
	}
	if c.Workers != nil && c.StallTimeout <= 0 {
		return errors.New("stall timeout must be positive")
	}
	if c.Workers != nil && c.WedgeTimeout < c.StallTimeout {
		return fmt.Errorf("wedge timeout %s is shorter than the stall timeout %s", c.WedgeTimeout, c.StallTimeout)
	}
	return nil
}

// Server is the operations HTTP server.
type Server struct {
	cfg    Config
	mu     sync.Mutex
	checks map[string]Check
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
}

// New builds a server; Start listens.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, checks: map[string]Check{}}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /livez", s.live)
	mux.HandleFunc("GET /healthz", s.live)
	mux.HandleFunc("GET /readyz", s.ready)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// AddCheck registers a readiness check under name.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	ok, body := s.runChecks(ctx)
	workersOK, workers := s.stalled()
	respond(w, ok && workersOK, body+workers)
}

// live answers /livez (and /healthz): the process serves, and no worker
// is wedged.
func (s *Server) live(w http.ResponseWriter, _ *http.Request) {
	ok, body := s.wedged()
	if len(body) == 0 {
		body = "ok\n"
	}
	respond(w, ok, body)
}

func respond(w http.ResponseWriter, ok bool, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(body))
}

// runChecks runs the dependency checks, one line each, sorted by name.
func (s *Server) runChecks(ctx context.Context) (bool, string) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	checks := make(map[string]Check, len(s.checks))
	for n, c := range s.checks {
		names = append(names, n)
		checks[n] = c
	}
	s.mu.Unlock()
	sort.Strings(names)
	ok := true
	var b strings.Builder
	for _, n := range names {
		if err := checks[n](ctx); err != nil {
			ok = false
			fmt.Fprintf(&b, "%s: %v\n", n, err)
			continue
		}
		fmt.Fprintf(&b, "%s: ok\n", n)
	}
	return ok, b.String()
}

// stalled says, one line per worker, which have had work without progress
// for the stall timeout.
func (s *Server) stalled() (bool, string) {
	ok := true
	var b strings.Builder
	for _, st := range s.cfg.Workers.Status() {
		switch {
		case !st.Busy:
			fmt.Fprintf(&b, "worker %s: ok, idle\n", st.Worker)
		case st.Stalled < s.cfg.StallTimeout:
			fmt.Fprintf(&b, "worker %s: ok, busy, no progress for %s\n", st.Worker, round(st.Stalled))
		default:
			ok = false
			fmt.Fprintf(&b, "worker %s: stalled: work pending since %s, no progress for %s\n", st.Worker,
				st.BusySince.UTC().Format(time.RFC3339), round(st.Stalled))
		}
	}
	return ok, b.String()
}

// wedged says, one line per worker, which have held a unit of work for
// the wedge timeout without progress or retry.
func (s *Server) wedged() (bool, string) {
	ok := true
	var b strings.Builder
	for _, st := range s.cfg.Workers.Status() {
		if st.Held < s.cfg.WedgeTimeout {
			fmt.Fprintf(&b, "worker %s: ok\n", st.Worker)
			continue
		}
		ok = false
		fmt.Fprintf(&b, "worker %s: wedged: one unit in hand for %s without progress\n", st.Worker, round(st.Held))
	}
	return ok, b.String()
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("ops server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the address actually listened on (useful with port 0).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// Shutdown stops the server gracefully; safe to call twice.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
