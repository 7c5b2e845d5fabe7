package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/schemas"
)

// The adversarial suite: each test replays, against a running pipeline
// (real PostgreSQL, real embedded JetStream), what an attacker who can
// publish on the bus but holds no signing key and no login tried against
// main. Each checks that the valid user is still there, with LOGIN and its
// session alive; that the refusal or the unconfirmed finding is recorded,
// with an alert; and that the legitimate path still works beside it.

// adversary is a running pipeline whose observer and revoker manage only
// roles named v-<display>-…, and a simulated Vault client for it.
type adversary struct {
	t      *testing.T
	ctx    context.Context
	admin  *pgxpool.Pool
	schema string
	tag    string
	sim    *vaultsim.Sim
	p      *pipeline
	cfg    Config
}

// newAdversary prepares a state store schema, a tag for role names, and a
// simulated Vault client.
func newAdversary(t *testing.T) *adversary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	a := &adversary{t: t, ctx: ctx, admin: pgtest.Pool(t), schema: pgtest.Schema(t, "lg_adv"), tag: pgtest.Suffix()[:8]}
	a.sim = &vaultsim.Sim{Pool: a.admin, Mount: "pg-" + a.tag, DisplayName: a.tag, EntityID: "ent-" + a.tag, RemoteAddress: "10.9.8.7"}
	return a
}

// startAdversary starts leaseguard with every part running; env overrides
// the suite's settings.
func startAdversary(t *testing.T, env map[string]string) *adversary {
	t.Helper()
	return newAdversary(t).start(env)
}

func (a *adversary) start(env map[string]string) *adversary {
	t := a.t
	t.Helper()
	settings := map[string]string{
		"LEASEGUARD_DATABASE_URL":               pgtest.URL(),
		"LEASEGUARD_DATABASE_SCHEMA":            a.schema,
		"LEASEGUARD_DATA_DIR":                   t.TempDir(),
		"LEASEGUARD_NATS_URL":                   "",
		"LEASEGUARD_TARGETS":                    "",
		"LEASEGUARD_ROLES":                      "ingest,detectors,revoker,relay,observer,alerts",
		"LEASEGUARD_METRICS_ADDR":               "127.0.0.1:0",
		"LEASEGUARD_EXPIRY_GRACE":               "1s",
		"LEASEGUARD_DETECT_INTERVAL":            "200ms",
		"LEASEGUARD_OBSERVE_INTERVAL":           "300ms",
		"LEASEGUARD_ALERT_INTERVAL":             "200ms",
		"LEASEGUARD_MANAGED_ROLE_PATTERN":       "^v-" + a.tag + "-",
		"LEASEGUARD_INSTANCE":                   "adversary-" + a.tag,
		"LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE": "600",
		"LEASEGUARD_PROTECTED_ROLES":            "",
		"LEASEGUARD_RULE_MODES":                 "",
		// Enforce everywhere: the managed pattern keeps it on this suite's
		// users.
		"LEASEGUARD_ENFORCE_SCOPE":       "*",
		"LEASEGUARD_COMMAND_SIGNING_KEY": "",
	}
	for k, v := range env {
		settings[k] = v
	}
	for k, v := range settings {
		t.Setenv(k, v)
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	var logs io.Writer = io.Discard
	if testing.Verbose() && os.Getenv("TEST_LOGS") != "" {
		logs = os.Stderr
	}
	p, err := startPipeline(a.ctx, cfg, newLogger(logs, "debug", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop() })
	a.p, a.cfg = p, cfg
	return a
}

func (a *adversary) name(s string) string { return "v-" + a.tag + "-" + s }

// publish puts messages on subject as any client of the bus can.
func (a *adversary) publish(subject string, msgs ...[]byte) {
	a.t.Helper()
	for _, m := range msgs {
		if _, err := a.p.js.Publish(a.ctx, subject, m); err != nil {
			a.t.Fatal(err)
		}
	}
}

// issue creates a user as Vault's plugin does, with VALID UNTIL at its
// lease's expiry + 5 s, and publishes the audit entries Vault writes.
func (a *adversary) issue(role string, ttl time.Duration) vaultsim.Cred {
	a.t.Helper()
	c, lines, err := a.sim.Issue(a.ctx, role, ttl)
	if err != nil {
		a.t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(a.t, a.admin, c.Username)
	a.publish("vault.audit.file", lines...)
	return c
}

// role creates a role with the given attributes (cleaned up).
func (a *adversary) role(name, attrs string) {
	a.t.Helper()
	pgtest.DropRoleAtCleanup(a.t, a.admin, name)
	if _, err := a.admin.Exec(a.ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" "+attrs); err != nil {
		a.t.Fatal(err)
	}
}

func (a *adversary) connect(user, password string) *pgx.Conn {
	a.t.Helper()
	return connectAs(a.t, a.ctx, user, password)
}

// login reports whether user exists and may log in.
func (a *adversary) login(user string) (exists, canLogin bool) {
	a.t.Helper()
	err := a.admin.QueryRow(a.ctx, `SELECT rolcanlogin FROM pg_roles WHERE rolname = $1`, user).Scan(&canLogin)
	if err == pgx.ErrNoRows {
		return false, false
	}
	if err != nil {
		a.t.Fatal(err)
	}
	return true, canLogin
}

func (a *adversary) count(query string, args ...any) int {
	a.t.Helper()
	var n int
	q := strings.ReplaceAll(query, "$schema", pgx.Identifier{a.schema}.Sanitize())
	if err := a.admin.QueryRow(a.ctx, q, args...).Scan(&n); err != nil {
		a.t.Fatal(err)
	}
	return n
}

// findings counts the findings of rule naming user with the given action.
func (a *adversary) findings(rule, user, action string) int {
	return a.count(`SELECT count(*) FROM $schema.findings WHERE rule = $1 AND db_user = $2 AND action = $3`, rule, user, action)
}

// alerted reports whether an alert is open for rule and user.
func (a *adversary) alerted(rule, user string) bool {
	return a.count(`SELECT count(*) FROM $schema.alerts WHERE rule = $1 AND db_user = $2`, rule, user) > 0
}

// wantIntact fails unless user exists, may log in, and conn answers.
func (a *adversary) wantIntact(user string, conn *pgx.Conn) {
	a.t.Helper()
	if exists, login := a.login(user); !exists || !login {
		a.t.Errorf("the valid user %s: exists %v, login %v", user, exists, login)
	}
	if conn != nil {
		if err := conn.Ping(a.ctx); err != nil {
			a.t.Errorf("the valid user's session was cut: %v", err)
		}
	}
}

// wantDropped waits for a truly expired user to be dropped and its outcome
// recorded: the legitimate path works beside the attack.
func (a *adversary) wantDropped(user string) {
	a.t.Helper()
	waitFor(a.t, a.ctx, 30*time.Second, "the expired user "+user+" dropped, and recorded", func() bool {
		exists, _ := a.login(user)
		return !exists && a.count(`SELECT count(*) FROM $schema.revocations WHERE db_user = $1 AND outcome = 'dropped'`, user) == 1
	})
}

// 1. A forged revoke-prefix must not drop a valid user: the lease is
// "revoked per audit", which neither arms nor disarms a drop. The user's
// password is valid for an hour and there is no Vault to say otherwise.
func TestAdversaryForgedRevokePrefix(t *testing.T) {
	a := startAdversary(t, nil)
	// Issued two minutes ago, valid for an hour; the forger dates the
	// revocation a minute ago, past the rule's grace.
	a.sim.Clock = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	victim := a.issue("app", time.Hour)
	a.sim.Clock = nil
	conn := a.connect(victim.Username, victim.Password)
	expired := a.issue("old", -10*time.Second)
	waitFor(t, a.ctx, 20*time.Second, "the victim's lease in the ledger", func() bool {
		return a.count(`SELECT count(*) FROM $schema.leases WHERE lease_id = $1`, victim.LeaseID) == 1
	})
	a.sim.Clock = func() time.Time { return time.Now().Add(-time.Minute) }
	a.publish("vault.audit.forged", a.sim.RevokePrefixEntries(a.sim.Mount+"/creds/app/")...)
	a.sim.Clock = nil

	waitFor(t, a.ctx, 30*time.Second, "an unconfirmed reuse finding, alerted, or the victim dropped", func() bool {
		exists, _ := a.login(victim.Username)
		return !exists || (a.findings("credential-reuse-after-revoke", victim.Username, "unconfirmed") > 0 &&
			a.alerted("credential-reuse-after-revoke", victim.Username))
	})
	a.wantIntact(victim.Username, conn)
	if n := a.findings("credential-reuse-after-revoke", victim.Username, "revocation_requested"); n != 0 {
		t.Errorf("%d revocations requested on a forged revoke", n)
	}
	a.wantDropped(expired.Username)
}

// 2. A forged LeaseEvent with a past expiry must not drop users whose
// password the database honours without limit (VALID UNTIL NULL or
// infinity): no Vault says the lease ended.
func TestAdversaryForgedLeaseEvent(t *testing.T) {
	a := startAdversary(t, nil)
	null, inf := a.name("app-null"), a.name("app-inf")
	a.role(null, "LOGIN")
	a.role(inf, "LOGIN VALID UNTIL 'infinity'")
	expired := a.issue("old", -10*time.Second)
	past := time.Now().Add(-time.Hour).UTC()
	for i, u := range []string{null, inf} {
		ev := schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued,
			LeaseID: fmt.Sprintf("%s/creds/app/Forged%018d", a.sim.Mount, i), Mount: a.sim.Mount, Role: "app",
			DBUser: u, IssueTime: &past, ExpireTime: &past, ExpireSource: schemas.ExpireFromEvent, EventTime: past,
			VaultRequestID: fmt.Sprintf("forged-%d", i), Source: schemas.SourceRef{Transport: "nats"}}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		a.publish("vault.leases.forged", b)
	}
	waitFor(t, a.ctx, 30*time.Second, "unconfirmed findings, alerted, or the users dropped", func() bool {
		for _, u := range []string{null, inf} {
			exists, _ := a.login(u)
			if !exists {
				return true
			}
			if a.findings("lease-expired-not-revoked", u, "unconfirmed") == 0 || !a.alerted("lease-expired-not-revoked", u) {
				return false
			}
		}
		return true
	})
	a.wantIntact(null, nil)
	a.wantIntact(inf, nil)
	a.wantDropped(expired.Username)
}

// predictedID is how main derived an expiry command's id, which an
// attacker could compute from the audit stream.
func predictedID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// 3. An unsigned command carrying the id of a revocation about to happen,
// published first with that id as its JetStream message id, must not
// suppress the real one: the leaked user is dropped, and the forgery is
// refused under its own hash, with an alert.
func TestAdversarySuppressedRevocation(t *testing.T) {
	a := startAdversary(t, nil)
	leaked := a.issue("app", 2*time.Second)
	db := a.cfg.targetName()
	id := predictedID("revoke", db, leaked.Username, leaked.LeaseID, "lease-expired-not-revoked")
	cmd, err := json.Marshal(map[string]any{"type": schemas.RevocationCommandType, "id": id, "action": "drop_role",
		"issued_at": time.Now().UTC(), "expires_at": time.Now().Add(time.Hour).UTC(), "nonce": strings.Repeat("0", 32),
		"issuer": "detector", "rule": "lease-expired-not-revoked", "database": db,
		"target": map[string]any{"system_identifier": "1", "database_oid": 1}, "db_user": leaked.Username, "role_oid": 0,
		"reason": "suppress", "corroboration": map[string]any{"source": "operator", "checked_at": time.Now().UTC()}})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(a.cfg.RevocationSubject)
	m.Data = cmd
	if _, err := a.p.js.PublishMsg(a.ctx, m, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
	a.wantDropped(leaked.Username)
	waitFor(t, a.ctx, 10*time.Second, "the forged command refused under its hash, alerted", func() bool {
		return a.count(`SELECT count(*) FROM $schema.refused_commands WHERE command_id = $1 AND guard = 'signature'`, id) == 1 &&
			a.alerted("command-refused", leaked.Username)
	})
	if n := a.count(`SELECT count(*) FROM $schema.revocations WHERE command_id = $1 AND outcome = 'dropped'`, id); n != 1 {
		t.Errorf("the real command under id %s: %d dropped outcomes", id, n)
	}
}

// 5. A proposal held for approval, republished on the bus after an owner
// rejected it, must not drop the user; an approved one still does.
func TestAdversaryRepublishedRejectedApproval(t *testing.T) {
	a := startAdversary(t, map[string]string{"LEASEGUARD_RULE_MODES": "lease-expired-not-revoked=approve"})
	kept := a.issue("app", -10*time.Second)
	approved := a.issue("old", -10*time.Second)
	pendingOf := func(user string) (id string, cmd []byte) {
		waitFor(t, a.ctx, 30*time.Second, "a pending revocation of "+user, func() bool {
			return a.count(`SELECT count(*) FROM $schema.pending_revocations WHERE db_user = $1`, user) == 1
		})
		q := strings.ReplaceAll(`SELECT id, command::text FROM $schema.pending_revocations WHERE db_user = $1`, "$schema", pgx.Identifier{a.schema}.Sanitize())
		var doc string
		if err := a.admin.QueryRow(a.ctx, q, user).Scan(&id, &doc); err != nil {
			t.Fatal(err)
		}
		return id, []byte(doc)
	}
	keptID, stored := pendingOf(kept.Username)
	if code, _, stderr := runMain(t, "", "reject", keptID, "--as", "owner", "--comment", "still in use"); code != 0 {
		t.Fatalf("reject: exit %d %s", code, stderr)
	}
	a.publish(a.cfg.RevocationSubject, stored)
	approvedID, _ := pendingOf(approved.Username)
	if code, _, stderr := runMain(t, "", "approve", approvedID, "--actor", "owner"); code != 0 {
		t.Fatalf("approve: exit %d %s", code, stderr)
	}
	a.wantDropped(approved.Username)
	waitFor(t, a.ctx, 20*time.Second, "the republished proposal refused, alerted, or the user dropped", func() bool {
		exists, _ := a.login(kept.Username)
		return !exists || (a.count(`SELECT count(*) FROM $schema.refused_commands WHERE command_id = $1`, keptID) == 1 &&
			a.alerted("command-refused", kept.Username))
	})
	a.wantIntact(kept.Username, nil)
}

// 6. A captured signed command acts nowhere else: not on a re-created user
// of the same name (a state store restored, so the id is free again), and
// not on another database a second installation names the same.
func TestAdversaryReplayedCommand(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	key := base64.StdEncoding.EncodeToString(seed)
	a := startAdversary(t, map[string]string{"LEASEGUARD_COMMAND_SIGNING_KEY": key})
	victim := a.issue("app", -10*time.Second)
	a.wantDropped(victim.Username)
	q := strings.ReplaceAll(`SELECT command::text FROM $schema.revocations WHERE db_user = $1 AND outcome = 'dropped'`, "$schema", pgx.Identifier{a.schema}.Sanitize())
	var captured string
	if err := a.admin.QueryRow(a.ctx, q, victim.Username).Scan(&captured); err != nil {
		t.Fatal(err)
	}
	// The user is created again, and logs in.
	a.role(victim.Username, "LOGIN PASSWORD 'again'")
	conn := a.connect(victim.Username, "again")
	_ = a.p.stop()

	// A second installation with the same key and a fresh state store: the
	// command's id is free there, the role's oid is not the one signed.
	pattern := "^v-" + a.tag + "-"
	b := startAdversary(t, map[string]string{"LEASEGUARD_COMMAND_SIGNING_KEY": key, "LEASEGUARD_ROLES": "revoker",
		"LEASEGUARD_MANAGED_ROLE_PATTERN": pattern})
	b.publish(b.cfg.RevocationSubject, []byte(captured))
	waitFor(t, b.ctx, 20*time.Second, "the replay refused, or the user dropped", func() bool {
		exists, _ := b.login(victim.Username)
		return !exists || b.count(`SELECT count(*) FROM $schema.revocations WHERE db_user = $1 AND result->>'guard' = 'role_oid'`, victim.Username) > 0
	})
	b.wantIntact(victim.Username, conn)
	if n := b.findings("command-refused", victim.Username, "none"); n != 1 {
		t.Errorf("%d command-refused findings for the replay on a re-created user, want 1", n)
	}
	_ = b.p.stop()

	// A third installation whose target of the same name is another
	// database (the role, cluster-wide, is there too).
	other := "lgadv_" + a.tag
	if _, err := a.admin.Exec(a.ctx, "CREATE DATABASE "+other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = a.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+other+" WITH (FORCE)") })
	otherURL := strings.Replace(pgtest.URL(), "/test?", "/"+other+"?", 1)
	c := startAdversary(t, map[string]string{"LEASEGUARD_COMMAND_SIGNING_KEY": key, "LEASEGUARD_ROLES": "revoker",
		"LEASEGUARD_MANAGED_ROLE_PATTERN": pattern, "LEASEGUARD_TARGETS": a.cfg.targetName() + "=" + otherURL})
	c.publish(c.cfg.RevocationSubject, []byte(captured))
	waitFor(t, c.ctx, 20*time.Second, "the replay refused, or the user dropped", func() bool {
		exists, _ := c.login(victim.Username)
		return !exists || c.count(`SELECT count(*) FROM $schema.refused_commands WHERE db_user = $1 AND guard = 'target'`, victim.Username) > 0
	})
	c.wantIntact(victim.Username, conn)
	if n := c.findings("command-refused", victim.Username, "none"); n != 1 {
		t.Errorf("%d command-refused findings for the replay on another database, want 1", n)
	}
}

// 7. A forged audit entry whose Vault request id looks like a Vault token
// must not stall the expiry detector: the value is kept out of the ledger
// and the evidence, and every lease of the pass is handled.
func TestAdversaryPoisonedLease(t *testing.T) {
	a := startAdversary(t, nil)
	const token = "hvs.CAESIJlWq2Vj0MeWl0AbcDefGhIjKlMnOpQr"
	poisoned, lines, err := a.sim.Issue(a.ctx, "app", -10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, a.admin, poisoned.Username)
	for _, l := range lines {
		var e map[string]any
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		e["request"].(map[string]any)["id"] = token
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		a.publish("vault.audit.forged", b)
	}
	expired := a.issue("old", -10*time.Second)
	a.wantDropped(expired.Username)
	a.wantDropped(poisoned.Username)
	if n := a.count(`SELECT (SELECT count(*) FROM $schema.evidence_outbox WHERE convert_from(event, 'UTF8') LIKE '%' || $1 || '%')
		+ (SELECT count(*) FROM $schema.findings WHERE finding::text LIKE '%' || $1 || '%')
		+ (SELECT count(*) FROM $schema.leases WHERE last_request_id = $1)`, token); n != 0 {
		t.Errorf("the token-shaped value reached the ledger, findings or evidence %d times", n)
	}
}

// 8. Ghost sessions are ended only through the revoker: a signed
// terminate_session command, behind its guards (a protected former user's
// session is not ended), the blast-radius limit and its evidence.
func TestAdversaryGhostSessionsThroughRevoker(t *testing.T) {
	a := newAdversary(t)
	protected := a.name("protected")
	a.start(map[string]string{"LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE": "1", "LEASEGUARD_PROTECTED_ROLES": protected})
	ghosts := []string{protected, a.name("ghost1"), a.name("ghost2")}
	conns := map[string]*pgx.Conn{}
	for _, g := range ghosts {
		a.role(g, "LOGIN PASSWORD 'pw'")
		conns[g] = a.connect(g, "pw")
	}
	// Let the observer see the roles, then drop them under their sessions
	// as Vault's own revocation does.
	waitFor(t, a.ctx, 20*time.Second, "the observer's pass over the roles", func() bool {
		return a.count(`SELECT count(*) FROM $schema.db_roles WHERE rolname = ANY($1)`, ghosts) == len(ghosts)
	})
	for _, g := range ghosts {
		if _, err := a.admin.Exec(a.ctx, "DROP ROLE "+pgx.Identifier{g}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, a.ctx, 30*time.Second, "one ghost terminated through the revoker, the protected one refused", func() bool {
		return a.count(`SELECT count(*) FROM $schema.revocations WHERE outcome = 'terminated'`) >= 1 &&
			a.count(`SELECT count(*) FROM $schema.revocations WHERE db_user = $1 AND result->>'guard' = 'protected'`, protected) == 1
	})
	if err := conns[protected].Ping(a.ctx); err != nil {
		t.Errorf("the protected user's session was ended: %v", err)
	}
	// The blast-radius limit holds the second ghost back: one a minute.
	alive := 0
	for _, g := range ghosts[1:] {
		if conns[g].Ping(a.ctx) == nil {
			alive++
		}
	}
	if alive != 1 {
		t.Errorf("%d of the two managed ghosts alive within the first minute, want 1 (limit 1/min)", alive)
	}
	if !strings.Contains(httpGet(t, "http://"+a.p.opsSrv.Addr()+"/metrics"), "leaseguard_revocation_throttling 1") {
		t.Error("the blast-radius limit is not reported as throttling")
	}
}
