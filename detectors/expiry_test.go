package detectors_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// sink records submitted commands; err, when set, fails Submit.
type sink struct {
	mu   sync.Mutex
	cmds []schemas.RevocationCommand
	err  error
}

func (s *sink) Submit(_ context.Context, cmds []schemas.RevocationCommand) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.cmds = append(s.cmds, cmds...)
	return nil
}

func (s *sink) all() []schemas.RevocationCommand {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]schemas.RevocationCommand(nil), s.cmds...)
}

// roles is a fake RoleReader (and the issuer's target facts): the roles of
// each database; a missing database errors like an unreachable target.
type roles map[string]map[string]target.Role

func (r roles) Roles(_ context.Context, db string, users []string) (map[string]target.Role, error) {
	m, ok := r[db]
	if !ok {
		return nil, context.DeadlineExceeded
	}
	out := map[string]target.Role{}
	for _, u := range users {
		if role, ok := m[u]; ok {
			out[u] = role
		}
	}
	return out, nil
}

func (r roles) RoleOIDs(ctx context.Context, db string, users []string) (map[string]uint32, error) {
	rs, err := r.Roles(ctx, db, users)
	out := map[string]uint32{}
	for n, role := range rs {
		out[n] = role.OID
	}
	return out, err
}

// testIdentity is the identity every fake target has.
var testIdentity = schemas.TargetIdentity{SystemIdentifier: "7716256923339417742", DatabaseOID: 16384}

func (r roles) Identity(_ context.Context, db string) (schemas.TargetIdentity, error) {
	if _, ok := r[db]; !ok {
		return schemas.TargetIdentity{}, context.DeadlineExceeded
	}
	return testIdentity, nil
}

type fixture struct {
	st      *store.Store
	signer  *revoker.Signer
	issuer  *revoker.Issuer
	verify  *revoker.Verifier
	now     time.Time
	sink    *sink
	reader  roles
	builder evidence.Builder
	nextOID uint32
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	schema := pgtest.Schema(t, "lg_detect")
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s := revoker.NewSigner(priv)
	v, err := revoker.NewVerifier(s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	f := &fixture{st: st, signer: s, verify: v, now: now, sink: &sink{}, reader: roles{"main": {}}, nextOID: 40000,
		builder: evidence.Builder{Source: "urn:leaseguard:test", Clock: func() time.Time { return now }}}
	if f.issuer, err = revoker.NewIssuer(s, f.reader, 0, func() time.Time { return f.now }); err != nil {
		t.Fatal(err)
	}
	return f
}

// role puts user in db with rolvaliduntil until (nil: none).
func (f *fixture) role(db, user string, until *time.Time) {
	f.nextOID++
	if f.reader[db] == nil {
		f.reader[db] = map[string]target.Role{}
	}
	f.reader[db][user] = target.Role{OID: f.nextOID, ValidUntil: until}
}

// lease issues a lease for user on database expiring at exp; the user
// exists there with rolvaliduntil exp + 5 s, as Vault's plugin sets it
// (unless the database is unknown to the fake reader).
func (f *fixture) lease(t *testing.T, id, db, user string, exp time.Time) {
	t.Helper()
	f.leaseOnly(t, id, db, user, exp)
	if _, ok := f.reader[db]; ok {
		until := exp.Add(5 * time.Second)
		f.role(db, user, &until)
	}
}

// leaseOnly records the lease in the ledger and leaves the database as it is.
func (f *fixture) leaseOnly(t *testing.T, id, db, user string, exp time.Time) {
	t.Helper()
	issued := exp.Add(-time.Hour)
	ev := schemas.LeaseEvent{
		Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id, Mount: "postgres", Role: "reporting",
		Database: db, DBUser: user, IssueTime: &issued, ExpireTime: &exp, ExpireSource: schemas.ExpireFromEvent,
		EventTime: issued, VaultRequestID: "req-" + id, Source: schemas.SourceRef{Transport: "test"},
	}
	if _, err := f.st.Apply(context.Background(), store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) detector(t *testing.T, modes, scope string) *detectors.Expiry {
	t.Helper()
	return f.detectorWith(t, modes, scope, nil)
}

func (f *fixture) detectorWith(t *testing.T, modes, scope string, vault detectors.VaultLeases) *detectors.Expiry {
	t.Helper()
	m, err := detectors.ParseModes(modes)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := detectors.ParseScope(scope)
	if err != nil {
		t.Fatal(err)
	}
	d, err := detectors.NewExpiry(detectors.ExpiryConfig{Grace: 30 * time.Second, Interval: time.Second, Batch: 100, Modes: m, Scope: sc},
		detectors.ExpiryDeps{Pool: f.st.Pool(), Reader: f.reader, Issuer: f.issuer, Sink: f.sink, Vault: vault, Evidence: f.builder,
			Clock: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) state(t *testing.T, id string) string {
	t.Helper()
	l, err := f.st.Lease(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return string(l.State)
}

func (f *fixture) findings(t *testing.T) []schemas.Finding {
	t.Helper()
	rows, err := f.st.Pool().Query(context.Background(), `SELECT finding FROM findings ORDER BY lease_id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[schemas.Finding])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExpiryGraceEdges(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	grace := 30 * time.Second
	f.lease(t, "postgres/creds/reporting/due", "main", "v-due", f.now.Add(-grace))                           // exactly due
	f.lease(t, "postgres/creds/reporting/early", "main", "v-early", f.now.Add(-grace).Add(time.Millisecond)) // just not yet
	f.lease(t, "postgres/creds/reporting/future", "main", "v-future", f.now.Add(time.Hour))                  // far from due
	d := f.detector(t, "", "*")
	n, err := d.Tick(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Tick = %d, %v; want 1 due", n, err)
	}
	cmds := f.sink.all()
	if len(cmds) != 1 || cmds[0].DBUser != "v-due" || cmds[0].Database != "main" || cmds[0].Rule != detectors.RuleLeaseExpired {
		t.Fatalf("commands = %+v", cmds)
	}
	if err := f.verify.Verify(cmds[0]); err != nil {
		t.Errorf("command does not verify: %v", err)
	}
	if got := f.state(t, "postgres/creds/reporting/due"); got != "expired" {
		t.Errorf("due lease state = %s", got)
	}
	if got := f.state(t, "postgres/creds/reporting/early"); got != "active" {
		t.Errorf("early lease state = %s", got)
	}
	fs := f.findings(t)
	if len(fs) != 1 || fs[0].Action != schemas.ActionRevocationRequested || fs[0].CommandID != cmds[0].ID ||
		fs[0].Facts["expire_source"] != "event" || fs[0].Facts["last_vault_request_id"] != "req-postgres/creds/reporting/due" {
		t.Errorf("findings = %+v", fs)
	}
	// Nothing left: a second pass does nothing.
	if n, err := d.Tick(ctx); err != nil || n != 0 {
		t.Errorf("second Tick = %d, %v", n, err)
	}
	// The evidence of the finding is in the outbox and the chain verifies.
	rep, err := evidence.VerifyOutbox(ctx, f.st.Pool(), evidence.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != 1 {
		t.Errorf("outbox verify = %+v, %v", rep, err)
	}
}

func TestExpiryObserveAndScope(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.reader["other"] = map[string]target.Role{}
	past := f.now.Add(-time.Hour)
	f.lease(t, "postgres/creds/reporting/a", "main", "v-a", past)
	f.lease(t, "postgres/creds/reporting/b", "other", "v-b", past)
	d := f.detector(t, "", "db:main")
	if _, err := d.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	cmds := f.sink.all()
	if len(cmds) != 1 || cmds[0].DBUser != "v-a" {
		t.Fatalf("commands = %+v, want only v-a (in scope)", cmds)
	}
	for _, fd := range f.findings(t) {
		switch fd.DBUser {
		case "v-a":
			if !fd.InScope || fd.Action != schemas.ActionRevocationRequested {
				t.Errorf("in-scope finding = %+v", fd)
			}
		case "v-b":
			// Outside the scope: a pilot, recorded as what would be done.
			if fd.InScope || fd.Action != schemas.ActionWouldDrop || fd.CommandID != "" || fd.Facts["not_enforced"] != "outside the enforcement scope" {
				t.Errorf("out-of-scope finding = %+v", fd)
			}
		}
	}

	g := newFixture(t)
	g.lease(t, "postgres/creds/reporting/c", "main", "v-c", past)
	if _, err := g.detector(t, "lease-expired-not-revoked=observe", "*").Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(g.sink.all()) != 0 {
		t.Error("observe mode sent a command")
	}
	if fs := g.findings(t); len(fs) != 1 || fs[0].Mode != schemas.ModeObserve || fs[0].Action != schemas.ActionNone {
		t.Errorf("observe finding = %+v", fs)
	}
}

func TestExpiryDatabaseSaysStillValid(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	renewedUntil := f.now.Add(20 * time.Minute)
	f.leaseOnly(t, "postgres/creds/reporting/r", "main", "v-renewed", f.now.Add(-time.Hour))
	f.role("main", "v-renewed", &renewedUntil)
	if _, err := f.detector(t, "", "*").Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.sink.all()) != 0 || len(f.findings(t)) != 0 {
		t.Fatal("a lease the database still honours was judged expired")
	}
	l, err := f.st.Lease(context.Background(), "postgres/creds/reporting/r")
	if err != nil {
		t.Fatal(err)
	}
	if l.State != "active" || l.ExpireAt == nil || !l.ExpireAt.Equal(renewedUntil) || l.ExpireSource != "pg_valid_until" {
		t.Errorf("lease = state %s expire %v source %s", l.State, l.ExpireAt, l.ExpireSource)
	}
}

func TestExpiryTargetDownOrQueueDownLeavesLeaseDue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/x", "unreachable", "v-x", f.now.Add(-time.Hour))
	d := f.detector(t, "", "*")
	if _, err := d.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, "postgres/creds/reporting/x"); got != "active" || len(f.sink.all()) != 0 {
		t.Errorf("unreachable target: state %s, commands %d", got, len(f.sink.all()))
	}

	g := newFixture(t)
	g.sink.err = context.DeadlineExceeded
	g.lease(t, "postgres/creds/reporting/y", "main", "v-y", g.now.Add(-time.Hour))
	if _, err := g.detector(t, "", "*").Tick(context.Background()); err == nil {
		t.Fatal("Tick hid a queue failure")
	}
	if got := g.state(t, "postgres/creds/reporting/y"); got != "active" || len(g.findings(t)) != 0 {
		t.Errorf("queue down: state %s, findings %d; the pass must roll back", got, len(g.findings(t)))
	}
}

func TestExpiryConcurrentDetectorsClaimEachLeaseOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const n = 60
	for i := 0; i < n; i++ {
		id := "postgres/creds/reporting/c" + string(rune('A'+i/26)) + string(rune('a'+i%26))
		f.lease(t, id, "main", "v-"+id[len(id)-2:], f.now.Add(-time.Hour))
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := f.detector(t, "", "*")
			for {
				k, err := d.Tick(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if k == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, c := range f.sink.all() {
		seen[c.LeaseID]++
	}
	if len(seen) != n {
		t.Errorf("%d leases got commands, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("lease %s got %d commands", id, k)
		}
	}
}
