package adminapi

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestParseTokens(t *testing.T) {
	t.Parallel()
	dOps, dDash := TokenDigest("ops-secret"), TokenDigest("dash-secret")
	hexOps := strings.TrimPrefix(dOps, "sha256:")
	tests := []struct {
		name string
		in   string
		want string // the entries' String()s joined by ";", or part of the error
		err  bool
	}{
		{"two entries", "ops:" + dOps + ":read,revoke;dash:" + dDash + ":read", "ops:" + dOps + ":read,revoke;dash:" + dDash + ":read", false},
		{"spaces and empty entries", " ops : " + dOps + " : revoke , read ; ;", "ops:" + dOps + ":revoke,read", false},
		{"upper-case hex", "ops:sha256:" + strings.ToUpper(hexOps) + ":read", "ops:" + dOps + ":read", false},
		{"repeated scope", "ops:" + dOps + ":read,read", "ops:" + dOps + ":read", false},
		{"certificate only", "ci-bot@example.com:mtls:read", "ci-bot@example.com:mtls:read", false},
		{"empty", "", "", false},
		{"missing scopes", "ops:" + dOps, "want name:sha256", true},
		{"plaintext token", "ops:ops-secret:read", "want name:sha256", true},
		{"other algorithm", "ops:md5:" + hexOps + ":read", `digest algorithm "md5"`, true},
		{"short digest", "ops:sha256:abcd:read", "not 64 hex digits", true},
		{"not hex", "ops:sha256:" + strings.Repeat("z", 64) + ":read", "not 64 hex digits", true},
		{"unknown scope", "ops:" + dOps + ":admin", `unknown scope "admin"`, true},
		{"no scope", "ops:" + dOps + ":", "no scope", true},
		{"bad name", "o ps:" + dOps + ":read", "name", true},
		{"empty name", ":" + dOps + ":read", "name", true},
		{"duplicate name", "ops:" + dOps + ":read;ops:" + dDash + ":read", "given twice", true},
		{"duplicate digest", "ops:" + dOps + ":read;dash:" + dOps + ":read", "same digest", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := ParseTokens(tt.in)
			if tt.err {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("ParseTokens() error = %v, want one containing %q", err, tt.want)
				}
				if strings.Contains(err.Error(), hexOps) {
					t.Errorf("the error shows the digest: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tok := range toks {
				got = append(got, tok.String())
			}
			if strings.Join(got, ";") != tt.want {
				t.Fatalf("got %q, want %q", strings.Join(got, ";"), tt.want)
			}
		})
	}
	toks, err := ParseTokens("ops:" + dOps + ":read,revoke;dash:" + dDash + ":read;ci:mtls:revoke")
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthenticator(toks)
	if tok, ok := a.byToken("ops-secret"); !ok || tok.Name != "ops" || !tok.Has(ScopeRevoke) {
		t.Errorf("ops-secret: %v %v", tok, ok)
	}
	if tok, ok := a.byToken("dash-secret"); !ok || tok.Name != "dash" || tok.Has(ScopeRevoke) {
		t.Errorf("dash-secret: %v %v", tok, ok)
	}
	for _, bad := range []string{"", "ops-secret ", dOps, hexOps} {
		if tok, ok := a.byToken(bad); ok {
			t.Errorf("%q authenticates as %s", bad, tok.Name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	toks, err := ParseTokens("ops:" + TokenDigest("x") + ":read;ci:mtls:read")
	if err != nil {
		t.Fatal(err)
	}
	bearerOnly, certOnly := toks[:1], toks[1:]
	cert := tls.Certificate{Certificate: [][]byte{{1}}, PrivateKey: struct{}{}}
	pool := x509.NewCertPool()
	tests := []struct {
		name string
		cfg  Config
		want string // "" valid
	}{
		{"off", Config{}, ""},
		{"tokens over http", Config{Addr: "127.0.0.1:8443", Tokens: bearerOnly}, ""},
		{"tls and mtls", Config{Addr: ":8443", Tokens: toks, ClientCA: pool, TLSCert: cert}, ""},
		{"mtls only", Config{Addr: ":8443", Tokens: certOnly, ClientCA: pool, TLSCert: cert}, ""},
		{"limits", Config{Addr: ":8443", Tokens: bearerOnly, RatePerMinute: 1, MaxBodyBytes: 1, RequestTimeout: time.Second}, ""},
		{"bad address", Config{Addr: "8443", Tokens: bearerOnly}, "admin address"},
		{"no principals", Config{Addr: ":8443"}, "no principal"},
		{"no principals, a CA", Config{Addr: ":8443", ClientCA: pool, TLSCert: cert}, "no principal"},
		{"cert-only without CA", Config{Addr: ":8443", Tokens: certOnly, TLSCert: cert}, "no client CA"},
		{"mtls without tls", Config{Addr: ":8443", Tokens: toks, ClientCA: pool}, "requires a server certificate"},
		{"certificate without key", Config{Addr: ":8443", Tokens: bearerOnly, TLSCert: tls.Certificate{Certificate: [][]byte{{1}}}}, "no private key"},
		{"duplicate name", Config{Addr: ":8443", Tokens: append(bearerOnly[:1:1], bearerOnly[0])}, "given twice"},
		{"unnamed token", Config{Addr: ":8443", Tokens: []Token{{Scopes: []Scope{ScopeRead}}}}, "not valid"},
		{"scopeless token", Config{Addr: ":8443", Tokens: []Token{{Name: "x"}}}, "no scope"},
		{"unknown scope", Config{Addr: ":8443", Tokens: []Token{{Name: "x", Scopes: []Scope{"admin"}}}}, "unknown scope"},
		{"negative rate", Config{Addr: ":8443", Tokens: bearerOnly, RatePerMinute: -1}, "negative"},
		{"negative body", Config{Addr: ":8443", Tokens: bearerOnly, MaxBodyBytes: -1}, "negative"},
		{"negative timeout", Config{Addr: ":8443", Tokens: bearerOnly, RequestTimeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	d := Config{}.withDefaults()
	if d.RatePerMinute != 60 || d.MaxBodyBytes != 64<<10 || d.RequestTimeout != 2*time.Minute {
		t.Errorf("defaults %+v", d)
	}
}

func TestParseClientCA(t *testing.T) {
	t.Parallel()
	a, b := newCA(t, "a"), newCA(t, "b")
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.cert.Raw})...)
	pool, err := ParseClientCA(bundle)
	if err != nil {
		t.Fatal(err)
	}
	for _, ca := range []*testCA{a, b} {
		leaf := ca.issue(t, "ops", false).Leaf
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("a certificate of %s: %v", ca.cert.Subject.CommonName, err)
		}
	}
	for name, in := range map[string][]byte{
		"empty":   nil,
		"a key":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
		"garbage": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}),
	} {
		if _, err := ParseClientCA(in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
