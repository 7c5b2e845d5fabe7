package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
)

// startRollout starts a pipeline with env set; logs get its log.
func startRollout(t *testing.T, ctx context.Context, env map[string]string, logs *syncBuffer) *pipeline {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startPipeline(ctx, cfg, newLogger(logs, "debug", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop() })
	return p
}

// rolloutEnv is the pipeline's environment: only the lease path runs (the
// observer would judge every role of the shared test server), and nothing
// sets LEASEGUARD_ENFORCE_SCOPE or LEASEGUARD_RULE_MODES.
func rolloutEnv(t *testing.T, schema string) map[string]string {
	return map[string]string{
		"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": schema,
		"LEASEGUARD_DATA_DIR": t.TempDir(), "LEASEGUARD_ROLES": "ingest,detectors,revoker,relay",
		"LEASEGUARD_METRICS_ADDR": "127.0.0.1:0", "LEASEGUARD_EXPIRY_GRACE": "1s", "LEASEGUARD_DETECT_INTERVAL": "200ms",
		"LEASEGUARD_ENFORCE_SCOPE": "", "LEASEGUARD_RULE_MODES": "",
	}
}

// findingAction is the action of the lease-expired finding naming user
// ("" while there is none).
func findingAction(ctx context.Context, p *pipeline, user string) string {
	var action string
	_ = p.store.Pool().QueryRow(ctx, `SELECT action FROM findings WHERE db_user = $1 AND rule = 'lease-expired-not-revoked'
		ORDER BY detected_at DESC LIMIT 1`, user).Scan(&action)
	return action
}

func canLogin(ctx context.Context, p *pipeline, user string) bool {
	var ok bool
	_ = p.store.Pool().QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", user).Scan(&ok)
	return ok
}

// issueDue creates a Vault-style user whose lease is due a few seconds from
// now and publishes its audit entries to p's JetStream.
func issueDue(t *testing.T, ctx context.Context, p *pipeline, sim *vaultsim.Sim) vaultsim.Cred {
	t.Helper()
	c, lines, err := sim.Issue(ctx, "reporting", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, sim.Pool, c.Username)
	for _, l := range lines {
		if _, err := p.js.Publish(ctx, "vault.audit.file", l); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// runCLI runs one leaseguard command in process and returns its exit code
// and output.
func runCLI(ctx context.Context, args ...string) (int, string) {
	var out bytes.Buffer
	m := NewMain(strings.NewReader(""), &out, &out)
	code := m.Run(ctx, args)
	return code, out.String()
}

// TestRolloutPilotByDefault: a first `run` with no scope configured drops
// nobody; it records what it would have done (a would_drop finding, with
// its evidence). `leaseguard scope expand` makes the next pass enforce,
// also on the lease the pilot judged; `leaseguard scope rollback` stops
// enforcement again for the next lease. Every change is evidence naming
// its actor, and the chain verifies.
func TestRolloutPilotByDefault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	admin := pgtest.Pool(t)
	schema := pgtest.Schema(t, "lg_rollout")
	logs := &syncBuffer{}
	p := startRollout(t, ctx, rolloutEnv(t, schema), logs)
	// run says what it acts under.
	if !strings.Contains(logs.String(), `"msg":"enforcement policy in force","version":1,"scope":"(none: nothing is enforced)"`) ||
		!strings.Contains(logs.String(), `"managed_role_pattern":"^v-"`) || !strings.Contains(logs.String(), `lease-expired-not-revoked=enforce`) {
		t.Errorf("run does not log the policy it acts under: %s", logs.String())
	}
	sim := &vaultsim.Sim{Pool: admin, Mount: "postgres", DisplayName: "pilot" + pgtest.Suffix()[:3], EntityID: "ent-pilot", RemoteAddress: "10.1.2.3"}

	first := issueDue(t, ctx, p, sim)
	waitFor(t, ctx, 40*time.Second, "a would_drop finding", func() bool { return findingAction(ctx, p, first.Username) != "" })
	if got := findingAction(ctx, p, first.Username); got != "would_drop" {
		t.Fatalf("finding action %q with no scope configured, want would_drop", got)
	}
	from := detectorPasses(t, p)
	waitFor(t, ctx, 30*time.Second, "two more expiry passes", func() bool { return detectorPasses(t, p) >= from+2 })
	if !canLogin(ctx, p, first.Username) {
		t.Fatalf("user %s lost LOGIN (or was dropped) with no scope configured", first.Username)
	}
	var evAction string
	if err := p.store.Pool().QueryRow(ctx, `SELECT convert_from(o.event, 'UTF8')::jsonb #>> '{data,unmapped,action}'
		FROM findings f JOIN evidence_outbox o ON o.id = f.evidence_id WHERE f.db_user = $1`, first.Username).Scan(&evAction); err != nil || evAction != "would_drop" {
		t.Errorf("finding evidence action %q, %v; want would_drop", evAction, err)
	}

	if code, out := runCLI(ctx, "scope", "expand", "--add", "*"); code != exitUsage {
		t.Errorf("scope expand without a reason: exit %d, want %d: %s", code, exitUsage, out)
	}
	if code, out := runCLI(ctx, "scope", "expand", "--add", "*", "--reason", "pilot signed off: CHG-1", "--actor", "alice"); code != 0 {
		t.Fatalf("scope expand: exit %d: %s", code, out)
	}
	waitFor(t, ctx, 40*time.Second, "the piloted user dropped after the expansion", func() bool { return !roleExists(ctx, admin, first.Username) })

	if code, out := runCLI(ctx, "scope", "rollback", "--reason", "too wide: INC-9", "--actor", "bob"); code != 0 {
		t.Fatalf("scope rollback: exit %d: %s", code, out)
	}
	second := issueDue(t, ctx, p, sim)
	waitFor(t, ctx, 40*time.Second, "a finding after the rollback", func() bool { return findingAction(ctx, p, second.Username) != "" })
	if got := findingAction(ctx, p, second.Username); got != "would_drop" {
		t.Errorf("after rollback: finding action %q, want would_drop", got)
	}
	from = detectorPasses(t, p)
	waitFor(t, ctx, 30*time.Second, "two more expiry passes", func() bool { return detectorPasses(t, p) >= from+2 })
	if !canLogin(ctx, p, second.Username) {
		t.Errorf("user %s lost LOGIN after the rollback", second.Username)
	}

	checkPolicyEvidence(t, ctx, p, map[string]string{"alice": "pilot signed off: CHG-1", "bob": "too wide: INC-9", "configuration": ""})
	if code, out := runCLI(ctx, "evidence", "verify"); code != 0 {
		t.Errorf("evidence verify exit %d: %s", code, out)
	}
}

// checkPolicyEvidence checks that the outbox holds a policy event of each
// actor, with its reason ("" for any).
func checkPolicyEvidence(t *testing.T, ctx context.Context, p *pipeline, want map[string]string) {
	t.Helper()
	rows, err := p.store.Pool().Query(ctx, `SELECT convert_from(event, 'UTF8') FROM evidence_outbox
		WHERE type = 'io.leaseguard.policy.v1' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, raw := range raws {
		var ev evidence.Event
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			t.Fatal(err)
		}
		var data struct {
			Actor struct {
				User struct{ Name string } `json:"user"`
			} `json:"actor"`
			Comment string `json:"comment"`
		}
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		got[data.Actor.User.Name] = data.Comment
	}
	for actor, reason := range want {
		// --actor keeps the OS user beside the name given: "alice (os user …)".
		var r string
		var ok bool
		for name, c := range got {
			if name == actor || strings.HasPrefix(name, actor+" (os user ") {
				r, ok = c, true
			}
		}
		if !ok || (reason != "" && r != reason) {
			t.Errorf("policy evidence of %s: %q (present %v), want reason %q; all: %v", actor, r, ok, reason, got)
		}
	}
}

// TestRestartKeepsThePolicyInForce: a restart with another configured
// scope does not change the policy in force (the pilot stays a pilot); it
// says so loudly, and `scope rollback --to config` adopts it.
func TestRestartKeepsThePolicyInForce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env := rolloutEnv(t, pgtest.Schema(t, "lg_restart"))
	env["LEASEGUARD_ROLES"] = "relay"
	first := startRollout(t, ctx, env, &syncBuffer{})
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	env["LEASEGUARD_ENFORCE_SCOPE"] = "*"
	logs := &syncBuffer{}
	second := startRollout(t, ctx, env, logs)
	if !strings.Contains(logs.String(), `"level":"ERROR","msg":"the configured enforcement policy differs from the one in force`) ||
		!strings.Contains(logs.String(), `"configured_scope":"*"`) {
		t.Errorf("no loud log of the configuration's difference: %s", logs.String())
	}
	pol, err := second.policies.Policy(ctx, second.store.Pool())
	if err != nil || pol.Version != 1 || !pol.Scope.Empty() {
		t.Fatalf("after a restart with scope *: %+v, %v; want version 1 enforcing nowhere", pol, err)
	}
	if code, out := runCLI(ctx, "scope", "rollback", "--to", "config", "--reason", "adopt *"); code != 0 {
		t.Fatalf("scope rollback --to config: exit %d: %s", code, out)
	}
	if pol, err = second.policies.Policy(ctx, second.store.Pool()); err != nil || pol.Version != 2 || !pol.Scope.All {
		t.Errorf("after adopting the configuration: %+v, %v", pol, err)
	}
}
