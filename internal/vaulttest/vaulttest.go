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
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	var body map[string]any
	if r.Body != nil {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	str := func(k string) string { v, _ := body[k].(string); return v }
	call := Call{Method: r.Method, Path: path, Token: r.Header.Get("X-Vault-Token"), Namespace: r.Header.Get("X-Vault-Namespace")}
	status := 0
	defer func() {
		call.Status = status
		s.calls = append(s.calls, call)
	}()
	reply := func(code int, v any) {
		status = code
		if v == nil {
			w.WriteHeader(code)
			return
		}
		writeJSON(w, code, v)
	}
	fail := func(code int, errs ...string) { status = code; writeErrors(w, code, errs...) }

	list := r.Method == "LIST" || (r.Method == http.MethodGet && r.URL.Query().Get("list") == "true")
	if list && !strings.HasSuffix(path, "/") {
		path += "/" // as Vault does before its policy check (http/logical.go)
	}
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	switch {
	case write && (path == "sys/leases/revoke" || strings.HasPrefix(path, "sys/leases/revoke/")):
		call.Op, call.Arg = "revoke", str("lease_id")
		if call.Arg == "" {
			call.Arg = strings.TrimPrefix(path, "sys/leases/revoke/")
		}
	case write && strings.HasPrefix(path, "sys/leases/revoke-force/"):
		call.Op, call.Arg = "revoke-force", strings.TrimPrefix(path, "sys/leases/revoke-force/")
	case write && path == "sys/leases/lookup":
		call.Op, call.Arg = "lookup", str("lease_id")
	case list && strings.HasPrefix(path, "sys/leases/lookup/"):
		call.Op, call.Arg = "list", strings.TrimPrefix(path, "sys/leases/lookup/")
	case write && strings.HasPrefix(path, "sys/audit-hash/"):
		call.Op, call.Arg = "audit-hash", str("input")
	case r.Method == http.MethodGet && path == "auth/token/lookup-self":
		call.Op = "lookup-self"
	case write && path == "auth/token/renew-self":
		call.Op = "renew-self"
	default:
		fail(http.StatusNotFound)
		return
	}
	if s.sealed {
		fail(http.StatusServiceUnavailable, "Vault is sealed")
		return
	}
	now := s.now()
	tok := s.tokens[call.Token]
	if tok == nil || (!tok.expire.IsZero() && !now.Before(tok.expire)) {
		fail(http.StatusForbidden, "permission denied")
		return
	}
	if tok.Deny[call.Op] || ((call.Op == "revoke-force" || call.Op == "list") && !tok.Sudo) {
		fail(http.StatusForbidden, permissionDenied)
		return
	}
	switch call.Op {
	case "revoke":
		if call.Arg == "" {
			fail(http.StatusBadRequest, "lease_id must be specified")
			return
		}
		l := s.leases[call.Arg]
		if l == nil {
			reply(http.StatusNoContent, nil)
			return
		}
		if l.RevokeFails {
			msg := "failed to revoke entry: resp: (*logical.Response)(nil) err: failed to revoke lease: ERROR: role \"x\" cannot be dropped because some objects depend on it (SQLSTATE 2BP01)"
			if l.RevokeError != "" {
				msg = l.RevokeError
			}
			fail(http.StatusBadRequest, msg)
			return
		}
		delete(s.leases, call.Arg)
		reply(http.StatusNoContent, nil)
	case "revoke-force":
		// As vault/expiration.go revokePrefixCommon: an exact lease id is
		// that lease; otherwise everything under prefix + "/".
		if s.leases[call.Arg] != nil {
			delete(s.leases, call.Arg)
		} else {
			p := strings.TrimSuffix(call.Arg, "/") + "/"
			for id := range s.leases {
				if strings.HasPrefix(id, p) {
					delete(s.leases, id)
				}
			}
		}
		reply(http.StatusNoContent, nil)
	case "lookup":
		if call.Arg == "" {
			fail(http.StatusBadRequest, "lease_id must be specified")
			return
		}
		l := s.leases[call.Arg]
		if l == nil {
			fail(http.StatusBadRequest, "invalid lease")
			return
		}
		data := map[string]any{"id": call.Arg, "issue_time": l.IssueTime.Format(time.RFC3339Nano), "expire_time": nil,
			"last_renewal": nil, "renewable": true, "ttl": 0}
		if !l.ExpireTime.IsZero() {
			data["expire_time"] = l.ExpireTime.Format(time.RFC3339Nano)
			ttl := int64(l.ExpireTime.Sub(now) / time.Second)
			data["ttl"] = max(ttl, 0)
		}
		reply(http.StatusOK, map[string]any{"request_id": "req", "lease_id": "", "renewable": false, "lease_duration": 0,
			"data": data, "wrap_info": nil, "warnings": nil, "auth": nil})
	case "list":
		p := strings.TrimSuffix(call.Arg, "/") + "/"
		seen := map[string]bool{}
		var keys []string
		for id := range s.leases {
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
			fail(http.StatusNotFound)
			return
		}
		sort.Strings(keys)
		reply(http.StatusOK, map[string]any{"request_id": "req", "data": map[string]any{"keys": keys}})
	case "audit-hash":
		dev := strings.Trim(strings.TrimPrefix(path, "sys/audit-hash/"), "/") + "/"
		if call.Arg == "" {
			fail(http.StatusBadRequest, "the \"input\" parameter is empty")
			return
		}
		salt, ok := s.devices[dev]
		if !ok {
			fail(http.StatusBadRequest, "unknown audit backend \""+dev+"\"")
			return
		}
		h := Hash(salt, call.Arg)
		reply(http.StatusOK, map[string]any{"request_id": "req", "data": map[string]any{"hash": h}, "hash": h})
	case "lookup-self":
		var exp any
		ttl := int64(0)
		if !tok.expire.IsZero() {
			exp = tok.expire.UTC().Format(time.RFC3339Nano)
			ttl = int64(tok.expire.Sub(now) / time.Second)
		}
		typ := "service"
		if !tok.Renewable && tok.TTL > 0 {
			typ = "batch"
		}
		reply(http.StatusOK, map[string]any{"request_id": "req", "data": map[string]any{
			"id": call.Token, "accessor": "acc", "creation_ttl": int64(tok.CreationTTL / time.Second), "ttl": ttl,
			"expire_time": exp, "renewable": tok.Renewable, "type": typ, "policies": []string{"leaseguard"},
		}})
	case "renew-self":
		if !tok.Renewable {
			fail(http.StatusBadRequest, "lease is not renewable")
			return
		}
		inc := tok.CreationTTL
		if v := str("increment"); v != "" {
			if d, err := time.ParseDuration(v); err == nil {
				inc = d
			}
		}
		exp := now.Add(inc)
		if tok.MaxTTL > 0 && exp.After(tok.created.Add(tok.MaxTTL)) {
			exp = tok.created.Add(tok.MaxTTL)
		}
		tok.expire = exp
		reply(http.StatusOK, map[string]any{"request_id": "req", "auth": map[string]any{
			"client_token": call.Token, "accessor": "acc", "policies": []string{"leaseguard"},
			"lease_duration": int64(exp.Sub(now) / time.Second), "renewable": true,
		}})
	}
}
