package adminapi

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultRatePerMinute  = 60
	DefaultMaxBodyBytes   = 64 << 10
	DefaultRequestTimeout = 2 * time.Minute
	// DefaultAuthFailures failed authentications from one client address
	// within DefaultAuthFailureWindow turn it away for that window.
	DefaultAuthFailures      = 10
	DefaultAuthFailureWindow = time.Minute
)

// Scope is a permission a principal holds.
type Scope string

const (
	// ScopeRead allows the GET endpoints.
	ScopeRead Scope = "read"
	// ScopeRevoke allows POST /v1/revocations.
	ScopeRevoke Scope = "revoke"
)

// Token is one principal of the token table: its name, the SHA-256 digest of
// its bearer token (the token itself is never stored) and its scopes. A
// verified client certificate whose subject CN is Name gets the same scopes.
type Token struct {
	Name   string
	Digest [sha256.Size]byte
	// CertOnly: the principal has no bearer token and authenticates with a
	// client certificate only (Digest is unused).
	CertOnly bool
	Scopes   []Scope
}

// Has reports whether the token grants scope.
func (t Token) Has(scope Scope) bool { return slices.Contains(t.Scopes, scope) }

// String shows the entry as it is configured.
func (t Token) String() string {
	s := make([]string, len(t.Scopes))
	for i, sc := range t.Scopes {
		s[i] = string(sc)
	}
	if t.CertOnly {
		return t.Name + ":" + certOnly + ":" + strings.Join(s, ",")
	}
	return t.Name + ":sha256:" + hex.EncodeToString(t.Digest[:]) + ":" + strings.Join(s, ",")
}

// certOnly stands for the digest of a principal without a bearer token.
const certOnly = "mtls"

// TokenDigest returns the configuration form of a bearer token's digest,
// "sha256:<64 hex digits>".
func TokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tokenNameRE: names are also matched against client certificate CNs and
// recorded as the actor, so they are plain.
var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`)

// ParseTokens parses the token table:
//
//	ops:sha256:<hex>:read,revoke;dash:sha256:<hex>:read
//
// Entries are separated by ';' (empty entries are ignored); each is a name,
// "sha256:" and the hex SHA-256 of the bearer token, and comma-separated
// scopes (read, revoke). A principal that authenticates with a client
// certificate only has "mtls" instead of the digest: "ci:mtls:read". Names
// and digests must be unique. Errors name the entry by position and name,
// never by its digest.
func ParseTokens(s string) ([]Token, error) {
	var out []Token
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]string{}
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		parts := strings.Split(entry, ":")
		if len(parts) == 3 && strings.TrimSpace(parts[1]) == certOnly {
			parts = []string{parts[0], certOnly, "", parts[2]}
		}
		if len(parts) != 4 {
			return nil, fmt.Errorf("token entry %d: want name:sha256:<hex>:scopes or name:%s:scopes", i+1, certOnly)
		}
		name := strings.TrimSpace(parts[0])
		if !tokenNameRE.MatchString(name) {
			return nil, fmt.Errorf("token entry %d: name %q: use 1 to 128 letters, digits, '.', '_', '@' or '-'", i+1, name)
		}
		t := Token{Name: name}
		switch alg := strings.TrimSpace(parts[1]); alg {
		case certOnly:
			t.CertOnly = true
		case "sha256":
			raw, err := hex.DecodeString(strings.TrimSpace(parts[2]))
			if err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("token %s: the digest is not 64 hex digits (store sha256 of the token, never the token)", name)
			}
			copy(t.Digest[:], raw)
		default:
			return nil, fmt.Errorf("token %s: digest algorithm %q: only sha256 is supported", name, alg)
		}
		for _, sc := range strings.Split(parts[3], ",") {
			sc = strings.TrimSpace(sc)
			switch Scope(sc) {
			case ScopeRead, ScopeRevoke:
				if !t.Has(Scope(sc)) {
					t.Scopes = append(t.Scopes, Scope(sc))
				}
			case "":
			default:
				return nil, fmt.Errorf("token %s: unknown scope %q (want read or revoke)", name, sc)
			}
		}
		if len(t.Scopes) == 0 {
			return nil, fmt.Errorf("token %s: no scope", name)
		}
		if names[name] {
			return nil, fmt.Errorf("token %s: the name is given twice", name)
		}
		if other, dup := digests[t.Digest]; dup && !t.CertOnly {
			return nil, fmt.Errorf("tokens %s and %s have the same digest", other, name)
		}
		names[name] = true
		if !t.CertOnly {
			digests[t.Digest] = name
		}
		out = append(out, t)
	}
	return out, nil
}

// ParseClientCA reads the PEM certificates of the client CA (a bundle may
// hold several). Unlike x509.CertPool.AppendCertsFromPEM, input without a
// certificate is an error rather than a pool that trusts nobody.
func ParseClientCA(pemBytes []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("client CA certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("client CA: no PEM certificate found")
	}
	return pool, nil
}

// Config configures the admin API.
type Config struct {
	// Addr is the listen address; empty leaves the API off.
	Addr string
	// Tokens are the principals: bearer tokens by digest, and the scopes of
	// client certificates by CN.
	Tokens []Token
	// ClientCA, if set, enables mutual TLS: a client certificate signed by
	// it authenticates as its subject CN, a name of Tokens. It requires
	// TLSCert. When every principal is CertOnly, a client certificate is
	// required in the handshake.
	ClientCA *x509.CertPool
	// TLSCert, if set, makes the API serve HTTPS.
	TLSCert tls.Certificate
	// RatePerMinute is the requests allowed per principal and minute, and
	// the burst. Default 60.
	RatePerMinute int
	// MaxBodyBytes bounds request bodies. Default 64 KiB.
	MaxBodyBytes int64
	// RequestTimeout bounds one revocation request: planning and executing
	// (a batch in flight gets the operator's grace on top). Default 2m.
	RequestTimeout time.Duration
	// AuthFailures failed authentications (a wrong token, a certificate of
	// no principal) from one client address within AuthFailureWindow turn
	// that address away (429) for AuthFailureWindow, before any credential
	// it presents is examined. Defaults 10 and 1m. Behind a proxy, every
	// client has the proxy's address.
	AuthFailures      int
	AuthFailureWindow time.Duration
}

// Enabled reports whether the API is configured to listen.
func (c Config) Enabled() bool { return c.Addr != "" }

// HasTLS reports whether a server certificate is configured.
func (c Config) HasTLS() bool { return len(c.TLSCert.Certificate) > 0 }

// Validate checks c. A Config with an empty Addr is valid (the API is off)
// when the rest is.
func (c Config) Validate() error {
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("admin address %q: %w", c.Addr, err)
		}
		if len(c.Tokens) == 0 {
			return errors.New("admin api: no principal configured: give the token table (names, token digests, scopes)")
		}
		if c.ClientCA == nil && !c.hasBearer() {
			return errors.New("admin api: every principal is certificate-only but no client CA is configured")
		}
	}
	if c.ClientCA != nil && !c.HasTLS() {
		return errors.New("admin api: mutual TLS (a client CA) requires a server certificate")
	}
	if c.HasTLS() && c.TLSCert.PrivateKey == nil {
		return errors.New("admin api: the server certificate has no private key")
	}
	names := map[string]bool{}
	for _, t := range c.Tokens {
		if !tokenNameRE.MatchString(t.Name) {
			return fmt.Errorf("admin api: token name %q is not valid", t.Name)
		}
		if names[t.Name] {
			return fmt.Errorf("admin api: token %s is given twice", t.Name)
		}
		names[t.Name] = true
		if len(t.Scopes) == 0 {
			return fmt.Errorf("admin api: token %s has no scope", t.Name)
		}
		for _, sc := range t.Scopes {
			if sc != ScopeRead && sc != ScopeRevoke {
				return fmt.Errorf("admin api: token %s: unknown scope %q", t.Name, sc)
			}
		}
	}
	switch {
	case c.RatePerMinute < 0:
		return fmt.Errorf("admin api: rate %d per minute is negative", c.RatePerMinute)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("admin api: max body bytes %d is negative", c.MaxBodyBytes)
	case c.RequestTimeout < 0:
		return fmt.Errorf("admin api: request timeout %s is negative", c.RequestTimeout)
	case c.AuthFailures < 0:
		return fmt.Errorf("admin api: authentication failures %d is negative", c.AuthFailures)
	case c.AuthFailureWindow < 0:
		return fmt.Errorf("admin api: authentication failure window %s is negative", c.AuthFailureWindow)
	}
	return nil
}

// hasBearer reports whether any principal has a bearer token.
func (c Config) hasBearer() bool {
	for _, t := range c.Tokens {
		if !t.CertOnly {
			return true
		}
	}
	return false
}

func (c Config) withDefaults() Config {
	if c.RatePerMinute == 0 {
		c.RatePerMinute = DefaultRatePerMinute
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.AuthFailures == 0 {
		c.AuthFailures = DefaultAuthFailures
	}
	if c.AuthFailureWindow == 0 {
		c.AuthFailureWindow = DefaultAuthFailureWindow
	}
	return c
}
