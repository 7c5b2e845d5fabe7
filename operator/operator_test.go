package operator_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

func TestSelectorValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sel  operator.Selector
		want string // "" valid, else part of the error
	}{
		{"db user", operator.Selector{DBUser: "v-x"}, ""},
		{"db user in a database", operator.Selector{DBUser: "v-x", Database: "main"}, ""},
		{"lease id", operator.Selector{LeaseID: "database/creds/ro/abc"}, ""},
		{"prefix", operator.Selector{Prefix: "database/creds/ro/"}, ""},
		{"entity", operator.Selector{EntityID: "e-1"}, ""},
		{"accessor", operator.Selector{TokenAccessor: "hmac-sha256:ab"}, ""},
		{"all managed", operator.Selector{AllManaged: true, Database: "main"}, ""},
		{"none", operator.Selector{}, "no selector"},
		{"database alone", operator.Selector{Database: "main"}, "no selector"},
		{"two", operator.Selector{DBUser: "v-x", LeaseID: "a/b"}, "several selectors (db_user, lease_id)"},
		{"all managed and user", operator.Selector{AllManaged: true, DBUser: "v-x", Database: "main"}, "several selectors"},
		{"all managed without database", operator.Selector{AllManaged: true}, "needs the database"},
		{"slash prefix", operator.Selector{Prefix: "//"}, "every lease"},
		{"padded", operator.Selector{DBUser: " v-x"}, "space"},
		{"control", operator.Selector{DBUser: "v-x\n"}, "control character"},
		{"not utf-8", operator.Selector{EntityID: "\xff"}, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sel.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			case err != nil && !errors.Is(err, operator.ErrInvalid):
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestRequestValidate(t *testing.T) {
	t.Parallel()
	ok := operator.Request{Selector: operator.Selector{DBUser: "v-x"}, Reason: "leaked", Actor: "alice"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*operator.Request){
		"no reason":      func(r *operator.Request) { r.Reason = "  " },
		"no actor":       func(r *operator.Request) { r.Actor = "" },
		"bad request id": func(r *operator.Request) { r.RequestID = "a b" },
		"long reason":    func(r *operator.Request) { r.Reason = strings.Repeat("x", 4096) },
	} {
		r := ok
		mod(&r)
		if err := r.Validate(); !errors.Is(err, operator.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid", name, err)
		}
	}
}

func TestCommandID(t *testing.T) {
	t.Parallel()
	base := []string{"req-1", "main", "v-x", "pg/creds/ro/abc", "leaked", "alice"}
	id := operator.CommandID(base[0], base[1], base[2], base[3], base[4], base[5])
	if id != operator.CommandID(base[0], base[1], base[2], base[3], base[4], base[5]) {
		t.Fatal("CommandID is not deterministic")
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("CommandID = %q, want 32 hex digits", id)
	}
	for i := range base {
		p := slices.Clone(base)
		p[i] += "x"
		if operator.CommandID(p[0], p[1], p[2], p[3], p[4], p[5]) == id {
			t.Errorf("changing part %d keeps the id", i)
		}
	}
	// Moving text between parts changes the id (length-prefixed parts).
	if operator.CommandID("req-1", "main", "v-x", "pg/creds/ro/abc", "leaked", "alice") ==
		operator.CommandID("req-1", "main", "v-x", "pg/creds/ro/abcleaked", "", "alice") {
		t.Error("parts are not delimited")
	}
}

// rig is a state store in its own schema, the test database as target
// "main", and an operator service whose revoker only manages roles named
// v-<tag>-…, so no role of another test can ever be selected.
type rig struct {
	ctx   context.Context
	st    *store.Store
	admin *pgxpool.Pool
	svc   *operator.Service
	tag   string
	sim   *vaultsim.Sim
	guard revoker.GuardConfig
}

func newRig(t *testing.T, tag string, protected []string, limiter *revoker.Limiter) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, "lg_operator")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := &rig{ctx: ctx, st: st, admin: pgtest.Pool(t), tag: tag}
	r.guard = revoker.GuardConfig{ManagedPattern: regexp.MustCompile("^v-" + tag + "-"), Protected: protected}
	r.sim = &vaultsim.Sim{Pool: r.admin, Mount: "pg-" + tag, DisplayName: tag, EntityID: "ent-a-" + tag, RemoteAddress: "10.0.0.1"}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := revoker.NewSigner(priv)
	verifier, err := revoker.NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	dropper, err := revoker.NewDropper(revoker.DropperConfig{Guard: r.guard})
	if err != nil {
		t.Fatal(err)
	}
	targets := target.Pools{"main": r.admin}
	issuer, err := revoker.NewIssuer(signer, targets, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: dropper, Verifier: verifier, Limiter: limiter,
		Targets: targets, State: st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"}})
	if err != nil {
		t.Fatal(err)
	}
	r.svc, err = operator.New(operator.Deps{State: st.Pool(), Targets: targets, Guard: r.guard,
		Executor: exec, Issuer: issuer, Batch: 2, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// issue creates a Vault-shaped user and records its lease as issued.
func (r *rig) issue(t *testing.T, role, entity, accessor string) vaultsim.Cred {
	t.Helper()
	c, _, err := r.sim.Issue(r.ctx, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, c.Username)
	now := time.Now().UTC()
	r.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: c.LeaseID,
		Mount: r.sim.Mount, Role: role, Database: "main", DBUser: c.Username, IssueTime: &now, EventTime: now,
		EntityID: entity, TokenAccessor: accessor, VaultRequestID: "req-" + c.LeaseID[len(c.LeaseID)-6:],
		Source: schemas.SourceRef{Transport: "file", Offset: 1}})
	return c
}

func (r *rig) revokeInLedger(t *testing.T, c vaultsim.Cred) {
	t.Helper()
	now := time.Now().UTC()
	r.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: c.LeaseID,
		RevokeBy: schemas.RevokeByPath, EventTime: now, Source: schemas.SourceRef{Transport: "file", Offset: 2}})
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

func (r *rig) createRole(t *testing.T, name, attrs string) {
	t.Helper()
	if _, err := r.admin.Exec(r.ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" "+attrs); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, name)
}

func (r *rig) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := r.st.Pool().QueryRow(r.ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func users(items []operator.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.DBUser)
	}
	sort.Strings(out)
	return out
}

func sorted(names ...string) []string {
	out := slices.Clone(names)
	sort.Strings(out)
	return out
}

// TestSelectors plans and executes each ledger selector against real users
// and leases: the plan lists exactly the selected users, planning changes
// nothing, executing drops exactly them, and executing again is idempotent.
func TestSelectors(t *testing.T) {
	t.Parallel()
	r := newRig(t, pgtest.Suffix()[:8], nil, nil)
	accA, accB := "hmac-sha256:acc-a-"+r.tag, "hmac-sha256:acc-b-"+r.tag
	entA, entB := "ent-a-"+r.tag, "ent-b-"+r.tag
	ro1 := r.issue(t, "ro", entA, accA)
	ro2 := r.issue(t, "ro", entA, accA)
	rw := r.issue(t, "rw", entB, accB)
	// Vault revoked roFailed but its user is still there (revocation
	// failed); roGone was revoked and is gone.
	roFailed := r.issue(t, "ro", entA, accA)
	r.revokeInLedger(t, roFailed)
	roGone := r.issue(t, "ro", entA, accA)
	r.revokeInLedger(t, roGone)
	if _, err := r.admin.Exec(r.ctx, "DROP ROLE "+pgx.Identifier{roGone.Username}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	prefix := r.sim.Mount + "/creds/ro/"
	all := []string{ro1.Username, ro2.Username, rw.Username, roFailed.Username}

	tests := []struct {
		name string
		sel  operator.Selector
		want []string
		gone int
	}{
		{"db user", operator.Selector{DBUser: ro1.Username}, []string{ro1.Username}, 0},
		{"lease id", operator.Selector{LeaseID: ro2.LeaseID}, []string{ro2.Username}, 0},
		{"prefix", operator.Selector{Prefix: prefix}, sorted(ro1.Username, ro2.Username, roFailed.Username), 1},
		{"prefix without slash", operator.Selector{Prefix: strings.TrimSuffix(prefix, "/")}, sorted(ro1.Username, ro2.Username, roFailed.Username), 1},
		{"entity", operator.Selector{EntityID: entB}, []string{rw.Username}, 0},
		{"token accessor", operator.Selector{TokenAccessor: accA}, sorted(ro1.Username, ro2.Username, roFailed.Username), 1},
		{"revoked lease whose user survived", operator.Selector{LeaseID: roFailed.LeaseID}, []string{roFailed.Username}, 0},
		{"revoked lease whose user is gone", operator.Selector{LeaseID: roGone.LeaseID}, nil, 1},
		{"other database", operator.Selector{EntityID: entB, Database: "main"}, []string{rw.Username}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := r.svc.Plan(r.ctx, operator.Request{Selector: tt.sel, Reason: "leaked", Actor: "alice", DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := users(p.Items); !slices.Equal(got, tt.want) {
				t.Errorf("planned %v, want %v", got, tt.want)
			}
			if p.Gone != tt.gone {
				t.Errorf("Gone = %d, want %d", p.Gone, tt.gone)
			}
			for _, it := range p.Items {
				if !it.Exists || it.Guard != "" || it.Database != "main" || it.LeaseID == "" || it.Why == "" {
					t.Errorf("item %+v", it)
				}
				if it.DBUser == roFailed.Username && !strings.Contains(it.Why, "revoked in the ledger but the role still exists") {
					t.Errorf("why = %q", it.Why)
				}
			}
		})
	}
	// Planning changed nothing.
	for _, u := range all {
		if !r.exists(t, u) {
			t.Fatalf("planning dropped %s", u)
		}
	}
	if n := r.count(t, "revocations") + r.count(t, "evidence_outbox"); n != 0 {
		t.Fatalf("planning wrote %d rows", n)
	}

	// Execute the prefix: exactly its users go.
	req := operator.Request{Selector: operator.Selector{Prefix: prefix}, Reason: "leaked in a CI log", Actor: "alice"}
	p, err := r.svc.Plan(r.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Execute(r.ctx, operator.Plan{Request: operator.Request{Selector: req.Selector, Reason: "x", Actor: "a", DryRun: true}}, nil); !errors.Is(err, operator.ErrDryRun) {
		t.Errorf("executing a dry run: %v", err)
	}
	var calls [][2]int
	res, err := r.svc.Execute(r.ctx, p, func(done, total int) { calls = append(calls, [2]int{done, total}) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(calls, [][2]int{{2, 3}, {3, 3}}) {
		t.Errorf("progress calls %v, want batches of 2", calls)
	}
	for i, x := range res {
		if x.Result.Outcome != schemas.OutcomeDropped || !x.Recorded || x.Duplicate || !operator.Gone(x) {
			t.Errorf("%s: %+v", p.Items[i].DBUser, x)
		}
		c := x.Command
		if c.Issuer != "operator" || c.Actor != "alice" || c.Rule != "operator-revoke" || c.Reason != req.Reason ||
			c.LeaseID != p.Items[i].LeaseID || c.Signature == "" || c.Emergency {
			t.Errorf("command %+v", c)
		}
	}
	for _, u := range []string{ro1.Username, ro2.Username, roFailed.Username} {
		if r.exists(t, u) {
			t.Errorf("%s survived", u)
		}
	}
	if !r.exists(t, rw.Username) {
		t.Fatal("an unselected user was dropped")
	}

	// The same request again: the same commands, found recorded.
	again, err := r.svc.Execute(r.ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range again {
		if !x.Duplicate || x.Command.ID != res[i].Command.ID || x.Result.Outcome != schemas.OutcomeDropped {
			t.Errorf("same request again: %+v", x)
		}
	}
	// A new request for the same selector: already_absent, no new "dropped".
	p2, err := r.svc.Plan(r.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Request.RequestID == p.Request.RequestID {
		t.Fatal("a new plan reuses the request id")
	}
	if got := users(p2.Items); !slices.Equal(got, sorted(ro1.Username, ro2.Username)) {
		// roFailed is revoked in the ledger and now absent: known gone.
		t.Errorf("second plan %v", got)
	}
	res2, err := r.svc.Execute(r.ctx, p2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res2 {
		if x.Result.Outcome != schemas.OutcomeAlreadyAbsent || x.Duplicate || !operator.Gone(x) {
			t.Errorf("re-run: %+v", x)
		}
	}
	var dropped int
	if err := r.st.Pool().QueryRow(r.ctx, "SELECT count(*) FROM revocations WHERE outcome = 'dropped'").Scan(&dropped); err != nil {
		t.Fatal(err)
	}
	if dropped != 3 {
		t.Errorf("%d dropped outcomes recorded, want 3", dropped)
	}

	// Evidence: one event per recorded outcome, valid, naming the actor.
	var ids []string
	for _, x := range append(res, res2...) {
		ids = append(ids, x.Command.ID)
	}
	evs, err := store.RevocationEvidence(r.ctx, r.st.Pool(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("%d evidence events, want 5", len(evs))
	}
	for id, raw := range evs {
		if err := schemas.ValidateJSON("evidence", raw); err != nil {
			t.Errorf("evidence of %s: %v", id, err)
		}
		if !strings.Contains(string(raw), `"actor":"alice"`) || !strings.Contains(string(raw), `"rule":"operator-revoke"`) {
			t.Errorf("evidence of %s lacks actor or rule: %s", id, raw)
		}
	}
}

// TestUnleasedUser: a user the ledger never saw (an audit gap) can be named.
func TestUnleasedUser(t *testing.T) {
	t.Parallel()
	r := newRig(t, pgtest.Suffix()[:8], nil, nil)
	name := "v-" + r.tag + "-orphan"
	r.createRole(t, name, "LOGIN")
	p, err := r.svc.Plan(r.ctx, operator.Request{Selector: operator.Selector{DBUser: name}, Reason: "orphan", Actor: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 || p.Items[0].LeaseID != "" || !p.Items[0].Exists || !strings.Contains(p.Items[0].Why, "no lease") {
		t.Fatalf("plan %+v", p.Items)
	}
	res, err := r.svc.Execute(r.ctx, p, nil)
	if err != nil || res[0].Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("execute: %v %+v", err, res)
	}
	p, err = r.svc.Plan(r.ctx, operator.Request{Selector: operator.Selector{DBUser: name}, Reason: "orphan", Actor: "bob"})
	if err != nil || len(p.Items) != 0 {
		t.Fatalf("plan after the drop: %v %+v", err, p.Items)
	}
	if _, err := r.svc.Plan(r.ctx, operator.Request{Selector: operator.Selector{DBUser: name, Database: "nope"}, Reason: "x", Actor: "bob"}); !errors.Is(err, operator.ErrInvalid) {
		t.Errorf("unknown database: %v", err)
	}
}

// TestAllManaged: break-glass takes every managed role of the database, and
// the guards still hold: protected roles, superusers and unmanaged names
// survive, and the plan said so beforehand.
func TestAllManaged(t *testing.T) {
	t.Parallel()
	tag := pgtest.Suffix()[:8]
	protected := "v-" + tag + "-protected"
	r := newRig(t, tag, []string{protected}, nil)

	a := r.issue(t, "ro", "e", "acc")
	b := "v-" + r.tag + "-hand-made"
	r.createRole(t, b, "LOGIN")
	r.createRole(t, protected, "LOGIN")
	super := "v-" + r.tag + "-super"
	r.createRole(t, super, "SUPERUSER NOLOGIN")
	unmanaged := "app-" + r.tag
	r.createRole(t, unmanaged, "LOGIN")

	req := operator.Request{Selector: operator.Selector{AllManaged: true, Database: "main"}, Reason: "break glass", Actor: "carol", DryRun: true}
	p, err := r.svc.Plan(r.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := sorted(a.Username, b, protected, super)
	if got := users(p.Items); !slices.Equal(got, want) {
		t.Fatalf("planned %v, want %v", got, want)
	}
	guards := map[string]string{}
	for _, it := range p.Items {
		guards[it.DBUser] = it.Guard
		if it.DBUser == a.Username && it.LeaseID != a.LeaseID {
			t.Errorf("the managed user's lease was not found: %+v", it)
		}
	}
	if guards[protected] != revoker.GuardProtected || guards[super] != revoker.GuardSuperuser || guards[a.Username] != "" || guards[b] != "" {
		t.Errorf("guards %v", guards)
	}
	if p.Unmanaged == 0 {
		t.Error("unmanaged roles not counted")
	}

	req.DryRun = false
	p, err = r.svc.Plan(r.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.svc.Execute(r.ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]schemas.Outcome{}
	for _, x := range res {
		outcomes[x.Command.DBUser] = x.Result.Outcome
	}
	if outcomes[a.Username] != schemas.OutcomeDropped || outcomes[b] != schemas.OutcomeDropped ||
		outcomes[protected] != schemas.OutcomeRefused || outcomes[super] != schemas.OutcomeRefused {
		t.Errorf("outcomes %v", outcomes)
	}
	for _, name := range []string{protected, super, unmanaged} {
		if !r.exists(t, name) {
			t.Errorf("%s was dropped", name)
		}
	}
	for _, name := range []string{a.Username, b} {
		if r.exists(t, name) {
			t.Errorf("%s survived", name)
		}
	}
}

// TestEmergencyBypassesLimit: the blast-radius limit holds operator
// commands back unless the request is an emergency.
func TestEmergencyBypassesLimit(t *testing.T) {
	t.Parallel()
	lim, err := revoker.NewLimiter(revoker.LimiterConfig{PerMinute: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, pgtest.Suffix()[:8], nil, lim)
	var names []string
	for i := range 3 {
		n := fmt.Sprintf("v-%s-n%d", r.tag, i)
		r.createRole(t, n, "LOGIN")
		names = append(names, n)
	}
	run := func(emergency bool, names ...string) []revoker.Executed {
		t.Helper()
		var res []revoker.Executed
		for _, n := range names {
			ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
			p, err := r.svc.Plan(ctx, operator.Request{Selector: operator.Selector{DBUser: n}, Reason: "r", Actor: "a", Emergency: emergency})
			if err != nil {
				t.Fatal(err)
			}
			x, _ := r.svc.Execute(ctx, p, nil)
			cancel()
			res = append(res, x...)
		}
		return res
	}
	// The first takes the only token; the second would wait a minute.
	res := run(false, names[0], names[1])
	if !operator.Gone(res[0]) || res[1].Recorded || !strings.Contains(fmt.Sprint(res[1].Err), "blast-radius") {
		t.Fatalf("limited run: %+v", res)
	}
	if !r.exists(t, names[1]) {
		t.Fatal("the limit did not hold the second command back")
	}
	res = run(true, names[1], names[2])
	for _, x := range res {
		if !operator.Gone(x) || !x.Command.Emergency {
			t.Errorf("emergency: %+v", x)
		}
	}
}

// TestExecuteCancelled: an interrupted run reports what it did not reach
// and drops nothing more.
func TestExecuteCancelled(t *testing.T) {
	t.Parallel()
	r := newRig(t, pgtest.Suffix()[:8], nil, nil)
	name := "v-" + r.tag + "-late"
	r.createRole(t, name, "LOGIN")
	p, err := r.svc.Plan(r.ctx, operator.Request{Selector: operator.Selector{DBUser: name}, Reason: "r", Actor: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	cancel()
	res, err := r.svc.Execute(ctx, p, nil)
	if !errors.Is(err, context.Canceled) || len(res) != 1 || res[0].Recorded || res[0].Err == nil || res[0].Command.ID == "" {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	if !r.exists(t, name) {
		t.Fatal("a cancelled run dropped the user")
	}
}

// TestResumeUnfinished: a run killed after a drop committed but before its
// outcome was recorded is finished by executing the same request again,
// even though the selector no longer finds the (now absent) role; the
// outcome is the one "dropped".
func TestResumeUnfinished(t *testing.T) {
	t.Parallel()
	r := newRig(t, pgtest.Suffix()[:8], nil, nil)
	name := "v-" + r.tag + "-resume"
	r.createRole(t, name, "LOGIN")
	req := operator.Request{Selector: operator.Selector{AllManaged: true, Database: "main"}, Reason: "incident", Actor: "dana", RequestID: "req-" + r.tag}
	p, err := r.svc.Plan(r.ctx, req)
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("plan: %v %+v", err, p.Items)
	}
	cmds, err := r.svc.Commands(r.ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	// The interrupted run: claimed, dropped (committed), never recorded.
	if _, err := store.ClaimRevocation(r.ctx, r.st.Pool(), cmds[0]); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(r.ctx, r.admin, func(tx pgx.Tx) error {
		var xid int64
		if err := tx.QueryRow(r.ctx, "SELECT txid_current()").Scan(&xid); err != nil {
			return err
		}
		if _, err := tx.Exec(r.ctx, "DROP ROLE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return err
		}
		return store.SetTargetXID(r.ctx, r.st.Pool(), []string{cmds[0].ID}, xid)
	})
	if err != nil {
		t.Fatal(err)
	}

	other := req
	other.RequestID = "other-" + r.tag
	if p, err := r.svc.Plan(r.ctx, other); err != nil || len(p.Items) != 0 {
		t.Fatalf("another request picked up the unfinished command: %v %+v", err, p.Items)
	}
	p, err = r.svc.Plan(r.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 || p.Items[0].Exists || !strings.Contains(p.Items[0].Why, "resumed") {
		t.Fatalf("resumed plan %+v", p.Items)
	}
	res, err := r.svc.Execute(r.ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Command.ID != cmds[0].ID || res[0].Result.Outcome != schemas.OutcomeDropped || res[0].Duplicate {
		t.Fatalf("resumed: %+v", res[0])
	}
}
