package vaulttest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Lease is a lease the server holds.
type Lease struct {
	IssueTime  time.Time
	ExpireTime time.Time
	// RevokeFails makes sys/leases/revoke fail as a backend error does (the
	// role's revocation statements failed): 400.
	RevokeFails bool
	// RevokeError replaces the error text of a failed revoke.
	RevokeError string
}

// Token is a token the server knows.
type Token struct {
	TTL         time.Duration
	CreationTTL time.Duration
	// MaxTTL caps renewals (from creation); 0: no cap.
	MaxTTL    time.Duration
	Renewable bool
	// Sudo grants the sudo paths (revoke-force, lookup list).
	Sudo bool
	// Deny lists operations refused with 403: revoke, revoke-force, lookup,
	// list, audit-hash, lookup-self, renew-self.
	Deny    map[string]bool
	created time.Time
	expire  time.Time
}

// Call is one request the server received.
type Call struct {
	Op     string
	Method string
	Path   string
	// Arg: the lease id, prefix or input of the call.
	Arg   string
	Token string
	// Namespace is the X-Vault-Namespace header.
	Namespace string
	Status    int
}

// Server is the fake Vault.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	now     func() time.Time
	leases  map[string]*Lease
	tokens  map[string]*Token
	devices map[string][]byte
	calls   []Call
	sealed  bool
}

// New starts a server, closed at cleanup. now is its clock (nil: time.Now).
func New(t testing.TB, now func() time.Time) *Server {
	s := newServer(now)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// NewTLS is New over TLS, with httptest's certificate (valid for
// example.com and 127.0.0.1; CertPEM returns it).
func NewTLS(t testing.TB, now func() time.Time) *Server {
	s := newServer(now)
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// CertPEM is the TLS server's certificate in PEM.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

func newServer(now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{now: now, leases: map[string]*Lease{}, tokens: map[string]*Token{}, devices: map[string][]byte{}}
}

// AddToken registers a token.
func (s *Server) AddToken(tok string, t Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.created = s.now()
	if t.TTL > 0 {
		t.expire = t.created.Add(t.TTL)
	}
	if t.CreationTTL == 0 {
		t.CreationTTL = t.TTL
	}
	s.tokens[tok] = &t
}

// AddLease registers a lease.
func (s *Server) AddLease(id string, l Lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := l
	s.leases[id] = &c
}

// SetRevokeFails sets whether revoking the lease fails in the backend.
func (s *Server) SetRevokeFails(id string, fails bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.leases[id]; l != nil {
		l.RevokeFails = fails
	}
}

// HasLease reports whether the server still holds the lease.
func (s *Server) HasLease(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases[id] != nil
}

// AddAuditDevice enables an audit device (path without slashes) with salt.
func (s *Server) AddAuditDevice(path string, salt []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices[strings.Trim(path, "/")+"/"] = salt
}

// Hash is the HMAC the device's entries carry for input.
func Hash(salt []byte, input string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(input))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// SetSealed makes every call answer 503 as a sealed Vault does.
func (s *Server) SetSealed(sealed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = sealed
}

// Calls returns the calls received, of the given operations (all if none).
func (s *Server) Calls(ops ...string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if len(ops) == 0 || contains(ops, c.Op) {
			out = append(out, c)
		}
	}
	return out
}

// TokenExpiry returns when a token expires (zero: never).
func (s *Server) TokenExpiry(tok string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tokens[tok]; t != nil {
		return t.expire
	}
	return time.Time{}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErrors(w http.ResponseWriter, status int, errs ...string) {
	if errs == nil {
		errs = []string{}
	}
	writeJSON(w, status, map[string]any{"errors": errs})
}

const permissionDenied = "1 error occurred:\n\t* permission denied\n\n"

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := &exchange{s: s, w: w, path: strings.TrimPrefix(r.URL.Path, "/v1/"), now: s.now(),
		call: Call{Method: r.Method, Token: r.Header.Get("X-Vault-Token"), Namespace: r.Header.Get("X-Vault-Namespace")}}
	x.call.Path = x.path
	if r.Body != nil {
		_ = json.NewDecoder(r.Body).Decode(&x.body)
	}
	defer func() { s.calls = append(s.calls, x.call) }()
	if !x.route(r) {
		x.fail(http.StatusNotFound)
		return
	}
	if !x.authorize() {
		return
	}
	switch x.call.Op {
	case "revoke":
		x.revoke()
	case "revoke-force":
		x.revokeForce()
	case "lookup":
		x.lookup()
	case "list":
		x.list()
	case "audit-hash":
		x.auditHash()
	case "lookup-self":
		x.lookupSelf()
	case "renew-self":
		x.renewSelf()
	}
}

// exchange is one request to the Server and its reply; the Server's lock
// is held.
type exchange struct {
	s    *Server
	w    http.ResponseWriter
	path string
	body map[string]any
	call Call
	now  time.Time
	tok  *Token
}

func (x *exchange) str(k string) string { v, _ := x.body[k].(string); return v }

func (x *exchange) reply(code int, v any) {
	x.call.Status = code
	if v == nil {
		x.w.WriteHeader(code)
		return
	}
	writeJSON(x.w, code, v)
}

func (x *exchange) fail(code int, errs ...string) {
	x.call.Status = code
	writeErrors(x.w, code, errs...)
}

// route names the operation of the request (call.Op, call.Arg); false
// for a path the server does not serve.
func (x *exchange) route(r *http.Request) bool {
	list := r.Method == "LIST" || (r.Method == http.MethodGet && r.URL.Query().Get("list") == "true")
	if list && !strings.HasSuffix(x.path, "/") {
		x.path += "/" // as Vault does before its policy check (http/logical.go); call.Path keeps the request's
	}
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	path, c := x.path, &x.call
	switch {
	case write && (path == "sys/leases/revoke" || strings.HasPrefix(path, "sys/leases/revoke/")):
		c.Op, c.Arg = "revoke", x.str("lease_id")
		if c.Arg == "" {
			c.Arg = strings.TrimPrefix(path, "sys/leases/revoke/")
		}
	case write && strings.HasPrefix(path, "sys/leases/revoke-force/"):
		c.Op, c.Arg = "revoke-force", strings.TrimPrefix(path, "sys/leases/revoke-force/")
	case write && path == "sys/leases/lookup":
		c.Op, c.Arg = "lookup", x.str("lease_id")
	case list && strings.HasPrefix(path, "sys/leases/lookup/"):
		c.Op, c.Arg = "list", strings.TrimPrefix(path, "sys/leases/lookup/")
	case write && strings.HasPrefix(path, "sys/audit-hash/"):
		c.Op, c.Arg = "audit-hash", x.str("input")
	case r.Method == http.MethodGet && path == "auth/token/lookup-self":
		c.Op = "lookup-self"
	case write && path == "auth/token/renew-self":
		c.Op = "renew-self"
	default:
		return false
	}
	return true
}

// authorize checks the seal and the token; it replies and returns false
// when the request may not go on.
func (x *exchange) authorize() bool {
	if x.s.sealed {
		x.fail(http.StatusServiceUnavailable, "Vault is sealed")
		return false
	}
	tok := x.s.tokens[x.call.Token]
	if tok == nil || (!tok.expire.IsZero() && !x.now.Before(tok.expire)) {
		x.fail(http.StatusForbidden, "permission denied")
		return false
	}
	if tok.Deny[x.call.Op] || ((x.call.Op == "revoke-force" || x.call.Op == "list") && !tok.Sudo) {
		x.fail(http.StatusForbidden, permissionDenied)
		return false
	}
	x.tok = tok
	return true
}

func (x *exchange) revoke() {
	if x.call.Arg == "" {
		x.fail(http.StatusBadRequest, "lease_id must be specified")
		return
	}
	l := x.s.leases[x.call.Arg]
	if l == nil {
		x.reply(http.StatusNoContent, nil)
		return
	}
	if l.RevokeFails {
		msg := "failed to revoke entry: resp: (*logical.Response)(nil) err: failed to revoke lease: ERROR: role \"x\" cannot be dropped because some objects depend on it (SQLSTATE 2BP01)"
		if l.RevokeError != "" {
			msg = l.RevokeError
		}
		x.fail(http.StatusBadRequest, msg)
		return
	}
	delete(x.s.leases, x.call.Arg)
	x.reply(http.StatusNoContent, nil)
}

// revokeForce is as vault/expiration.go revokePrefixCommon: an exact lease
// id is that lease; otherwise everything under prefix + "/".
func (x *exchange) revokeForce() {
	if x.s.leases[x.call.Arg] != nil {
		delete(x.s.leases, x.call.Arg)
	} else {
		p := strings.TrimSuffix(x.call.Arg, "/") + "/"
		for id := range x.s.leases {
			if strings.HasPrefix(id, p) {
				delete(x.s.leases, id)
			}
		}
	}
	x.reply(http.StatusNoContent, nil)
}

func (x *exchange) lookup() {
	if x.call.Arg == "" {
		x.fail(http.StatusBadRequest, "lease_id must be specified")
		return
	}
	l := x.s.leases[x.call.Arg]
	if l == nil {
		x.fail(http.StatusBadRequest, "invalid lease")
		return
	}
	data := map[string]any{"id": x.call.Arg, "issue_time": l.IssueTime.Format(time.RFC3339Nano), "expire_time": nil,
		"last_renewal": nil, "renewable": true, "ttl": 0}
	if !l.ExpireTime.IsZero() {
		data["expire_time"] = l.ExpireTime.Format(time.RFC3339Nano)
		ttl := int64(l.ExpireTime.Sub(x.now) / time.Second)
		data["ttl"] = max(ttl, 0)
	}
	x.reply(http.StatusOK, map[string]any{"request_id": "req", "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": data, "wrap_info": nil, "warnings": nil, "auth": nil})
}

func (x *exchange) list() {
	p := strings.TrimSuffix(x.call.Arg, "/") + "/"
	seen := map[string]bool{}
	var keys []string
	for id := range x.s.leases {
		rest, ok := strings.CutPrefix(id, p)
		if !ok {
			continue
		}
		if i := strings.Index(rest, "/"); i >= 0 {
			rest = rest[:i+1]
		}
		if !seen[rest] {
			seen[rest] = true
			keys = append(keys, rest)
		}
	}
	if len(keys) == 0 {
		x.fail(http.StatusNotFound)
		return
	}
	sort.Strings(keys)
	x.reply(http.StatusOK, map[string]any{"request_id": "req", "data": map[string]any{"keys": keys}})
}

func (x *exchange) auditHash() {
	dev := strings.Trim(strings.TrimPrefix(x.path, "sys/audit-hash/"), "/") + "/"
	if x.call.Arg == "" {
		x.fail(http.StatusBadRequest, "the \"input\" parameter is empty")
		return
	}
	salt, ok := x.s.devices[dev]
	if !ok {
		x.fail(http.StatusBadRequest, "unknown audit backend \""+dev+"\"")
		return
	}
	h := Hash(salt, x.call.Arg)
	x.reply(http.StatusOK, map[string]any{"request_id": "req", "data": map[string]any{"hash": h}, "hash": h})
}

func (x *exchange) lookupSelf() {
	tok := x.tok
	var exp any
	ttl := int64(0)
	if !tok.expire.IsZero() {
		exp = tok.expire.UTC().Format(time.RFC3339Nano)
		ttl = int64(tok.expire.Sub(x.now) / time.Second)
	}
	typ := "service"
	if !tok.Renewable && tok.TTL > 0 {
		typ = "batch"
	}
	x.reply(http.StatusOK, map[string]any{"request_id": "req", "data": map[string]any{
		"id": x.call.Token, "accessor": "acc", "creation_ttl": int64(tok.CreationTTL / time.Second), "ttl": ttl,
		"expire_time": exp, "renewable": tok.Renewable, "type": typ, "policies": []string{"leaseguard"},
	}})
}

func (x *exchange) renewSelf() {
	tok := x.tok
	if !tok.Renewable {
		x.fail(http.StatusBadRequest, "lease is not renewable")
		return
	}
	inc := tok.CreationTTL
	if v := x.str("increment"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			inc = d
		}
	}
	exp := x.now.Add(inc)
	if tok.MaxTTL > 0 && exp.After(tok.created.Add(tok.MaxTTL)) {
		exp = tok.created.Add(tok.MaxTTL)
	}
	tok.expire = exp
	x.reply(http.StatusOK, map[string]any{"request_id": "req", "auth": map[string]any{
		"client_token": x.call.Token, "accessor": "acc", "policies": []string{"leaseguard"},
		"lease_duration": int64(exp.Sub(x.now) / time.Second), "renewable": true,
	}})
}
