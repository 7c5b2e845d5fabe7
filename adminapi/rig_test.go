package adminapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/approval"
	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial struct {
	sync.Mutex
	n int64
}

// issue makes a leaf certificate: a client certificate named cn, or, with
// server, one for 127.0.0.1.
func (ca *testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	sn := serial.n + 1
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// syncBuffer collects log output from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// rig is a state store in its own schema, the test database as target
// "main", an operator service whose revoker manages only roles named
// v-<tag>-…, so no role of another test can ever be selected, a token
// table, and the CAs of server and client certificates.
type rig struct {
	ctx      context.Context
	st       *store.Store
	admin    *pgxpool.Pool
	svc      *operator.Service
	approve  *approval.Approvals
	policies *rollout.Policies
	signer   *revoker.Signer
	tag      string
	sim      *vaultsim.Sim
	logs     *syncBuffer
	logger   *slog.Logger
	tokens   map[string]string // name → the bearer token itself
	table    []Token
	serverCA *testCA
	clientCA *testCA
	server   tls.Certificate
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, "lg_adminapi")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := &rig{ctx: ctx, st: st, admin: pgtest.Pool(t), tag: pgtest.Suffix()[:8], logs: &syncBuffer{}}
	r.logger = slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	guard := revoker.GuardConfig{ManagedPattern: regexp.MustCompile("^v-" + r.tag + "-")}
	r.sim = &vaultsim.Sim{Pool: r.admin, Mount: "pg-" + r.tag, DisplayName: r.tag, EntityID: "ent-" + r.tag, RemoteAddress: "10.0.0.1"}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := revoker.NewSigner(priv)
	verifier, err := revoker.NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	dropper, err := revoker.NewDropper(revoker.DropperConfig{Guard: guard})
	if err != nil {
		t.Fatal(err)
	}
	targets := target.Pools{"main": r.admin}
	issuer, err := revoker.NewIssuer(signer, targets, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: dropper, Verifier: verifier,
		Targets: targets, State: st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"}})
	if err != nil {
		t.Fatal(err)
	}
	r.svc, err = operator.New(operator.Deps{State: st.Pool(), Targets: targets, Guard: guard,
		Executor: exec, Issuer: issuer, Backoff: 10 * time.Millisecond, Logger: r.logger})
	if err != nil {
		t.Fatal(err)
	}

	r.signer = signer
	r.approve, err = approval.NewApprovals(approval.ApprovalDeps{State: st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"},
		Executor: exec, Issuer: issuer, Backoff: 10 * time.Millisecond, Logger: r.logger})
	if err != nil {
		t.Fatal(err)
	}

	r.policies = rollout.New(st.Pool(), evidence.Builder{Source: "urn:leaseguard:test"}, rollout.Spec{}).WithGuard(guard)
	if _, err := r.policies.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}

	r.tokens = map[string]string{}
	var spec []string
	for _, e := range []struct{ name, scopes string }{{"ops", "read,revoke"}, {"dash", "read"}, {"writer", "revoke"}} {
		var b [24]byte
		_, _ = rand.Read(b[:])
		tok := "lgt_" + hex.EncodeToString(b[:])
		r.tokens[e.name] = tok
		spec = append(spec, e.name+":"+TokenDigest(tok)+":"+e.scopes)
	}
	if r.table, err = ParseTokens(strings.Join(spec, ";")); err != nil {
		t.Fatal(err)
	}
	r.serverCA, r.clientCA = newCA(t, "server ca "+r.tag), newCA(t, "client ca "+r.tag)
	r.server = r.serverCA.issue(t, "leaseguard admin", true)
	return r
}

// config is a TLS + mTLS configuration on a free loopback port.
func (r *rig) config() Config {
	return Config{Addr: "127.0.0.1:0", Tokens: r.table, ClientCA: r.clientCA.pool, TLSCert: r.server}
}

// start builds and starts a server whose every response is checked against
// the OpenAPI document by ck (nil: a fresh checker); it returns the server
// and its base URL.
func (r *rig) start(t *testing.T, cfg Config, clock func() time.Time, ck *checker) (*Server, string) {
	t.Helper()
	if ck == nil {
		ck = newChecker(t)
	}
	s, err := New(cfg, Deps{Operator: r.svc, Approvals: r.approve, State: r.st.Pool(), Rollout: r.policies, Registerer: prometheus.NewRegistry(), Logger: r.logger, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	s.srv.Handler = ck.wrap(s.srv.Handler)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	scheme := "http"
	if cfg.HasTLS() {
		scheme = "https"
	}
	return s, scheme + "://" + s.Addr()
}

// client trusts the rig's server CA and presents cert, if given.
func (r *rig) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: r.serverCA.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// call is one request of a test.
type call struct {
	method, path string
	token        string // the bearer token, "" for none
	body         string
	contentType  string // default application/json when there is a body
	header       map[string]string
}

type reply struct {
	code   int
	header http.Header
	body   []byte
}

func (rp reply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(rp.body, v); err != nil {
		t.Fatalf("decode %s: %v", rp.body, err)
	}
}

func do(t *testing.T, c *http.Client, base string, cl call) reply {
	t.Helper()
	rp, err := try(c, base, cl)
	if err != nil {
		t.Fatalf("%s %s: %v", cl.method, cl.path, err)
	}
	return rp
}

func try(c *http.Client, base string, cl call) (reply, error) {
	var body io.Reader
	if cl.body != "" {
		body = strings.NewReader(cl.body)
	}
	req, err := http.NewRequest(cl.method, base+cl.path, body)
	if err != nil {
		return reply{}, err
	}
	if cl.body != "" {
		ct := cl.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if cl.token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.token)
	}
	for k, v := range cl.header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: b}, nil
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// issue creates a Vault-shaped user and records its lease as issued.
func (r *rig) issue(t *testing.T, role, entity string) vaultsim.Cred {
	t.Helper()
	c, _, err := r.sim.Issue(r.ctx, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, c.Username)
	now := time.Now().UTC()
	r.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: c.LeaseID,
		Mount: r.sim.Mount, Role: role, Database: "main", DBUser: c.Username, IssueTime: &now, EventTime: now,
		EntityID: entity, TokenAccessor: "hmac-sha256:acc-" + r.tag, VaultRequestID: "req-" + c.LeaseID[len(c.LeaseID)-6:],
		Source: schemas.SourceRef{Transport: "file", Offset: 1}})
	return c
}

func (r *rig) apply(t *testing.T, ev schemas.LeaseEvent) {
	t.Helper()
	if _, err := r.st.Apply(r.ctx, store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) exists(t *testing.T, name string) bool {
	t.Helper()
	var ok bool
	if err := r.admin.QueryRow(r.ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// addFinding records a finding with its evidence, as the detectors do.
func (r *rig) addFinding(t *testing.T, id, rule, dbUser string, at time.Time) string {
	t.Helper()
	f := schemas.Finding{Type: schemas.FindingType, ID: id, Rule: rule, Severity: schemas.SeverityHigh, Mode: schemas.ModeObserve,
		DetectedAt: at.UTC(), Database: "main", DBUser: dbUser, Summary: "test finding " + id, Action: schemas.ActionNone,
		Facts: map[string]any{"n": 1}}
	ev, err := evidence.Builder{Source: "urn:leaseguard:test"}.Finding(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(r.ctx, r.st.Pool(), func(tx pgx.Tx) error {
		ev, err = evidence.Append(r.ctx, tx, ev)
		if err != nil {
			return err
		}
		_, err = store.InsertFinding(r.ctx, tx, f, ev.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev.ID
}

// pend holds a revocation of user c for approval, as the expiry detector in
// approve mode does (its unsigned proposal, a pending row), and returns its
// id.
func (r *rig) pend(t *testing.T, c vaultsim.Cred, ttl time.Duration) string {
	t.Helper()
	now := time.Now().UTC()
	sum := sha256.Sum256([]byte(r.tag + c.Username))
	id := hex.EncodeToString(sum[:16])
	cmd := schemas.RevocationCommand{ID: id, Action: schemas.ActionDropRole, Issuer: "detector",
		Rule: "lease-expired-not-revoked", FindingID: "f-" + id, Database: "main", DBUser: c.Username, LeaseID: c.LeaseID,
		Reason:        "lease " + c.LeaseID + " expired",
		Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByVaultLookup, CheckedAt: now, Detail: "Vault no longer holds the lease"}}
	sig, err := r.signer.SignProposal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pending.Insert(r.ctx, r.st.Pool(), []pending.Revocation{{ID: id, FindingID: cmd.FindingID, Rule: cmd.Rule,
		Severity: schemas.SeverityHigh, Database: "main", DBUser: c.Username, LeaseID: c.LeaseID, Summary: cmd.Reason,
		Command: cmd, ProposalSignature: sig, RequestedAt: now, ExpiresAt: now.Add(ttl)}})
	if err != nil {
		t.Fatal(err)
	}
	return id
}
