package observer_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// env is one test's leaseguard: its own state-store schema, the test
// server as target "main", and Vault-style users whose names only this test
// uses. PostgreSQL roles and sessions are cluster-wide and other packages'
// tests run alongside: every rule here is limited to this test's users
// (the managed pattern), and ghosts unknown to the observer are never
// ended.
type env struct {
	admin   *pgxpool.Pool
	st      *store.Store
	targets *target.Set
	pattern *regexp.Regexp
	sim     *vaultsim.Sim
	signer  *revoker.Signer
	builder evidence.Builder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	schema := pgtest.Schema(t, "lg_observer")
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ts, err := target.Open(ctx, target.Config{Targets: []target.Target{{Name: "main", URL: pgtest.URL()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	display := pgtest.Suffix()[:8]
	admin := pgtest.Pool(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &env{
		admin: admin, st: st, targets: ts,
		pattern: regexp.MustCompile("^v-" + display + "-"),
		sim:     &vaultsim.Sim{Pool: admin, Mount: "postgres", DisplayName: display, EntityID: "ent-" + display, RemoteAddress: "10.9.8.7"},
		signer:  revoker.NewSigner(priv),
		builder: evidence.Builder{Source: "urn:leaseguard:test"},
	}
}

// issue creates a Vault-style user, records its lease as issued in the
// ledger, and connects as it (trust authentication on the loopback).
func (e *env) issue(t *testing.T, ctx context.Context) (vaultsim.Cred, *pgx.Conn) {
	t.Helper()
	c, _, err := e.sim.Issue(ctx, "reporting", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, e.admin, c.Username)
	issued := time.Now().UTC()
	exp := c.Expire
	e.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: c.LeaseID, Mount: "postgres",
		Role: "reporting", Database: "main", DBUser: c.Username, IssueTime: &issued, ExpireTime: &exp, ExpireSource: schemas.ExpireFromEvent,
		EventTime: issued, EntityID: e.sim.EntityID, RemoteAddress: e.sim.RemoteAddress, VaultRequestID: "req-" + c.LeaseID,
		Source: schemas.SourceRef{Transport: "test"}})
	cfg, err := pgx.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = c.Username, c.Password
	cfg.RuntimeParams["application_name"] = "reporting-job"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", c.Username, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return c, conn
}

func (e *env) apply(t *testing.T, ev schemas.LeaseEvent) {
	t.Helper()
	if _, err := e.st.Apply(context.Background(), store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
}

// sinkFunc adapts a function to detectors.CommandSink.
type sinkFunc func(ctx context.Context, cmds []schemas.RevocationCommand) error

func (f sinkFunc) Submit(ctx context.Context, cmds []schemas.RevocationCommand) error {
	return f(ctx, cmds)
}

// executorSink runs commands through the revoker at once: the revoker in the
// loop without a queue.
func (e *env) executorSink(t *testing.T) detectors.CommandSink {
	t.Helper()
	v, err := revoker.NewVerifier(e.signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	d, err := revoker.NewDropper(revoker.DropperConfig{Guard: revoker.GuardConfig{ManagedPattern: e.pattern}})
	if err != nil {
		t.Fatal(err)
	}
	x, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: d, Verifier: v, Targets: e.targets, State: e.st.Pool(), Evidence: e.builder})
	if err != nil {
		t.Fatal(err)
	}
	return sinkFunc(func(ctx context.Context, cmds []schemas.RevocationCommand) error {
		for _, r := range x.Execute(ctx, cmds, nil) {
			if r.Retry {
				return fmt.Errorf("revocation %s: %w", r.Command.ID, r.Err)
			}
		}
		return nil
	})
}

func (e *env) rules(t *testing.T, sink detectors.CommandSink) *detectors.DBRules {
	t.Helper()
	issuer, err := revoker.NewIssuer(e.signer, e.targets, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Everywhere: the managed pattern keeps the rules on this test's users.
	r, err := detectors.NewDBRules(detectors.DBRulesConfig{Scope: detectors.Everywhere(), ManagedPattern: e.pattern},
		detectors.DBRulesDeps{Issuer: issuer, Sink: sink, Evidence: e.builder})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) observer(t *testing.T, st *store.Store, interval time.Duration, rules observer.Rules, pub observer.Publisher) *observer.Observer {
	t.Helper()
	o, err := observer.New(observer.Config{Interval: interval, ManagedPattern: e.pattern, Databases: []string{"main"}},
		observer.Deps{Store: st, Targets: e.targets, Rules: rules, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Release(context.Background()) })
	return o
}

func (e *env) findings(t *testing.T, rule string) []schemas.Finding {
	t.Helper()
	rows, err := e.st.Pool().Query(context.Background(), `SELECT finding FROM findings WHERE rule = $1 ORDER BY detected_at`, rule)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[schemas.Finding])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) sessionAlive(t *testing.T, pid uint32) bool {
	t.Helper()
	var n int
	if err := e.admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func (e *env) roleExists(t *testing.T, name string) bool {
	t.Helper()
	var ok bool
	if err := e.admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestReuseAfterRevokeEndsSessionAndDropsRole: a live session of a user
// whose lease the ledger learns was revoked is gone, and the role dropped,
// within two observe intervals, with the revoker in the loop.
func TestReuseAfterRevokeEndsSessionAndDropsRole(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t)
	cred, conn := e.issue(t, ctx)
	pid := conn.PgConn().PID()
	const interval = time.Second
	o := e.observer(t, e.st, interval, e.rules(t, e.executorSink(t)), nil)

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = o.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()
	waitFor(t, 5*time.Second, "the observer's baseline pass", func() bool {
		var n int
		_ = e.st.Pool().QueryRow(ctx, `SELECT count(*) FROM db_sessions WHERE pid = $1`, int32(pid)).Scan(&n)
		return n == 1
	})
	if !e.roleExists(t, cred.Username) || !e.sessionAlive(t, pid) {
		t.Fatal("the user or its session is gone before the revocation")
	}

	// Vault revoked the lease 15 s ago (its clock); its own revocation
	// failed, the user and its session are still there; the ledger learns
	// of it now. The database shows the credential over (rolvaliduntil has
	// passed): that, not the audit entry, is what lets the rule act.
	if _, err := e.admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{cred.Username}.Sanitize()+" VALID UNTIL '2000-01-01'"); err != nil {
		t.Fatal(err)
	}
	revokedAt := time.Now().Add(-15 * time.Second)
	e.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: cred.LeaseID,
		RevokeBy: schemas.RevokeByPath, EventTime: revokedAt, VaultRequestID: "req-revoke", Source: schemas.SourceRef{Transport: "test"}})
	took := waitFor(t, 2*interval, "the session ended and the role dropped", func() bool {
		return !e.sessionAlive(t, pid) && !e.roleExists(t, cred.Username)
	})
	t.Logf("session ended and role dropped %s after the ledger learned of the revocation (interval %s)", took.Round(time.Millisecond), interval)

	waitFor(t, 5*time.Second, "the finding recorded", func() bool { return len(e.findings(t, detectors.RuleReuseAfterRevoke)) == 1 })
	f := e.findings(t, detectors.RuleReuseAfterRevoke)[0]
	if f.Action != schemas.ActionRevocationRequested || f.LeaseID != cred.LeaseID || f.DBUser != cred.Username || f.Facts["lease_state"] != "revoked" {
		t.Errorf("finding = %+v", f)
	}
	revs, err := store.RevocationsByUser(ctx, e.st.Pool(), "main", cred.Username)
	if err != nil || len(revs) != 1 || revs[0].Outcome != schemas.OutcomeDropped || revs[0].Rule != detectors.RuleReuseAfterRevoke ||
		revs[0].CommandID != f.CommandID || revs[0].Result.SessionsTerminated < 1 {
		t.Errorf("revocations = %+v, %v", revs, err)
	}
	if vr, err := evidence.VerifyOutbox(ctx, e.st.Pool(), evidence.VerifyOptions{}); err != nil || !vr.OK() || vr.Checked < 2 {
		t.Errorf("outbox verify = %+v, %v", vr, err)
	}
	// The role dropped by the revoker terminated the session itself: no
	// ghost is left behind.
	if g := e.findings(t, detectors.RuleGhostSession); len(g) != 0 {
		for _, x := range g {
			if x.DBUser == cred.Username {
				t.Errorf("ghost finding for a user the revoker dropped: %+v", x)
			}
		}
	}
}

// TestOneObserverPerTarget: two processes share a ledger; one observes a
// target, the other stands by, and takes over when the first loses its lock.
func TestOneObserverPerTarget(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t)
	other, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: e.st.Schema()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	a := e.observer(t, e.st, time.Second, nil, nil)
	b := e.observer(t, other, time.Second, nil, nil)

	if _, err := a.Pass(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pass(ctx, "main"); !errors.Is(err, observer.ErrNotHolder) {
		t.Fatalf("second observer: %v, want ErrNotHolder", err)
	}
	if !a.Holds("main") || b.Holds("main") {
		t.Fatal("holds: a and b")
	}

	// a's lock session dies: b takes over, a notices at its next pass.
	var holderPID int32
	if err := e.st.Pool().QueryRow(ctx, `SELECT holder_pid FROM observer_targets WHERE database = 'main'`).Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, holderPID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b takes over", func() bool {
		_, err := b.Pass(ctx, "main")
		return err == nil
	})
	if _, err := a.Pass(ctx, "main"); !errors.Is(err, observer.ErrDutyLost) {
		t.Fatalf("a after losing its lock: %v, want ErrDutyLost", err)
	}
	if a.Holds("main") {
		t.Error("a still holds the duty")
	}
	if _, err := a.Pass(ctx, "main"); !errors.Is(err, observer.ErrNotHolder) {
		t.Fatalf("a later: %v, want ErrNotHolder", err)
	}
	// b releases (shutdown): a can take the duty again.
	b.Release(ctx)
	if _, err := a.Pass(ctx, "main"); err != nil {
		t.Fatalf("a after b released: %v", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	c := observer.DefaultConfig()
	if c.Interval != 5*time.Second || c.ManagedPattern.String() != "^v-" || c.SubjectPrefix != "leaseguard.db" || c.Holder == "" {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Subject("orders.eu", "role"); got != "leaseguard.db.orders_eu.role" {
		t.Errorf("subject = %s", got)
	}
	for name, mod := range map[string]func(*observer.Config){
		"negative interval": func(c *observer.Config) { c.Interval = -time.Second },
		"wildcard prefix":   func(c *observer.Config) { c.SubjectPrefix = "leaseguard.*" },
		"empty token":       func(c *observer.Config) { c.SubjectPrefix = "leaseguard..db" },
		"dotted stream":     func(c *observer.Config) { c.Stream = "A.B" },
	} {
		c := observer.DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := observer.New(observer.Config{Databases: []string{"nope"}}, observer.Deps{Store: &store.Store{}, Targets: emptyTargets{}}); err == nil {
		t.Error("unknown target accepted")
	}
}

type emptyTargets struct{}

func (emptyTargets) Names() []string                   { return nil }
func (emptyTargets) Pool(string) (*pgxpool.Pool, bool) { return nil, false }
