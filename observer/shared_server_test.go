package observer_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// shared are two databases of the test server, made once for this test
// binary by the first test that needs them and dropped by TestMain: two
// targets on one PostgreSQL server, as an operator with one database per
// application configures them.
var shared struct {
	once sync.Once
	dbs  *pgtest.Databases
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.dbs.Drop()
	os.Exit(code)
}

func sharedDatabases(t *testing.T) *pgtest.Databases {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.dbs, shared.err = pgtest.CreateDatabases(ctx, 2)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.dbs
}

// sharedRig is leaseguard over targets "app-a" and "app-b", two databases
// of one server, with a clock of its own (the observer's, the rules' and
// the fake Vault's) so that graces pass without waiting.
type sharedRig struct {
	*env
	now   time.Time
	clock func() time.Time
	vault *vaulttest.Server
	mu    sync.Mutex
}

func newSharedRig(t *testing.T) *sharedRig {
	t.Helper()
	ctx := context.Background()
	dbs := sharedDatabases(t)
	schema := pgtest.Schema(t, "lg_shared")
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ts, err := target.Open(ctx, target.Config{Targets: []target.Target{
		{Name: "app-a", URL: dbs.URL(dbs.Names[0])}, {Name: "app-b", URL: dbs.URL(dbs.Names[1])}},
		Routes: []target.Route{{Pattern: "postgres/reporting-b", Target: "app-b"}, {Pattern: "postgres/*", Target: "app-a"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	display := pgtest.Suffix()[:8]
	admin := pgtest.Pool(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	r := &sharedRig{now: time.Now().UTC().Truncate(time.Second)}
	r.clock = func() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return r.now }
	r.env = &env{
		admin: admin, st: st, targets: ts,
		pattern: regexp.MustCompile("^v-" + display + "-"),
		sim: &vaultsim.Sim{Pool: admin, Mount: "postgres", DisplayName: display, EntityID: "ent-" + display,
			RemoteAddress: "10.9.8.7", Clock: r.clock},
		signer:  revoker.NewSigner(priv),
		builder: evidence.Builder{Source: "urn:leaseguard:test"},
	}
	r.vault = vaulttest.New(t, r.clock)
	r.vault.AddToken("hvs.lg", vaulttest.Token{Renewable: true, Sudo: true})
	return r
}

func (r *sharedRig) advance(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = r.now.Add(d)
}

// rules are the observer's rules in the given modes, asking the fake Vault
// before they destroy, with the revoker in the loop.
func (r *sharedRig) rules(t *testing.T, modes string) *detectors.DBRules {
	t.Helper()
	m, err := detectors.ParseModes(modes)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vaultlink.New(vaultlink.Config{Addr: r.vault.URL, Token: "hvs.lg"}, vaultlink.Deps{Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := revoker.NewIssuer(r.signer, r.targets, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := detectors.NewDBRules(detectors.DBRulesConfig{Modes: m, Scope: detectors.Everywhere(), ManagedPattern: r.pattern},
		detectors.DBRulesDeps{Issuer: issuer, Sink: r.executorSink(t), Evidence: r.builder,
			Vault: &detectors.VaultVerify{Leases: c, Recheck: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func (r *sharedRig) observer(t *testing.T, rules observer.Rules) *observer.Observer {
	t.Helper()
	o, err := observer.New(observer.Config{Interval: time.Second, ManagedPattern: r.pattern, Databases: []string{"app-a", "app-b"}},
		observer.Deps{Store: r.st, Targets: r.targets, Rules: rules, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Release(context.Background()) })
	return o
}

// passBoth makes one pass over each target, A first.
func passBoth(t *testing.T, ctx context.Context, o *observer.Observer) {
	t.Helper()
	passEach(t, ctx, o, "app-a", "app-b")
}

// passEach makes one pass over each of dbs, in order.
func passEach(t *testing.T, ctx context.Context, o *observer.Observer, dbs ...string) {
	t.Helper()
	for _, db := range dbs {
		if _, err := o.Pass(ctx, db); err != nil {
			t.Fatalf("pass over %s: %v", db, err)
		}
	}
}

// issueOn creates a Vault-style user for target db and records its lease
// in the ledger; hashed: the ledger knows its user only by an HMAC (an
// untuned mount's audit log). The lease is also live in the fake Vault.
func (r *sharedRig) issueOn(t *testing.T, ctx context.Context, db, role string, hashed bool) vaultsim.Cred {
	t.Helper()
	c, _, err := r.sim.Issue(ctx, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, c.Username)
	issued := r.clock()
	user := c.Username
	if hashed {
		user = r.sim.HMAC(c.Username)
	}
	r.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: c.LeaseID, Mount: "postgres",
		Role: role, Database: db, DBUser: user, DBUserHMAC: hashed, DisplayName: r.sim.DisplayName, IssueTime: &issued,
		ExpireTime: &c.Expire, ExpireSource: schemas.ExpireFromEvent, EventTime: issued, EntityID: r.sim.EntityID,
		RemoteAddress: r.sim.RemoteAddress, VaultRequestID: "req-" + c.LeaseID, Source: schemas.SourceRef{Transport: "test"}})
	r.vault.AddLease(c.LeaseID, vaulttest.Lease{IssueTime: issued, ExpireTime: c.Expire})
	return c
}

// findingsOf lists every finding that names user, whatever its rule.
func (r *sharedRig) findingsOf(t *testing.T, user string) []schemas.Finding {
	t.Helper()
	rows, err := r.st.Pool().Query(context.Background(), `SELECT finding FROM findings WHERE finding->>'db_user' = $1 ORDER BY detected_at`, user)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[schemas.Finding])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSharedServerFindsRoleOnce: a role of a server two targets share is
// judged once for the server, not once per target. The role outlived its
// lease on target A (revoked 10 minutes ago, its password expired in the
// database): one orphan-role finding, whichever target's pass saw it.
func TestSharedServerFindsRoleOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := newSharedRig(t)
	cred := r.issueOn(t, ctx, "app-a", "reporting", false)
	if _, err := r.admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{cred.Username}.Sanitize()+" VALID UNTIL '2000-01-01'"); err != nil {
		t.Fatal(err)
	}
	revokedAt := r.clock().Add(-10 * time.Minute)
	r.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: cred.LeaseID,
		RevokeBy: schemas.RevokeByPath, EventTime: revokedAt, VaultRequestID: "req-revoke", Source: schemas.SourceRef{Transport: "test"}})
	o := r.observer(t, r.rules(t, ""))

	passBoth(t, ctx, o)
	r.advance(10 * time.Second)
	passBoth(t, ctx, o)

	fs := r.findingsOf(t, cred.Username)
	if len(fs) != 1 || fs[0].Rule != detectors.RuleOrphanRole {
		var got []string
		for _, f := range fs {
			got = append(got, f.Rule+" via "+f.Database)
		}
		t.Fatalf("findings about %s: %d (%s), want one orphan-role for the server", cred.Username, len(fs), strings.Join(got, ", "))
	}
	if fs[0].Facts["server_targets"] == nil {
		t.Errorf("the finding does not say which targets share the server: %+v", fs[0].Facts)
	}
}

// TestSiblingLeaseProtectsUser: a user Vault issued for target A, with a
// live lease the ledger knows only by its user's HMAC (an untuned mount),
// is seen in pg_roles by target B's observer too. Target B has leases of
// its own (another Vault role of the same mount), none of them this
// user's. In enforce mode, with Vault asked before anything is destroyed,
// the user must stay: its lease is target A's, and the role is the
// server's.
func TestSiblingLeaseProtectsUser(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := newSharedRig(t)
	// Target B's own users: the ledger routes postgres/creds/reporting-b
	// to it.
	other := r.issueOn(t, ctx, "app-b", "reporting-b", false)
	o := r.observer(t, r.rules(t, "orphan-role=enforce,credential-reuse-unknown-lease=enforce"))
	passBoth(t, ctx, o) // the baseline

	r.advance(time.Second)
	valid := r.issueOn(t, ctx, "app-a", "reporting-a", true)
	exact := r.issueOn(t, ctx, "app-a", "reporting-a", false)
	pid := r.connect(t, ctx, exact, 0) // a session in app-a's database
	r.advance(time.Second)
	passBoth(t, ctx, o) // both users first seen, created after the watermark
	r.advance(5 * time.Minute)
	passBoth(t, ctx, o) // past every grace
	r.advance(time.Minute)
	passBoth(t, ctx, o)

	for _, c := range []vaultsim.Cred{valid, exact, other} {
		if !r.roleExists(t, c.Username) {
			t.Errorf("user %s, whose lease is live, was dropped", c.Username)
		}
		for _, f := range r.findingsOf(t, c.Username) {
			t.Errorf("finding about user %s, whose lease is live: %s via %s, action %s: %s", c.Username, f.Rule, f.Database, f.Action, f.Summary)
		}
	}
	revs, err := store.RevocationsByUser(ctx, r.st.Pool(), "app-b", valid.Username)
	if err != nil || len(revs) != 0 {
		t.Errorf("revocations of %s through app-b = %+v, %v", valid.Username, revs, err)
	}
	// Sessions stay the database's: only app-a's observer tracks it.
	if got := r.sessionTargets(t, pid); len(got) != 1 || got[0] != "app-a" {
		t.Errorf("session %d of app-a's database tracked by %v", pid, got)
	}
}

// TestSiblingVaultLeaseProtectsUser: a user Vault issued for target A whose
// lease the ledger has not learned of (its audit entry is late) is judged
// by target B as having no lease. Before it destroys, B asks Vault about
// the creds paths of every target on the server: Vault holds a live lease
// under A's path that nothing attributes to another user, so nothing is
// dropped, through either target.
func TestSiblingVaultLeaseProtectsUser(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := newSharedRig(t)
	// The ledger routes postgres/creds/reporting-b to app-b and
	// postgres/creds/reporting-a to app-a (others' users).
	r.issueOn(t, ctx, "app-b", "reporting-b", false)
	r.issueOn(t, ctx, "app-a", "reporting-a", false)
	o := r.observer(t, r.rules(t, "orphan-role=enforce,credential-reuse-unknown-lease=enforce"))
	passBoth(t, ctx, o)

	r.advance(time.Second)
	c, _, err := r.sim.Issue(ctx, "reporting-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, c.Username)
	r.vault.AddLease(c.LeaseID, vaulttest.Lease{IssueTime: r.clock(), ExpireTime: c.Expire})
	r.advance(time.Second)
	passBoth(t, ctx, o)
	// Target B judges first: what Vault said to A's pass is not reused.
	r.advance(5 * time.Minute)
	passEach(t, ctx, o, "app-b", "app-a")

	if !r.roleExists(t, c.Username) {
		t.Fatalf("user %s, whose lease Vault holds live under app-a's creds path, was dropped", c.Username)
	}
	for _, f := range r.findingsOf(t, c.Username) {
		if f.Action == schemas.ActionRevocationRequested {
			t.Errorf("drop requested through %s: %s", f.Database, f.Summary)
		}
	}
}

// connect opens a session as c in target db's database (trust on the
// loopback) and returns its pid.
func (r *sharedRig) connect(t *testing.T, ctx context.Context, c vaultsim.Cred, db int) uint32 {
	t.Helper()
	cfg, err := pgx.ParseConfig(sharedDatabases(t).URL(sharedDatabases(t).Names[db]))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = c.Username, c.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", c.Username, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn.PgConn().PID()
}

// sessionTargets lists the targets whose observer tracks session pid.
func (r *sharedRig) sessionTargets(t *testing.T, pid uint32) []string {
	t.Helper()
	rows, err := r.st.Pool().Query(context.Background(), `SELECT database FROM db_sessions WHERE pid = $1 ORDER BY database`, int32(pid))
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRevokerRefusesSiblingsUser: whatever a rule concluded, the revoker
// does not let target B drop a user the ledger holds a live lease for under
// target A (a role is the server's): the command is refused, recorded, and
// the user stays. The same command through target A, whose lease it is,
// is not refused by that guard.
func TestRevokerRefusesSiblingsUser(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := newSharedRig(t)
	cred := r.issueOn(t, ctx, "app-a", "reporting-a", false)
	issuer, err := revoker.NewIssuer(r.signer, r.targets, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := revoker.NewVerifier(r.signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	d, err := revoker.NewDropper(revoker.DropperConfig{Guard: revoker.GuardConfig{ManagedPattern: r.pattern}})
	if err != nil {
		t.Fatal(err)
	}
	x, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: d, Verifier: v, Targets: r.targets, State: r.st.Pool(), Evidence: r.builder})
	if err != nil {
		t.Fatal(err)
	}
	drop := func(db string) revoker.Executed {
		cmd := schemas.RevocationCommand{ID: "orphan-via-" + db + "-" + pgtest.Suffix(), Action: schemas.ActionDropRole, Issuer: "detector",
			Rule: detectors.RuleOrphanRole, Database: db, DBUser: cred.Username, Reason: "no lease of " + db + " accounts for it",
			Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByVaultLookup, CheckedAt: time.Now().UTC(), Detail: "test"}}
		cmds := []schemas.RevocationCommand{cmd}
		if err := issuer.Issue(ctx, cmds); err != nil {
			t.Fatal(err)
		}
		return x.Execute(ctx, cmds, nil)[0]
	}
	got := drop("app-b")
	if got.Result.Outcome != schemas.OutcomeRefused || got.Result.Guard != revoker.GuardSiblingLease || !got.Recorded {
		t.Errorf("drop through app-b: %+v (err %v)", got.Result, got.Err)
	}
	if !r.roleExists(t, cred.Username) {
		t.Fatalf("target app-b dropped user %s, whose lease under app-a is live", cred.Username)
	}
	if got := drop("app-a"); got.Result.Guard == revoker.GuardSiblingLease {
		t.Errorf("drop through app-a, whose lease it is, refused by %s: %+v", revoker.GuardSiblingLease, got.Result)
	}
}

// TestSiblingEvaluationsTakeTurns: the evaluations of the targets of one
// server take turns (the state store's lock of the server), so that each
// sees what the one before recorded: two passes at once, in two processes
// or one, cannot both find a role. While the lock is held elsewhere, a
// pass over app-b waits; once released, it completes.
func TestSiblingEvaluationsTakeTurns(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := newSharedRig(t)
	o := r.observer(t, r.rules(t, ""))
	passBoth(t, ctx, o)

	var key string
	if err := r.admin.QueryRow(ctx, `SELECT 'postgres:' || (SELECT system_identifier FROM pg_control_system())::text || ':' || current_setting('port')`).Scan(&key); err != nil {
		t.Fatal(err)
	}
	holder, err := r.st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback(context.Background()) }()
	var lockKey int64
	if err := holder.QueryRow(ctx, `SELECT `+detectors.ServerLockKeySQL, key).Scan(&lockKey); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, detectors.ServerLockSQL, key); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	r.advance(time.Second)
	go func() { _, err := o.Pass(ctx, "app-b"); done <- err }()
	waitFor(t, 20*time.Second, "the pass over app-b waiting for the server's lock", func() bool {
		var n int
		_ = r.admin.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND classid = (($1::int8 >> 32) & 4294967295)::oid AND objid = ($1::int8 & 4294967295)::oid AND objsubid = 1`, lockKey).Scan(&n)
		return n == 1
	})
	select {
	case err := <-done:
		t.Fatalf("the pass over app-b ended while another evaluation held the server: %v", err)
	default:
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("pass over app-b after the lock was released: %v", err)
	}
}

// passRecorder is rules that keep the passes they are handed.
type passRecorder struct {
	mu     sync.Mutex
	passes map[string]*observed.Pass
}

func (p *passRecorder) Evaluate(_ context.Context, _ pgx.Tx, pass *observed.Pass) (observed.Report, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.passes[pass.Database] = pass
	return observed.Report{}, nil
}

// TestServerOfEachEngine: two MySQL targets that reach one MariaDB server
// (by two addresses) are told to share it, as its accounts are the
// server's; a PostgreSQL target beside them is on a server of its own.
func TestServerOfEachEngine(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t)
	ts, err := target.Open(ctx, target.Config{Targets: []target.Target{
		{Name: "maria-a", URL: mysqlURL}, {Name: "maria-b", URL: "mysql://root@localhost:3306/"}, {Name: "main", URL: pgtest.URL()}},
		Routes: []target.Route{{Pattern: "*", Target: "main"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	rec := &passRecorder{passes: map[string]*observed.Pass{}}
	o, err := observer.New(observer.Config{Interval: time.Second, ManagedPattern: e.pattern},
		observer.Deps{Store: e.st, Targets: ts, Rules: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Release(context.Background()) })
	passEach(t, ctx, o, "maria-a", "maria-b", "main")
	a, b, pg := rec.passes["maria-a"], rec.passes["maria-b"], rec.passes["main"]
	if !strings.HasPrefix(a.Server, "mariadb:") && !strings.HasPrefix(a.Server, "mysql:") || a.Server != b.Server ||
		!slices.Equal(a.ServerTargets, []string{"maria-a", "maria-b"}) || a.RoleScope() != "maria-a" || b.RoleScope() != "maria-a" {
		t.Errorf("MySQL passes: %q %v, %q %v", a.Server, a.ServerTargets, b.Server, b.ServerTargets)
	}
	if !strings.HasPrefix(pg.Server, "postgres:") || !slices.Equal(pg.ServerTargets, []string{"main"}) || pg.RoleScope() != "main" {
		t.Errorf("PostgreSQL pass: %q %v", pg.Server, pg.ServerTargets)
	}
}
