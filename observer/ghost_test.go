package observer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// TestGhostSessionFoundAndTerminated drops a role under its live session,
// as Vault's own revocation does, and checks the ghost is found, named and
// terminated through the revoker (a signed terminate_session command), with
// evidence, and that the changes reach JetStream.
func TestGhostSessionFoundAndTerminated(t *testing.T) {
	t.Parallel()
	ghostScenario(t, scenarioHooks{})
}

// scenarioHooks let a test change the cluster before each pass of the
// scenario, and check what the pass saw of it; either may be nil.
type scenarioHooks struct {
	beforePass func(t *testing.T)
	afterPass  func(t *testing.T, rep observer.PassReport, p *observed.Pass)
}

// ghostScenario is TestGhostSessionFoundAndTerminated's scenario, with
// hooks around each of its passes.
//
// The observer reads the whole cluster, where other packages' tests run
// alongside: each pass may see their sessions, their ghosts among them, and
// report them, findings included. The scenario counts only its own user,
// role and session (mine) in what a pass saw, judged and published, and
// checks the report against the pass it sums up.
func ghostScenario(t *testing.T, hooks scenarioHooks) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g := newGhostRun(t, ctx, hooks)
	g.baseline(t, ctx)
	g.revokeAndTerminate(t, ctx)
	f := g.checkFinding(t)
	g.checkEvidence(t, ctx, f)
	g.afterTermination(t, ctx)
	g.checkStream(t, ctx)
}

// mine names what belongs to one test on the shared cluster: its user,
// the role's oid, and its one session.
type mine struct {
	user  string
	oid   uint32
	pid   int32
	start time.Time
}

func (m mine) roles(rs []observed.Role) []observed.Role {
	var out []observed.Role
	for _, r := range rs {
		if r.OID == m.oid {
			out = append(out, r)
		}
	}
	return out
}

// sessions are the sessions of the test's role, live or ghost.
func (m mine) sessions(ss []observed.Session) []observed.Session {
	var out []observed.Session
	for _, s := range ss {
		if s.UserOID == m.oid {
			out = append(out, s)
		}
	}
	return out
}

func (m mine) roleEvents(evs []schemas.RoleEvent) []string {
	var kinds []string
	for _, e := range evs {
		if e.OID == m.oid {
			kinds = append(kinds, string(e.Kind))
		}
	}
	return kinds
}

// sessionEvents are the kinds of the events of the test's role's
// sessions; each must name the test's session.
func (m mine) sessionEvents(t *testing.T, evs []schemas.SessionEvent) []string {
	t.Helper()
	var kinds []string
	for _, e := range evs {
		if e.UserOID != m.oid {
			continue
		}
		if e.PID != m.pid || !e.BackendStart.Equal(m.start) {
			t.Errorf("an event of the test's role names another session: %+v", e)
		}
		kinds = append(kinds, string(e.Kind))
	}
	return kinds
}

// findings are those naming the test's user, or its role's oid (a ghost's
// finding when the former user were unknown).
func (m mine) findings(fs []schemas.Finding) []schemas.Finding {
	var out []schemas.Finding
	for _, f := range fs {
		if f.DBUser == m.user || fmt.Sprint(f.Facts["user_oid"]) == fmt.Sprint(m.oid) {
			out = append(out, f)
		}
	}
	return out
}

// recorder keeps the pass the rules judged: what the observer saw and
// recorded, which the report only counts.
type recorder struct {
	observer.Rules
	mu   sync.Mutex
	last *observed.Pass
}

func (r *recorder) Evaluate(ctx context.Context, tx pgx.Tx, p *observed.Pass) (observed.Report, error) {
	r.mu.Lock()
	r.last = p
	r.mu.Unlock()
	return r.Rules.Evaluate(ctx, tx, p)
}

func (r *recorder) take() *observed.Pass {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.last
	r.last = nil
	return p
}

// ghostRun is one run of the scenario.
type ghostRun struct {
	e     *env
	js    jetstream.JetStream
	o     *observer.Observer
	rec   *recorder
	cred  vaultsim.Cred
	conn  *pgx.Conn
	me    mine
	hooks scenarioHooks
	// published counts the messages the passes reported published.
	published int
}

func newGhostRun(t *testing.T, ctx context.Context, hooks scenarioHooks) *ghostRun {
	t.Helper()
	g := &ghostRun{e: newEnv(t), hooks: hooks}
	_, g.js = natstest.Start(t).Connect(t)
	if err := observer.EnsureStream(ctx, g.js, observer.Config{}); err != nil {
		t.Fatal(err)
	}
	pub, err := observer.NewJetStreamPublisher(g.js, observer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g.cred, g.conn = g.e.issue(t, ctx)
	g.me = mine{user: g.cred.Username, pid: int32(g.conn.PgConn().PID())}
	var oid int64
	if err := g.e.admin.QueryRow(ctx, `SELECT r.oid::int8, a.backend_start FROM pg_roles r, pg_stat_activity a
		WHERE r.rolname = $1 AND a.pid = $2`, g.me.user, g.me.pid).Scan(&oid, &g.me.start); err != nil {
		t.Fatalf("the test's role and session: %v", err)
	}
	g.me.oid = uint32(oid)
	g.rec = &recorder{Rules: g.e.rules(t, g.e.executorSink(t))}
	g.o = g.e.observer(t, g.e.st, time.Second, g.rec, pub)
	return g
}

// pass makes a pass and returns its report and what it saw. The report
// counts all of it, the rest of the cluster's included: it must tell the
// pass, and the pass must have published every event it recorded.
func (g *ghostRun) pass(t *testing.T, ctx context.Context, what string) (observer.PassReport, *observed.Pass) {
	t.Helper()
	if g.hooks.beforePass != nil {
		g.hooks.beforePass(t)
	}
	rep, err := g.o.Pass(ctx, "main")
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	p := g.rec.take()
	if p == nil || rep.Roles != len(p.Roles) || rep.Sessions != len(p.Sessions) || rep.RoleEvents != len(p.RoleEvents) ||
		rep.SessionEvents != len(p.SessionEvents) || rep.Published != len(p.RoleEvents)+len(p.SessionEvents) {
		t.Fatalf("%s: report %+v does not tell the pass %+v", what, rep, p)
	}
	g.published += rep.Published
	if g.hooks.afterPass != nil {
		g.hooks.afterPass(t, rep, p)
	}
	return rep, p
}

// baseline: the test's role and its session, one event each, no finding.
// Only the test's users match its managed pattern: the managed roles and
// their events are exactly its own.
func (g *ghostRun) baseline(t *testing.T, ctx context.Context) {
	t.Helper()
	rep, p := g.pass(t, ctx, "baseline pass")
	if !rep.Baseline || rep.Roles != 1 || rep.RoleEvents != 1 {
		t.Fatalf("baseline pass: %+v", rep)
	}
	if rs := g.me.roles(p.Roles); len(rs) != 1 || rs[0].Name != g.me.user {
		t.Fatalf("baseline roles: %+v", p.Roles)
	}
	if ss := g.me.sessions(p.Sessions); len(ss) != 1 || ss[0].PID != g.me.pid || ss[0].Ghost {
		t.Fatalf("baseline sessions of %s: %+v", g.me.user, ss)
	}
	if k := g.me.roleEvents(p.RoleEvents); fmt.Sprint(k) != "[appeared]" {
		t.Fatalf("baseline role events: %v", k)
	}
	if k := g.me.sessionEvents(t, p.SessionEvents); fmt.Sprint(k) != "[started]" {
		t.Fatalf("baseline session events: %v", k)
	}
	if fs := g.me.findings(rep.Rules.Findings); len(fs) != 0 {
		t.Fatalf("baseline findings: %+v", fs)
	}
}

// revokeAndTerminate: Vault revokes (DROP ROLE), the session lives on with
// no user; the next pass finds the ghost once and the revoker ends it, on
// the one command issued (no other ghost is the test's managed user's, and
// ghosts of roles the observer never saw are left alone).
func (g *ghostRun) revokeAndTerminate(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := g.e.sim.Revoke(ctx, g.cred); err != nil {
		t.Fatal(err)
	}
	var usename *string
	if err := g.e.admin.QueryRow(ctx, `SELECT usename FROM pg_stat_activity WHERE pid = $1`, g.me.pid).Scan(&usename); err != nil || usename != nil {
		t.Fatalf("after DROP ROLE: usename %v, %v; want a live session with no user", usename, err)
	}
	rep, p := g.pass(t, ctx, "ghost pass")
	fs := g.me.findings(rep.Rules.Findings)
	if rep.Rules.Commands != 1 || rep.Roles != 0 || rep.RoleEvents != 1 || len(fs) != 1 || fs[0].Rule != detectors.RuleGhostSession {
		t.Fatalf("ghost pass: %+v; the test's findings %+v", rep, fs)
	}
	if ss := g.me.sessions(p.Sessions); len(ss) != 1 || ss[0].PID != g.me.pid || !ss[0].Ghost || ss[0].FormerUser != g.me.user {
		t.Fatalf("ghost pass, sessions of %s: %+v", g.me.user, ss)
	}
	if k := g.me.roleEvents(p.RoleEvents); fmt.Sprint(k) != "[disappeared]" {
		t.Fatalf("ghost pass, role events: %v", k)
	}
	if k := g.me.sessionEvents(t, p.SessionEvents); fmt.Sprint(k) != "[ghost]" {
		t.Fatalf("ghost pass, session events: %v", k)
	}
	waitFor(t, 5*time.Second, "the ghost session ends", func() bool { return !g.e.sessionAlive(t, uint32(g.me.pid)) })
	if err := g.conn.Ping(ctx); err == nil {
		t.Error("the ghost's connection still answers")
	}
}

// checkFinding: one finding recorded for the ghost, naming its former user.
func (g *ghostRun) checkFinding(t *testing.T) schemas.Finding {
	t.Helper()
	fs := g.me.findings(g.e.findings(t, detectors.RuleGhostSession))
	if len(fs) != 1 {
		t.Fatalf("ghost findings of %s = %+v", g.me.user, fs)
	}
	f := fs[0]
	if f.DBUser != g.cred.Username || f.LeaseID != g.cred.LeaseID || f.Facts["termination"] != "requested" || f.Facts["former_user"] != g.cred.Username ||
		f.Facts["pid"] != float64(g.me.pid) || f.Facts["application_name"] != "reporting-job" || f.Severity != schemas.SeverityCritical ||
		f.Mode != schemas.ModeEnforce {
		t.Errorf("ghost finding = %+v", f)
	}
	return f
}

// checkEvidence: the evidence names the former user, the revoker's record
// says the session was terminated by the finding's command, and the chain
// holds.
func (g *ghostRun) checkEvidence(t *testing.T, ctx context.Context, f schemas.Finding) {
	t.Helper()
	pool := g.e.st.Pool()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM evidence_outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	evs, err := evidence.ReadOutbox(ctx, pool, 0, max(n, 1))
	if err != nil {
		t.Fatal(err)
	}
	var ev *evidence.Event
	for i := range evs {
		if evs[i].Subject == "main/"+g.cred.Username && evs[i].Type == evidence.TypeFinding {
			ev = &evs[i]
		}
	}
	if ev == nil {
		t.Fatalf("no finding evidence for main/%s", g.cred.Username)
	}
	var data struct {
		Unmapped struct {
			Rule   string         `json:"rule"`
			DBUser string         `json:"db_user"`
			Facts  map[string]any `json:"facts"`
		} `json:"unmapped"`
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil || data.Unmapped.Rule != detectors.RuleGhostSession ||
		data.Unmapped.DBUser != g.cred.Username || data.Unmapped.Facts["termination"] != "requested" {
		t.Errorf("evidence data = %+v, %v", data.Unmapped, err)
	}
	revs, err := store.RevocationsByUser(ctx, pool, "main", g.cred.Username)
	if err != nil || len(revs) != 1 || revs[0].Outcome != schemas.OutcomeTerminated || revs[0].CommandID != f.CommandID ||
		revs[0].Result.SessionsTerminated != 1 || revs[0].Result.SessionsLeftAfter != 0 {
		t.Errorf("revocations = %+v, %v", revs, err)
	}
	if vr, err := evidence.VerifyOutbox(ctx, pool, evidence.VerifyOptions{}); err != nil || !vr.OK() {
		t.Errorf("outbox verify = %+v, %v", vr, err)
	}
}

// afterTermination: the next pass sees the session gone; the ghost was one
// finding.
func (g *ghostRun) afterTermination(t *testing.T, ctx context.Context) {
	t.Helper()
	rep, p := g.pass(t, ctx, "pass after termination")
	if fs := g.me.findings(rep.Rules.Findings); len(fs) != 0 || rep.Roles != 0 || rep.RoleEvents != 0 {
		t.Fatalf("pass after termination: %+v; the test's findings %+v", rep, fs)
	}
	if ss := g.me.sessions(p.Sessions); len(ss) != 0 {
		t.Fatalf("pass after termination, sessions of %s: %+v", g.me.user, ss)
	}
	if k := g.me.sessionEvents(t, p.SessionEvents); fmt.Sprint(k) != "[ended]" {
		t.Fatalf("pass after termination, session events: %v", k)
	}
}

// checkStream: JetStream holds every message the passes published, each
// valid, once; the test's own are, in order: the baseline role and
// session, the role disappearing and the session turning ghost, the
// session ending.
func (g *ghostRun) checkStream(t *testing.T, ctx context.Context) {
	t.Helper()
	type seen struct{ subject, kind string }
	var got []seen
	for _, m := range streamMessages(t, ctx, g.js, g.published) {
		var doc struct {
			Type    string `json:"type"`
			Kind    string `json:"kind"`
			OID     uint32 `json:"oid"`
			UserOID uint32 `json:"user_oid"`
		}
		if err := json.Unmarshal(m.Data(), &doc); err != nil {
			t.Fatal(err)
		}
		name := map[string]string{schemas.RoleEventType: "role-event", schemas.SessionEventType: "session-event"}[doc.Type]
		if err := schemas.ValidateJSON(name, m.Data()); err != nil {
			t.Errorf("%s: %v", m.Subject(), err)
		}
		if (doc.Type == schemas.RoleEventType && doc.OID == g.me.oid) || (doc.Type == schemas.SessionEventType && doc.UserOID == g.me.oid) {
			got = append(got, seen{m.Subject(), doc.Kind})
		}
	}
	want := []seen{{"leaseguard.db.main.role", "appeared"}, {"leaseguard.db.main.session", "started"},
		{"leaseguard.db.main.role", "disappeared"}, {"leaseguard.db.main.session", "ghost"}, {"leaseguard.db.main.session", "ended"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events of %s = %v, want %v", g.me.user, got, want)
	}
}

// streamMessages reads every message of the observer's stream, which must
// hold want (the passes waited for their acknowledgements).
func streamMessages(t *testing.T, ctx context.Context, js jetstream.JetStream, want int) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, observer.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(want) {
		t.Fatalf("the stream holds %d messages, the passes published %d", info.State.Msgs, want)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]jetstream.Msg, 0, want)
	for len(out) < want {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), want, err)
		}
		out = append(out, m)
	}
	return out
}
