package observer_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// mysqlURL is the local MariaDB, root without a password from loopback.
const mysqlURL = "mysql://root@127.0.0.1:3306/"

// myEnv is env with the local MariaDB as target "maria" instead of the
// PostgreSQL one. Its users are named after the test's managed pattern
// and dropped at cleanup; the server is shared with other packages' tests,
// whose users the pattern leaves out.
type myEnv struct {
	*env
	root *sql.DB
	now  time.Time
	mu   sync.Mutex
}

func newMyEnv(t *testing.T) *myEnv {
	t.Helper()
	e := newEnv(t)
	ts, err := target.Open(context.Background(), target.Config{Targets: []target.Target{{Name: "maria", URL: mysqlURL}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	e.targets = ts
	cfg, err := mysql.ParseURL(mysqlURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := sql.OpenDB(conn)
	t.Cleanup(func() { _ = root.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := root.PingContext(ctx); err != nil {
		t.Fatalf("MariaDB at %s is needed for these tests: %v", cfg.Addr, err)
	}
	return &myEnv{env: e, root: root, now: time.Now().UTC()}
}

func (m *myEnv) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.root.ExecContext(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// user creates a managed user of the test ('name'@'%'), dropped at cleanup.
func (m *myEnv) user(t *testing.T, label string) string {
	t.Helper()
	name := "v-" + m.sim.DisplayName + "-" + label
	m.exec(t, `CREATE USER ?@'%' IDENTIFIED BY ?`, name, "pw-"+label)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = m.root.ExecContext(ctx, `DROP USER IF EXISTS ?@'%'`, name)
	})
	return name
}

// connect opens a session as the user over TCP to 127.0.0.1 and returns
// its connection id.
func (m *myEnv) connect(t *testing.T, name, label string) (*sql.Conn, int64) {
	t.Helper()
	cfg, err := mysql.ParseURL(mysqlURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Passwd = name, "pw-"+label
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var id int64
	if err := c.QueryRowContext(ctx, `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return c, id
}

func (m *myEnv) alive(t *testing.T, id int64) bool {
	t.Helper()
	var n int
	if err := m.root.QueryRowContext(context.Background(), `SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = ?`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// clock is the observer's clock: the test moves it.
func (m *myEnv) clock() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

func (m *myEnv) advance(d time.Duration) {
	m.mu.Lock()
	m.now = m.now.Add(d)
	m.mu.Unlock()
}

func (m *myEnv) observer(t *testing.T, rules observer.Rules) *observer.Observer {
	t.Helper()
	o, err := observer.New(observer.Config{Interval: time.Second, ManagedPattern: m.pattern, Databases: []string{"maria"}},
		observer.Deps{Store: m.st, Targets: m.targets, Rules: rules, Clock: m.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Release(context.Background()) })
	return o
}

// pass makes a pass and returns what the rules judged.
func (m *myEnv) pass(t *testing.T, o *observer.Observer, rec *recorder) (observer.PassReport, *observed.Pass) {
	t.Helper()
	rep, err := o.Pass(context.Background(), "maria")
	if err != nil {
		t.Fatal(err)
	}
	return rep, rec.take()
}

// lease records in the ledger a lease issued for name, from 10.9.8.7.
func (m *myEnv) lease(t *testing.T, name string) string {
	t.Helper()
	id := "mysql/creds/reporting/" + name
	issued := time.Now().UTC().Add(-time.Minute)
	exp := issued.Add(time.Hour)
	m.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id, Mount: "mysql",
		Role: "reporting", Database: "maria", DBUser: name, IssueTime: &issued, ExpireTime: &exp, ExpireSource: schemas.ExpireFromEvent,
		EventTime: issued, EntityID: m.sim.EntityID, RemoteAddress: "10.9.8.7", VaultRequestID: "req-" + name,
		Source: schemas.SourceRef{Transport: "test"}})
	return id
}

func sessionOf(p *observed.Pass, id int64) *observed.Session {
	for i := range p.Sessions {
		if int64(p.Sessions[i].PID) == id {
			return &p.Sessions[i]
		}
	}
	return nil
}

func findingsOf(fs []schemas.Finding, user string) []schemas.Finding {
	var out []schemas.Finding
	for _, f := range fs {
		if f.DBUser == user {
			out = append(out, f)
		}
	}
	return out
}

// TestMySQLGhostSessionFoundAndTerminated: a user dropped by a plain DROP
// USER leaves its connection running; the observer finds the ghost, and
// the revoker kills it on the rule's signed command, once the server
// agreed, with evidence.
func TestMySQLGhostSessionFoundAndTerminated(t *testing.T) {
	t.Parallel()
	m := newMyEnv(t)
	name := m.user(t, "ghost")
	lease := m.lease(t, name)
	conn, id := m.connect(t, name, "ghost")
	rec := &recorder{Rules: m.rules(t, m.executorSink(t))}
	o := m.observer(t, rec)

	rep, p := m.pass(t, o, rec)
	s := sessionOf(p, id)
	if !rep.Baseline || s == nil || s.Ghost || s.UserName != name || s.UserOID != mysql.AccountKey(name) ||
		s.ClientAddr != "127.0.0.1" || s.ClientPort == 0 || s.BackendType != "client backend" {
		t.Fatalf("baseline: %+v; session %+v", rep, s)
	}
	if rs := p.Roles; len(rs) != 1 || rs[0].Name != name || rs[0].OID != mysql.AccountKey(name) {
		t.Fatalf("baseline roles: %+v", rs)
	}
	start := s.BackendStart

	m.exec(t, `DROP USER ?@'%'`, name)
	if !m.alive(t, id) {
		t.Fatal("DROP USER ended the session: no ghost")
	}
	m.advance(time.Second)
	rep, p = m.pass(t, o, rec)
	s = sessionOf(p, id)
	fs := findingsOf(rep.Rules.Findings, name)
	if s == nil || !s.Ghost || s.FormerUser != name || !s.BackendStart.Equal(start) || len(fs) != 1 ||
		fs[0].Rule != detectors.RuleGhostSession || rep.Rules.Commands < 1 {
		t.Fatalf("ghost pass: %+v; session %+v; findings %+v", rep, s, fs)
	}
	f := fs[0]
	if f.Facts["termination"] != "requested" || f.LeaseID != lease || f.Mode != schemas.ModeEnforce ||
		!strings.Contains(f.Summary, "no account") || f.Facts["session_start"] == nil {
		t.Errorf("finding = %+v", f)
	}
	waitFor(t, 5*time.Second, "the ghost connection ends", func() bool { return !m.alive(t, id) })
	if err := conn.PingContext(context.Background()); err == nil {
		t.Error("the ghost's connection still answers")
	}
	revs, err := store.RevocationsByUser(context.Background(), m.st.Pool(), "maria", name)
	if err != nil || len(revs) != 1 || revs[0].Outcome != schemas.OutcomeTerminated || revs[0].CommandID != f.CommandID ||
		revs[0].Result.SessionsTerminated != 1 || !strings.Contains(revs[0].Result.Reason, "mysql.user") ||
		fmt.Sprint(revs[0].Result.Statements) != fmt.Sprintf("[KILL CONNECTION %d]", id) {
		t.Fatalf("revocations = %+v, %v", revs, err)
	}
	if vr, err := evidence.VerifyOutbox(context.Background(), m.st.Pool(), evidence.VerifyOptions{}); err != nil || !vr.OK() {
		t.Errorf("outbox verify = %+v, %v", vr, err)
	}
	m.advance(time.Second)
	rep, p = m.pass(t, o, rec)
	if s := sessionOf(p, id); s != nil || len(findingsOf(rep.Rules.Findings, name)) != 0 {
		t.Fatalf("after termination: session %+v, findings %+v", s, rep.Rules.Findings)
	}
}

// TestMySQLLiveSessionNeverKilled: a signed terminate_session command for
// the session of an account that exists (forged, or racing a CREATE USER)
// is refused by the revoker: the server disagrees, nothing is killed.
func TestMySQLLiveSessionNeverKilled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := newMyEnv(t)
	name := m.user(t, "live")
	_, id := m.connect(t, name, "live")
	obs, err := func() (mysql.Observation, error) {
		e, _ := m.targets.Engine("maria")
		return e.(*mysql.Engine).Observe(ctx)
	}()
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := revoker.NewIssuer(m.signer, m.targets, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd := schemas.RevocationCommand{ID: "forged-" + name, Issuer: "detector", Rule: detectors.RuleGhostSession,
		Action: schemas.ActionTerminateSession, Database: "maria", DBUser: name,
		Session:       &schemas.SessionRef{PID: int32(id), BackendStart: obs.ServerStart, UserOID: mysql.AccountKey(name)},
		Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByDatabase, CheckedAt: time.Now()}}
	cmds := []schemas.RevocationCommand{cmd}
	if err := issuer.Issue(ctx, cmds); err != nil {
		t.Fatal(err)
	}
	if err := m.executorSink(t).Submit(ctx, cmds); err != nil {
		t.Fatal(err)
	}
	revs, err := store.RevocationsByUser(ctx, m.st.Pool(), "maria", name)
	if err != nil || len(revs) != 1 || revs[0].Outcome != schemas.OutcomeRefused || revs[0].Result.Guard != mysql.GuardAccountExists {
		t.Fatalf("revocations = %+v, %v", revs, err)
	}
	if !m.alive(t, id) {
		t.Fatal("the session of a live account was killed")
	}
}

// TestMySQLRules: orphan accounts, accounts no lease accounts for, and
// reuse after revoke are judged on MySQL as on PostgreSQL.
func TestMySQLRules(t *testing.T) {
	t.Parallel()
	m := newMyEnv(t)
	rec := &recorder{Rules: m.rules(t, m.executorSink(t))}
	o := m.observer(t, rec)
	m.pass(t, o, rec) // baseline: the coverage watermark, none of the users yet

	orphan := m.user(t, "orphan")
	unknown := m.user(t, "unknown")
	m.connect(t, unknown, "unknown")
	reused := m.user(t, "reused")
	lease := m.lease(t, reused)
	m.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: lease,
		RevokeBy: schemas.RevokeByPath, EventTime: time.Now().UTC(), VaultRequestID: "req-revoke-" + reused,
		Source: schemas.SourceRef{Transport: "test"}})
	_, reusedID := m.connect(t, reused, "reused")

	m.advance(time.Second)
	if rep, _ := m.pass(t, o, rec); len(findingsOf(rep.Rules.Findings, orphan))+len(findingsOf(rep.Rules.Findings, unknown)) != 0 {
		t.Fatalf("findings before the graces: %+v", rep.Rules.Findings)
	}
	m.advance(3 * time.Minute)
	rep, _ := m.pass(t, o, rec)
	rules := func(user string) string {
		var out []string
		for _, f := range findingsOf(rep.Rules.Findings, user) {
			out = append(out, f.Rule+"/"+string(f.Action))
		}
		return fmt.Sprint(out)
	}
	if got := rules(orphan); got != "[orphan-role/none]" {
		t.Errorf("orphan: %s", got)
	}
	if got := rules(unknown); !strings.Contains(got, "credential-reuse-unknown-lease/none") || !strings.Contains(got, "orphan-role/none") {
		t.Errorf("unknown: %s", got)
	}
	// Enforced, and unconfirmed: MySQL keeps no expiry, and no Vault link
	// is there to say the lease is over. Nothing is dropped.
	if got := rules(reused); !strings.Contains(got, "credential-reuse-after-revoke/unconfirmed") {
		t.Errorf("reused: %s", got)
	}
	for _, f := range findingsOf(m.findings(t, detectors.RuleReuseAfterRevoke), reused) {
		ss, _ := f.Facts["sessions"].([]any)
		if f.LeaseID != lease || len(ss) != 1 || ss[0].(map[string]any)["started"] != "unknown" ||
			ss[0].(map[string]any)["client_addr"] != "127.0.0.1" {
			t.Errorf("reuse finding = %+v", f)
		}
	}
	if !m.alive(t, reusedID) {
		t.Error("a session was ended on the ledger's word alone")
	}
}

// TestMySQLForeignAddress: Vault issued the credential to 10.9.8.7, and
// the user connects to MariaDB from 127.0.0.1.
func TestMySQLForeignAddress(t *testing.T) {
	t.Parallel()
	m := newMyEnv(t)
	name := m.user(t, "foreign")
	lease := m.lease(t, name)
	_, id := m.connect(t, name, "foreign")
	o := m.observer(t, nil)
	if _, err := o.Pass(context.Background(), "maria"); err != nil {
		t.Fatal(err)
	}
	cfg := detectors.DefaultAuditRulesConfig()
	cfg.Scope, cfg.Signals.ForeignGrace = detectors.Everywhere(), time.Millisecond
	a, err := detectors.NewAuditRules(cfg, detectors.AuditRulesDeps{Pool: m.st.Pool(), Evidence: m.builder,
		Clock: func() time.Time { return time.Now().Add(time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs := findingsOf(m.findings(t, detectors.RuleForeignAddress), name)
	if len(fs) != 1 || fs[0].Database != "maria" || fs[0].LeaseID != lease || fs[0].Facts["client_addr"] != "127.0.0.1" {
		t.Fatalf("foreign-address findings = %+v", fs)
	}
	ss, _ := fs[0].Facts["sessions"].([]any)
	if len(ss) != 1 || ss[0].(map[string]any)["pid"] != float64(id) {
		t.Errorf("sessions = %v", fs[0].Facts["sessions"])
	}
}
