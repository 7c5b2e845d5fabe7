package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target"
)

// revokeRig is a state store in its own schema, NATS pointing at a closed
// port (revoke must not need it), and a managed pattern unique to the test
// so --all-managed can only ever reach this test's roles.
type revokeRig struct {
	ctx    context.Context
	admin  *pgxpool.Pool
	schema string
	tag    string
	db     string // the target name: the test database's
	sims   map[string]*vaultsim.Sim
	lines  [][]byte
}

func newRevokeRig(t *testing.T) *revokeRig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	r := &revokeRig{ctx: ctx, admin: pgtest.Pool(t), schema: pgtest.Schema(t, "lg_revoke"), tag: pgtest.Suffix()[:8],
		db: target.DefaultName(pgtest.URL()), sims: map[string]*vaultsim.Sim{}}
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", r.schema)
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	t.Setenv("LEASEGUARD_NATS_URL", "nats://"+closedAddr(t))
	t.Setenv("LEASEGUARD_TARGETS", "")
	t.Setenv("LEASEGUARD_ROUTES", "")
	t.Setenv("LEASEGUARD_MANAGED_ROLE_PATTERN", "^v-"+r.tag+"-")
	t.Setenv("LEASEGUARD_PROTECTED_ROLES", r.name("protected"))
	t.Setenv("LEASEGUARD_INSTANCE", "revoke-test")
	return r
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func (r *revokeRig) name(s string) string { return "v-" + r.tag + "-" + s }

// sim returns the simulated Vault client (one entity, one token) called who.
func (r *revokeRig) sim(who string) *vaultsim.Sim {
	if s, ok := r.sims[who]; ok {
		return s
	}
	s := &vaultsim.Sim{Pool: r.admin, Mount: "pg-" + r.tag, DisplayName: r.tag, EntityID: who + "-" + r.tag, RemoteAddress: "10.9.8.7"}
	r.sims[who] = s
	return s
}

// issue creates a user as Vault would and keeps the audit entries for load.
func (r *revokeRig) issue(t *testing.T, who, role string) vaultsim.Cred {
	t.Helper()
	c, lines, err := r.sim(who).Issue(r.ctx, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, c.Username)
	r.lines = append(r.lines, lines...)
	return c
}

// load replays the audit entries into the ledger, as `leaseguard replay`.
func (r *revokeRig) load(t *testing.T) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, append(bytes.Join(r.lines, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runMain(t, "", "replay", path); code != 0 {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
}

func (r *revokeRig) role(t *testing.T, name, attrs string) {
	t.Helper()
	if _, err := r.admin.Exec(r.ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" "+attrs); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, name)
}

func (r *revokeRig) exists(t *testing.T, name string) bool {
	t.Helper()
	return roleExists(r.ctx, r.admin, name)
}

func (r *revokeRig) rows(t *testing.T, query string) int {
	t.Helper()
	var n int
	q := strings.ReplaceAll(query, "$schema", pgx.Identifier{r.schema}.Sanitize())
	if err := r.admin.QueryRow(r.ctx, q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// evidenceLines parses --output json: one valid evidence event per line.
func evidenceLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		if err := schemas.ValidateJSON("evidence", []byte(line)); err != nil {
			t.Errorf("line does not validate against the evidence schema: %v\n%s", err, line)
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// unmapped returns data.unmapped.<key> of an evidence event.
func unmapped(ev map[string]any, key string) any {
	data, _ := ev["data"].(map[string]any)
	u, _ := data["unmapped"].(map[string]any)
	return u[key]
}

func outcomesOf(evs []map[string]any) map[string]string {
	out := map[string]string{}
	for _, ev := range evs {
		out[fmt.Sprint(unmapped(ev, "db_user"))] = fmt.Sprint(unmapped(ev, "outcome"))
	}
	return out
}

// TestRevokeDryRunThenRun: the dry run lists exactly the selected users and
// changes nothing; the run drops exactly them, with NATS unreachable; a
// second run is idempotent.
func TestRevokeDryRunThenRun(t *testing.T) {
	r := newRevokeRig(t)
	ro1 := r.issue(t, "alice", "ro")
	ro2 := r.issue(t, "alice", "ro")
	rw := r.issue(t, "bob", "rw")
	r.load(t)
	prefix := "pg-" + r.tag + "/creds/ro/"

	code, out, stderr := runMain(t, "", "revoke", "--prefix", prefix, "--reason", "leaked in CI", "--dry-run")
	if code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	for _, want := range []string{ro1.Username, ro2.Username, ro1.LeaseID, "would be dropped", "dry run, nothing was changed", "2 selected: 2 to drop"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, rw.Username) {
		t.Errorf("dry run lists an unselected user:\n%s", out)
	}
	code, out, stderr = runMain(t, "", "revoke", "--prefix", prefix, "--reason", "leaked in CI", "--dry-run", "--output", "json")
	if code != 0 {
		t.Fatalf("dry run json exit %d: %s", code, stderr)
	}
	var planned []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var it struct {
			DBUser string `json:"db_user"`
			Expect string `json:"expect"`
			Exists bool   `json:"exists"`
		}
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			t.Fatalf("dry run json line %q: %v", line, err)
		}
		if it.Expect != "would be dropped" || !it.Exists {
			t.Errorf("planned item %+v", it)
		}
		planned = append(planned, it.DBUser)
	}
	sort.Strings(planned)
	want := []string{ro1.Username, ro2.Username}
	sort.Strings(want)
	if !slices.Equal(planned, want) {
		t.Errorf("dry run planned %v, want %v", planned, want)
	}
	for _, u := range []string{ro1.Username, ro2.Username, rw.Username} {
		if !r.exists(t, u) {
			t.Fatalf("dry run dropped %s", u)
		}
	}
	if n := r.rows(t, "SELECT (SELECT count(*) FROM $schema.revocations) + (SELECT count(*) FROM $schema.evidence_outbox)"); n != 0 {
		t.Fatalf("dry run wrote %d rows", n)
	}

	code, out, stderr = runMain(t, "", "revoke", "--prefix", prefix, "--reason", "leaked in CI", "--yes", "--actor", "incident-42")
	if code != 0 {
		t.Fatalf("revoke exit %d:\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"OUTCOME", "dropped", ro1.LeaseID, "2 dropped, 0 already absent, 0 refused, 0 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if r.exists(t, ro1.Username) || r.exists(t, ro2.Username) {
		t.Error("a selected user survived")
	}
	if !r.exists(t, rw.Username) {
		t.Error("an unselected user was dropped")
	}
	if n := r.rows(t, "SELECT count(*) FROM $schema.revocations WHERE actor LIKE 'incident-42%' AND issuer = 'operator' AND rule = 'operator-revoke'"); n != 2 {
		t.Errorf("%d operator revocations recorded with the actor, want 2", n)
	}

	// Again: the users are gone; already_absent, no second "dropped".
	code, out, stderr = runMain(t, "", "revoke", "--prefix", prefix, "--reason", "leaked in CI", "--yes", "--output", "json")
	if code != 0 {
		t.Fatalf("second revoke exit %d:\n%s\n%s", code, out, stderr)
	}
	evs := evidenceLines(t, out)
	if len(evs) != 2 {
		t.Fatalf("%d evidence lines, want 2:\n%s", len(evs), out)
	}
	for u, o := range outcomesOf(evs) {
		if o != "already_absent" {
			t.Errorf("second run: %s %s", u, o)
		}
	}
	if n := r.rows(t, "SELECT count(*) FROM $schema.revocations WHERE outcome = 'dropped'"); n != 2 {
		t.Errorf("%d dropped outcomes, want 2", n)
	}
	if code, out, _ := runMain(t, "", "evidence", "verify"); code != 0 {
		t.Errorf("evidence verify exit %d: %s", code, out)
	}
}

// TestRevokeSelectors: each selector drops exactly its users; --output json
// prints their evidence events.
func TestRevokeSelectors(t *testing.T) {
	r := newRevokeRig(t)
	a1 := r.issue(t, "alice", "ro")
	a2 := r.issue(t, "alice", "rw")
	b1 := r.issue(t, "bob", "ro")
	c1 := r.issue(t, "carol", "ro")
	d1 := r.issue(t, "dave", "ro")
	orphan := r.name("orphan") // created in an audit gap: no lease
	r.role(t, orphan, "LOGIN")
	r.load(t)
	bystanders := []string{a1.Username, a2.Username, b1.Username, c1.Username, d1.Username, orphan}

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"db-user", []string{"--db-user", b1.Username}, []string{b1.Username}},
		{"db-user without lease", []string{"--db-user", orphan, "--database", r.db}, []string{orphan}},
		{"lease-id", []string{"--lease-id", c1.LeaseID}, []string{c1.Username}},
		{"entity-id", []string{"--entity-id", r.sim("alice").EntityID}, []string{a1.Username, a2.Username}},
		{"token-accessor", []string{"--token-accessor", r.sim("dave").HMAC("accessor")}, []string{d1.Username}},
	}
	for _, tt := range tests {
		args := append([]string{"revoke", "--reason", "test " + tt.name, "--yes", "--output", "json"}, tt.args...)
		code, out, stderr := runMain(t, "", args...)
		if code != 0 {
			t.Fatalf("%s: exit %d:\n%s\n%s", tt.name, code, out, stderr)
		}
		got := outcomesOf(evidenceLines(t, out))
		if len(got) != len(tt.want) {
			t.Errorf("%s: outcomes %v, want %v dropped", tt.name, got, tt.want)
		}
		for _, u := range tt.want {
			if got[u] != "dropped" {
				t.Errorf("%s: %s outcome %q", tt.name, u, got[u])
			}
			bystanders = slices.DeleteFunc(bystanders, func(s string) bool { return s == u })
		}
		for _, u := range tt.want {
			if r.exists(t, u) {
				t.Errorf("%s: %s survived", tt.name, u)
			}
		}
		for _, u := range bystanders {
			if !r.exists(t, u) {
				t.Errorf("%s: dropped %s, which it did not select", tt.name, u)
			}
		}
	}

	// A selector that matches nothing in the ledger is not a clean result.
	code, _, stderr := runMain(t, "", "revoke", "--lease-id", "pg-"+r.tag+"/creds/ro/nosuchlease", "--reason", "x", "--yes")
	if code != exitNotClean || !strings.Contains(stderr, "no lease in the ledger matches") {
		t.Errorf("unknown lease: exit %d, %s", code, stderr)
	}
}

// TestRevokeAllManaged: break-glass drops the managed roles of the database;
// the protected role and unmanaged names survive, the protected one is
// reported refused with evidence, and the exit status says not clean.
func TestRevokeAllManaged(t *testing.T) {
	r := newRevokeRig(t)
	vault := r.issue(t, "alice", "ro")
	hand := r.name("hand-made")
	r.role(t, hand, "LOGIN")
	protected := r.name("protected")
	r.role(t, protected, "LOGIN")
	unmanaged := "app-" + r.tag
	r.role(t, unmanaged, "LOGIN")
	r.load(t)

	code, out, stderr := runMain(t, "", "revoke", "--all-managed", "--database", r.db, "--reason", "break glass", "--dry-run")
	if code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "would be refused: protected") || strings.Contains(out, unmanaged) ||
		!strings.Contains(out, "3 selected: 2 to drop, 1 to be refused by a guard") {
		t.Errorf("dry run:\n%s", out)
	}

	code, out, stderr = runMain(t, "", "revoke", "--all-managed", "--database", r.db, "--reason", "break glass", "--yes", "--emergency", "--output", "json")
	if code != exitNotClean {
		t.Fatalf("exit %d, want %d (a refused role is not gone):\n%s\n%s", code, exitNotClean, out, stderr)
	}
	evs := evidenceLines(t, out)
	got := outcomesOf(evs)
	want := map[string]string{vault.Username: "dropped", hand: "dropped", protected: "refused"}
	if len(got) != len(want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
	for u, o := range want {
		if got[u] != o {
			t.Errorf("%s: outcome %q, want %q", u, got[u], o)
		}
	}
	for _, ev := range evs {
		if unmapped(ev, "db_user") == protected && unmapped(ev, "guard") != "protected" {
			t.Errorf("refusal evidence names guard %v", unmapped(ev, "guard"))
		}
		if unmapped(ev, "emergency") != true {
			t.Errorf("evidence does not record the emergency: %v", unmapped(ev, "emergency"))
		}
	}
	if !r.exists(t, protected) || !r.exists(t, unmanaged) {
		t.Error("a protected or unmanaged role was dropped")
	}
	if r.exists(t, vault.Username) || r.exists(t, hand) {
		t.Error("a managed role survived")
	}
	if !strings.Contains(stderr, "not verifiably gone") {
		t.Errorf("stderr: %s", stderr)
	}
}

// TestRevokeConfirmation: without --yes, a non-interactive stdin gets a
// refusal and nothing happens; a terminal gets the count and a question.
func TestRevokeConfirmation(t *testing.T) {
	r := newRevokeRig(t)
	c := r.issue(t, "alice", "ro")
	r.load(t)
	code, _, stderr := runMain(t, "yes\n", "revoke", "--db-user", c.Username, "--reason", "leak")
	if code != exitUsage || !strings.Contains(stderr, "stdin is not a terminal") || !strings.Contains(stderr, "--yes") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !r.exists(t, c.Username) {
		t.Fatal("dropped without confirmation")
	}
	if n := r.rows(t, "SELECT count(*) FROM $schema.revocations"); n != 0 {
		t.Fatalf("%d revocations recorded without confirmation", n)
	}

	plan := operator.Plan{Request: operator.Request{Reason: "leak", Actor: "alice"},
		Items: []operator.Item{{Database: "db", DBUser: "v-a", Exists: true}, {Database: "db", DBUser: "v-p", Exists: true, Guard: "protected"}}}
	for answer, want := range map[string]error{"y\n": nil, "YES\n": nil, "n\n": errNotConfirmed, "\n": errNotConfirmed, "": errNotConfirmed} {
		var w bytes.Buffer
		err := confirm(strings.NewReader(answer), true, &w, plan)
		if !errors.Is(err, want) && err != want {
			t.Errorf("answer %q: %v, want %v", answer, err, want)
		}
		if !strings.Contains(w.String(), "About to revoke 2 database user(s); 1 will be refused") || !strings.Contains(w.String(), "[y/N]") {
			t.Errorf("prompt:\n%s", w.String())
		}
	}
}

func TestRevokeUsage(t *testing.T) {
	newRevokeRig(t) // the last case plans against a real state store
	for _, args := range [][]string{
		{"--db-user", "v-x"}, // no reason
		{"--db-user", "v-x", "--lease-id", "a/b", "--reason", "r"}, // two selectors
		{"--all-managed", "--reason", "r"},                         // no database
		{"--reason", "r"},                                          // no selector
		{"--db-user", "v-x", "--reason", "r", "--output", "yaml"},
		{"--db-user", "v-x", "--reason", "r", "--database", "nosuchtarget", "--dry-run"},
	} {
		code, _, stderr := runMain(t, "", append([]string{"revoke"}, args...)...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, stderr)
		}
	}
}

func TestRevokeProgress(t *testing.T) {
	var w bytes.Buffer
	if p, stop := revokeProgress(&w, false, time.Now); p != nil {
		t.Fatal("progress on a non-terminal")
	} else {
		stop()
	}
	now := time.Unix(0, 0)
	p, stop := revokeProgress(&w, true, func() time.Time { return now })
	p(100, 300)
	now = now.Add(50 * time.Millisecond)
	p(200, 300) // too soon: not shown
	now = now.Add(2 * time.Second)
	p(300, 300)
	stop()
	stop()
	out := w.String()
	if !strings.Contains(out, "revoking: 100/300 users") || strings.Contains(out, "200/300") ||
		!strings.Contains(out, "revoking: 300/300 users, 2s") || !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("progress output %q", out)
	}
}
