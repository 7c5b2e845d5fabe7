package detectors_test

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target"
)

// sessionRig is a real target (the test server as "main"), Vault-style
// users whose names only this test uses, their audit entries through the
// real ingest processor, and the real observer.
type sessionRig struct {
	*fixture
	// issuer issues commands for the real target (its identity, its oids).
	issuer  *revoker.Issuer
	sim     *vaultsim.Sim
	targets *target.Set
	pattern *regexp.Regexp
	proc    *ingest.Processor
	obs     *observer.Observer
}

func newSessionRig(t *testing.T) *sessionRig {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t)
	ts, err := target.Open(ctx, target.Config{Targets: []target.Target{{Name: "main", URL: pgtest.URL()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	display := pgtest.Suffix()[:8]
	r := &sessionRig{fixture: f, targets: ts, pattern: regexp.MustCompile("^v-" + display + "-"),
		sim: &vaultsim.Sim{Pool: pgtest.Pool(t), Mount: "postgres", DisplayName: display, EntityID: "ent-" + display, RemoteAddress: "10.9.8.7"}}
	if r.issuer, err = revoker.NewIssuer(f.signer, ts, 0, nil); err != nil {
		t.Fatal(err)
	}
	if r.proc, err = ingest.NewProcessor(ingest.ProcessorConfig{Ledger: f.st}); err != nil {
		t.Fatal(err)
	}
	r.obs, err = observer.New(observer.Config{Interval: time.Second, ManagedPattern: r.pattern, Databases: []string{"main"}},
		observer.Deps{Store: f.st, Targets: ts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.obs.Release(context.Background()) })
	return r
}

// ingest runs audit entries through the processor.
func (r *sessionRig) ingest(t *testing.T, entries [][]byte) {
	t.Helper()
	msgs := make([]ingest.Message, len(entries))
	for i, e := range entries {
		msgs[i] = ingest.Message{Data: e, Source: schemas.SourceRef{Transport: "test", Offset: int64(i)}}
	}
	res, err := r.proc.Process(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range res {
		if x.Disposition != ingest.Done {
			t.Fatalf("entry %d: %s %s", i, x.Disposition, x.Reason)
		}
	}
}

// issue creates a user as Vault would, ingests its audit entries, and
// connects as it over TCP to 127.0.0.1.
func (r *sessionRig) issue(t *testing.T) (vaultsim.Cred, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	c, entries, err := r.sim.Issue(ctx, "reporting", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.sim.Pool, c.Username)
	r.ingest(t, entries)
	cfg, err := pgx.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.User, cfg.Password = "127.0.0.1", c.Username, c.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", c.Username, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return c, conn
}

func (r *sessionRig) rules(t *testing.T, modes, cidrs string, sink detectors.CommandSink) *detectors.AuditRules {
	t.Helper()
	return r.rulesWith(t, modes, cidrs, sink, nil)
}

// rulesWith is rules with Vault to corroborate what the rules act on.
func (r *sessionRig) rulesWith(t *testing.T, modes, cidrs string, sink detectors.CommandSink, vault detectors.VaultLeases) *detectors.AuditRules {
	t.Helper()
	m, err := detectors.ParseModes(modes)
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := detectors.ParseAllowedCIDRs(cidrs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := detectors.DefaultAuditRulesConfig()
	cfg.Modes, cfg.Scope = m, detectors.Everywhere()
	cfg.Signals.ForeignGrace, cfg.Signals.AllowedCIDRs = time.Millisecond, allowed
	// The rules' clock is the real one, a little ahead: the sessions were
	// first seen by the observer's pass just before.
	a, err := detectors.NewAuditRules(cfg, detectors.AuditRulesDeps{Pool: r.st.Pool(), Evidence: r.builder,
		Clock: func() time.Time { return time.Now().Add(time.Second) }, Issuer: r.issuer, Sink: sink, Vault: vault})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (r *sessionRig) pass(t *testing.T) {
	t.Helper()
	if _, err := r.obs.Pass(context.Background(), "main"); err != nil {
		t.Fatal(err)
	}
}

func backendPID(t *testing.T, conn *pgx.Conn) int32 {
	t.Helper()
	var pid int32
	if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestForeignAddressRealSession: Vault issued the credential to a client at
// 10.9.8.7, and the user connects from 127.0.0.1.
func TestForeignAddressRealSession(t *testing.T) {
	t.Parallel()
	r := newSessionRig(t)
	foreign, conn := r.issue(t)
	pid := backendPID(t, conn)
	// The client names itself like a Vault token: the evidence withholds it
	// rather than the rule stalling.
	if _, err := conn.Exec(context.Background(), "SET application_name = 'hvs.CAESIJlWq2Vj0MeWl0AbcDefGhIjKl'"); err != nil {
		t.Fatal(err)
	}
	// A second user whose lease was renewed from 127.0.0.1: its sessions
	// from there are its client's.
	renewed, _ := r.issue(t)
	r.sim.RemoteAddress = "127.0.0.1"
	entries, err := r.sim.Renew(context.Background(), &renewed, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r.ingest(t, entries)
	r.pass(t)

	// 127.0.0.0/8 allowed for the role: nothing.
	tick(t, r.rules(t, "", "reporting=127.0.0.0/8", nil))
	if got := r.ruleFindings(t, detectors.RuleForeignAddress); len(got) != 0 {
		t.Fatalf("allowed CIDR: %+v", got)
	}
	// The exception is recorded as hit, once, for the session it spared
	// (not for the renewed user's, whose address its lease explains).
	tick(t, r.rules(t, "", "reporting=127.0.0.0/8", nil))
	var hits int
	var user, value string
	if err := r.st.Pool().QueryRow(context.Background(), `SELECT count(*), min(db_user), min(value) FROM exception_hits
		WHERE rule = $1 AND exception = 'allowed_cidr'`, detectors.RuleForeignAddress).Scan(&hits, &user, &value); err != nil ||
		hits != 1 || user != foreign.Username || value != "127.0.0.0/8" {
		t.Fatalf("exception hits = %d (%s, %s), %v; want 1 for %s", hits, user, value, err, foreign.Username)
	}
	// Allowed elsewhere only: the first user's session is foreign.
	a := r.rules(t, "", "other=127.0.0.0/8;*=192.0.2.0/24", nil)
	tick(t, a)
	tick(t, a)
	got := r.ruleFindings(t, detectors.RuleForeignAddress)
	if len(got) != 1 {
		t.Fatalf("%d findings, want 1: %+v", len(got), got)
	}
	fd := got[0]
	if fd.DBUser != foreign.Username || fd.Database != "main" || fd.LeaseID != foreign.LeaseID || fd.Severity != schemas.SeverityMedium ||
		fd.Mode != schemas.ModeObserve || fd.Action != schemas.ActionNone || fd.Facts["client_addr"] != "127.0.0.1" {
		t.Fatalf("finding = %+v", fd)
	}
	if addrs, _ := fd.Facts["lease_addresses"].([]any); len(addrs) != 1 || addrs[0] != "10.9.8.7" {
		t.Errorf("lease addresses = %v", fd.Facts["lease_addresses"])
	}
	if ss, _ := fd.Facts["sessions"].([]any); len(ss) != 1 || ss[0].(map[string]any)["pid"] != float64(pid) ||
		ss[0].(map[string]any)["application_name"] != schemas.Withheld {
		t.Errorf("sessions = %v", fd.Facts["sessions"])
	}
	if _, err := netip.ParseAddr(fmt.Sprint(fd.Facts["client_addr"])); err != nil {
		t.Error(err)
	}
}

// TestForeignAddressEnforced: in enforce mode the revoker terminates the
// foreign session and drops the user.
func TestForeignAddressEnforced(t *testing.T) {
	t.Parallel()
	r := newSessionRig(t)
	c, conn := r.issue(t)
	pid := backendPID(t, conn)
	r.pass(t)
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
	sink := sinkFunc(func(ctx context.Context, cmds []schemas.RevocationCommand) error {
		for _, res := range x.Execute(ctx, cmds, nil) {
			if res.Retry {
				return fmt.Errorf("revocation %s: %w", res.Command.ID, res.Err)
			}
		}
		return nil
	})
	// Without Vault nothing corroborates what the audit stream said of the
	// lease (its addresses): unconfirmed, the user stays.
	tick(t, r.rules(t, "credential-foreign-address=enforce", "", sink))
	got := r.ruleFindings(t, detectors.RuleForeignAddress)
	if len(got) != 1 || got[0].Action != schemas.ActionUnconfirmed || got[0].CommandID != "" {
		t.Fatalf("findings without Vault = %+v", got)
	}
	admin := r.sim.Pool
	if !roleExistsIn(t, admin, c.Username) {
		t.Fatal("dropped on the audit stream's word alone")
	}
	// Vault holds the lease, live, issued when the ledger says: enforced.
	l, err := r.st.Lease(context.Background(), c.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	vault := vaultLeases{c.LeaseID: {IssueTime: *l.IssuedAt, ExpireTime: tptr(time.Now().Add(time.Hour))}}
	tick(t, r.rulesWith(t, "credential-foreign-address=enforce", "", sink, vault))
	got = r.ruleFindings(t, detectors.RuleForeignAddress)
	var enforced *schemas.Finding
	for i := range got {
		if got[i].Action == schemas.ActionRevocationRequested && got[i].CommandID != "" {
			enforced = &got[i]
		}
	}
	if enforced == nil {
		t.Fatalf("findings with Vault = %+v", got)
	}
	var exists, alive bool
	if err := admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
		EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $2)`, c.Username, pid).Scan(&exists, &alive); err != nil {
		t.Fatal(err)
	}
	if exists || alive {
		t.Fatalf("after enforcement: role exists %v, session alive %v", exists, alive)
	}
}

// sinkFunc adapts a function to detectors.CommandSink.
type sinkFunc func(ctx context.Context, cmds []schemas.RevocationCommand) error

func (f sinkFunc) Submit(ctx context.Context, cmds []schemas.RevocationCommand) error {
	return f(ctx, cmds)
}

// vaultLeases is a fake detectors.VaultLeases: the leases Vault holds.
type vaultLeases map[string]schemas.VaultLease

func (v vaultLeases) LookupLease(_ context.Context, id string) (schemas.VaultLease, bool, error) {
	l, ok := v[id]
	return l, ok, nil
}

func (v vaultLeases) ListLeases(context.Context, string) ([]string, error) { return nil, nil }

func roleExistsIn(t *testing.T, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}
