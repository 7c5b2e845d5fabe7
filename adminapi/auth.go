package adminapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// principal is who a request authenticated as.
type principal struct {
	Token
	// via is how: "token" or "client_certificate".
	via string
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) (principal, bool) {
	p, ok := ctx.Value(principalKey{}).(principal)
	return p, ok
}

// authenticator resolves credentials to principals of the token table.
type authenticator struct {
	tokens []Token
	byName map[string]Token
}

func newAuthenticator(tokens []Token) *authenticator {
	a := &authenticator{tokens: tokens, byName: make(map[string]Token, len(tokens))}
	for _, t := range tokens {
		a.byName[t.Name] = t
	}
	return a
}

// authenticate returns the request's principal, or the reason (a
// Denied… constant) it has none. A bearer token, when given, decides: a
// wrong one is refused even over a valid client certificate. Otherwise a
// client certificate verified against the client CA names the principal by
// its subject CN, which must be a name of the token table.
func (a *authenticator) authenticate(r *http.Request) (principal, string) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return principal{}, DeniedInvalidToken
		}
		if t, ok := a.byToken(tok); ok {
			return principal{Token: t, via: "token"}, ""
		}
		return principal{}, DeniedInvalidToken
	}
	if cn, ok := clientCN(r); ok {
		if t, ok := a.byName[cn]; ok {
			return principal{Token: t, via: "client_certificate"}, ""
		}
		return principal{}, DeniedUnknownClientCert
	}
	return principal{}, DeniedMissingCredentials
}

// byToken finds the entry whose digest is the token's, comparing every
// entry in constant time.
func (a *authenticator) byToken(tok string) (Token, bool) {
	sum := sha256.Sum256([]byte(tok))
	match := -1
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].Digest[:]) == 1 && !a.tokens[i].CertOnly {
			match = i
		}
	}
	if match < 0 {
		return Token{}, false
	}
	return a.tokens[match], true
}

// clientCN is the subject CN of the verified client certificate, if the
// TLS handshake verified one.
func clientCN(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}

// certCN is the CN of the client certificate presented, verified or not,
// for logs.
func certCN(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName
}

// limiters hold one token bucket per principal: perMinute requests a
// minute, perMinute at once.
type limiters struct {
	perMinute int
	mu        sync.Mutex
	byName    map[string]*rate.Limiter
}

func newLimiters(perMinute int) *limiters {
	return &limiters{perMinute: perMinute, byName: map[string]*rate.Limiter{}}
}

// allow takes a token for name at now; when none is left it returns false
// and how long until one is.
func (l *limiters) allow(name string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	lim, ok := l.byName[name]
	if !ok {
		lim = rate.NewLimiter(rate.Every(time.Minute/time.Duration(l.perMinute)), l.perMinute)
		l.byName[name] = lim
	}
	l.mu.Unlock()
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Minute
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// retryAfter is d in whole seconds, at least 1, for Retry-After.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
