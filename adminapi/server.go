package adminapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/store"
)

// Operator plans and executes revocations: an *operator.Service.
type Operator interface {
	Plan(ctx context.Context, req operator.Request) (operator.Plan, error)
	Execute(ctx context.Context, p operator.Plan, progress func(done, total int)) ([]revoker.Executed, error)
}

var _ Operator = (*operator.Service)(nil)

// Deps are what the API serves from.
type Deps struct {
	// Operator must have an executor and a signer (operator.Deps), or every
	// revocation that is not a dry run fails.
	Operator Operator
	// Approvals decides pending revocations (owner approval, approve.go);
	// nil answers its routes 503.
	Approvals Approver
	// State is the state-store pool (store.Store.Pool).
	State store.Querier
	// Rollout is the enforcement policy (scope.go); nil answers its
	// routes 503.
	Rollout Rollout
	// Registerer gets the API's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Clock      func() time.Time
}

// route is one endpoint and the scope it needs.
type route struct {
	pattern string
	scope   Scope
	handler http.HandlerFunc
}

// Server is the admin API server.
type Server struct {
	cfg     Config
	d       Deps
	auth    *authenticator
	limits  *limiters
	fails   *failureGate
	m       *metrics
	mux     *http.ServeMux
	scopeOf map[string]Scope
	srv     *http.Server

	// base is the context of revocations in flight: it outlives the
	// client's connection, and ends when Shutdown gives up waiting.
	base       context.Context
	cancelBase context.CancelFunc
	inflight   sync.WaitGroup

	mu      sync.Mutex
	ln      net.Listener
	done    chan struct{}
	closing bool // Shutdown began: no new revocation starts
}

// New checks cfg and builds the server; Start listens.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Operator == nil || d.State == nil {
		return nil, errors.New("admin api: an operator service and the state store are required")
	}
	cfg = cfg.withDefaults()
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Registerer == nil {
		d.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, d: d, auth: newAuthenticator(cfg.Tokens), limits: newLimiters(cfg.RatePerMinute),
		m: m, mux: http.NewServeMux(), scopeOf: map[string]Scope{}}
	s.fails = newFailureGate(cfg.AuthFailures, cfg.AuthFailureWindow, DefaultMaxTrackedAddresses)
	s.base, s.cancelBase = context.WithCancel(context.Background())
	for _, rt := range s.routes() {
		s.mux.HandleFunc(rt.pattern, rt.handler)
		s.scopeOf[rt.pattern] = rt.scope
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		// A revocation may take RequestTimeout plus the grace of the batch
		// in flight.
		WriteTimeout:   cfg.RequestTimeout + 30*time.Second,
		IdleTimeout:    60 * time.Second,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(d.Logger.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return s.base },
	}
	return s, nil
}

func (s *Server) routes() []route {
	return []route{
		{"POST /v1/revocations", ScopeRevoke, s.postRevocation},
		{"GET /v1/revocations/{id}", ScopeRead, s.getRevocation},
		{"GET /v1/revocations", ScopeRead, s.listPending},
		{"POST /v1/revocations/{id}/approve", ScopeRevoke, s.approvePending},
		{"POST /v1/revocations/{id}/reject", ScopeRevoke, s.rejectPending},
		{"GET /v1/leases", ScopeRead, s.listLeases},
		{"GET /v1/findings", ScopeRead, s.listFindings},
		{"GET /v1/evidence/{id}", ScopeRead, s.getEvidence},
		{"GET /v1/scope", ScopeRead, s.getScope},
		{"POST /v1/scope/expand", ScopeRevoke, s.expandScope},
		{"POST /v1/scope/rollback", ScopeRevoke, s.rollbackScope},
		{"GET /v1/pilot/report", ScopeRead, s.pilotReport},
	}
}

// Patterns returns the routes the server serves, as ServeMux patterns
// ("METHOD /path/{param}").
func (s *Server) Patterns() []string {
	var out []string
	for _, rt := range s.routes() {
		out = append(out, rt.pattern)
	}
	return out
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP turns away client addresses that failed authentication too
// often, authenticates, rate limits, routes and checks the scope, in that
// order, then serves the request. Unknown routes are answered only to
// authenticated principals.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	route := "unmatched"
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.d.Logger.Error("admin api handler panicked", "route", route, "panic", fmt.Sprint(p))
			if w.code == 0 {
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}
		code := w.code
		if code == 0 {
			code = http.StatusOK
		}
		s.m.observe(route, code, time.Since(start).Seconds())
	}()
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")

	p, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if ok, wait := s.limits.allow(p.Name, s.d.Clock()); !ok {
		s.deny(r, p.Name, DeniedRateLimited)
		h.Set("Retry-After", strconv.Itoa(retryAfter(wait)))
		writeError(w, http.StatusTooManyRequests, "rate limit of %d requests a minute exceeded for %s", s.cfg.RatePerMinute, p.Name)
		return
	}
	_, pattern := s.mux.Handler(r)
	scope, known := s.scopeOf[pattern]
	if !known {
		s.unrouted(w, r)
		return
	}
	route = pattern
	if !p.Has(scope) {
		s.deny(r, p.Name, DeniedInsufficientScope)
		h.Set("WWW-Authenticate", challenge(DeniedInsufficientScope, scope))
		writeError(w, http.StatusForbidden, "%s lacks the %s scope", p.Name, scope)
		return
	}
	s.d.Logger.Debug("admin api request", "principal", p.Name, "via", p.via, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	s.mux.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
}

// authenticate resolves the request's principal, or answers it: 429 when
// its client address is serving a penalty for failed authentications (its
// credentials are not examined), 401 when it has no valid credential (a
// wrong token or an unknown certificate counts toward that penalty).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (principal, bool) {
	client, now := clientKey(r.RemoteAddr), s.d.Clock()
	if blocked, wait := s.fails.check(client, now); blocked {
		s.deny(r, "", DeniedAuthFailures)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter(wait)))
		writeError(w, http.StatusTooManyRequests, "too many failed authentications from this address; retry later")
		return principal{}, false
	}
	p, denied := s.auth.authenticate(r)
	if denied == "" {
		return p, true
	}
	s.deny(r, "", denied)
	if denied != DeniedMissingCredentials && s.fails.failed(client, now) {
		s.d.Logger.Warn("admin api client address turned away after failed authentications",
			"client", client, "failures", s.cfg.AuthFailures, "for", s.cfg.AuthFailureWindow.String())
	}
	w.Header().Set("WWW-Authenticate", challenge(denied, ""))
	writeError(w, http.StatusUnauthorized, "%s", deniedText(denied))
	return principal{}, false
}

// deny records a refused request: the metric, and a log line naming the
// principal (or "anonymous") and the remote address.
func (s *Server) deny(r *http.Request, name, reason string) {
	s.m.denied.WithLabelValues(reason).Inc()
	if name == "" {
		name = "anonymous"
	}
	attrs := []any{"principal", name, "reason", reason, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path}
	if cn := certCN(r); cn != "" && reason == DeniedUnknownClientCert {
		attrs = append(attrs, "client_cn", cn)
	}
	s.d.Logger.Warn("admin api request denied", attrs...)
}

func deniedText(reason string) string {
	switch reason {
	case DeniedInvalidToken:
		return "invalid credentials"
	case DeniedUnknownClientCert:
		return "the client certificate names no known principal"
	}
	return "authentication required: a bearer token or a client certificate"
}

// challenge is the WWW-Authenticate value (RFC 6750) for a refusal.
func challenge(reason string, scope Scope) string {
	const realm = `Bearer realm="leaseguard-admin"`
	switch reason {
	case DeniedInvalidToken:
		return realm + `, error="invalid_token"`
	case DeniedInsufficientScope:
		return realm + `, error="insufficient_scope", scope="` + string(scope) + `"`
	}
	return realm
}

// unrouted answers a request no route matches: 405 (with Allow) when the
// path is served with another method, else 404.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	probe := &probeWriter{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		writeError(w, http.StatusMethodNotAllowed, "method %s is not allowed here", r.Method)
		return
	}
	writeError(w, http.StatusNotFound, "no such endpoint")
}

// probeWriter captures what the mux's own not-found handlers would answer.
type probeWriter struct {
	header http.Header
	code   int
}

func (p *probeWriter) Header() http.Header { return p.header }
func (p *probeWriter) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}
func (p *probeWriter) Write(b []byte) (int, error) { return len(b), nil }

// Handler returns the API as an http.Handler (the server itself).
func (s *Server) Handler() http.Handler { return s }

// tlsConfig is the server's TLS: its certificate, TLS 1.2 at least, and,
// with a client CA, client certificates verified against it (required when
// no principal has a bearer token).
func (s *Server) tlsConfig() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{s.cfg.TLSCert}}
	if s.cfg.ClientCA != nil {
		c.ClientCAs = s.cfg.ClientCA
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if !s.cfg.hasBearer() {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return c
}

// Start listens on the configured address and serves in the background.
// With no address configured it does nothing.
func (s *Server) Start() error {
	if !s.cfg.Enabled() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("admin api: already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	scheme := "http"
	if s.cfg.HasTLS() {
		ln = tls.NewListener(ln, s.tlsConfig())
		scheme = "https"
	} else if !isLoopback(ln.Addr()) {
		s.d.Logger.Warn("admin api serves plain HTTP on a non-loopback address: bearer tokens cross the network in clear unless a TLS proxy fronts it", "addr", ln.Addr().String())
	}
	s.ln = ln
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.d.Logger.Error("admin api server stopped", "err", err)
		}
	}()
	s.d.Logger.Info("admin api listening", "addr", ln.Addr().String(), "scheme", scheme,
		"tokens", len(s.cfg.Tokens), "mtls", s.cfg.ClientCA != nil)
	return nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Addr is the address listened on (useful with port 0), or the configured
// one before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting requests and waits for those in flight until
// ctx ends. Then revocations still executing are interrupted: each gets
// the operator's grace to record the batch in flight, and Shutdown waits
// for that too, so no drop is left without its recorded outcome when the
// caller closes the store. Safe to call twice, and without Start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ln, done := s.ln, s.done
	s.mu.Unlock()
	var err error
	if ln != nil {
		err = s.srv.Shutdown(ctx)
		if err != nil {
			s.cancelBase()
			_ = s.srv.Close()
		}
		<-done
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.cancelBase()
	s.inflight.Wait()
	return err
}

// detach starts a change that must run to its end or its timeout whether
// or not the client waits (a revocation, a decision or a policy change cut
// short by a dropped connection would only have to be resumed): its
// context is the server's, not the request's, and Shutdown waits for it.
// Once Shutdown has begun it answers 503 and reports false; otherwise the
// caller must call done.
func (s *Server) detach(w http.ResponseWriter) (ctx context.Context, done func(), ok bool) {
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.inflight.Add(1)
	}
	s.mu.Unlock()
	if closing {
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down")
		return nil, nil, false
	}
	ctx, cancel := context.WithTimeout(s.base, s.cfg.RequestTimeout)
	return ctx, func() { cancel(); s.inflight.Done() }, true
}
