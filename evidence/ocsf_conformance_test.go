package evidence

import (
	"encoding/json"
	"maps"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// ocsfClassFiles are the classes leaseguard's events use, by class_uid.
var ocsfClassFiles = map[int]string{
	3001: "events/iam/account_change.json",                // revocations
	2004: "events/findings/detection_finding.json",        // findings, approvals
	3004: "events/iam/entity_management.json",             // policy changes
	6002: "events/application/application_lifecycle.json", // checkpoints
}

// ocsfRecommendedWaived are the recommended attributes leaseguard leaves
// out, "<class or object>.<attribute>", each with why. Anything else
// recommended and missing fails the conformance test.
var ocsfRecommendedWaived = map[string]string{
	// leaseguard is where these events originate: there is no earlier
	// event time, no separate reporter, and one instance is one tenant
	// (the CloudEvents source names it).
	"metadata.original_time": "leaseguard is the original source",
	"metadata.reporter":      "leaseguard is the original source",
	"metadata.tenant_uid":    "single-tenant",
	// The source of a deletion or policy change is leaseguard itself; the
	// address the lease's client used is not that, and is unmapped.
	"account_change.src_endpoint":    "the source is leaseguard",
	"entity_management.src_endpoint": "the source is leaseguard",
	// A deleted account has no resulting account.
	"account_change.user_result": "nothing results from a delete",
	// Database roles and the people acting through leaseguard's admin API
	// have no MFA state leaseguard could know.
	"user.has_mfa": "unknown to leaseguard",
	// leaseguard's rules are exact checks, not scores.
	"detection_finding.confidence_id": "rules are exact checks",
	// Artifacts of kinds leaseguard never sees (its evidence is a
	// database user and the address that obtained its lease).
	"evidences.container":            "not seen",
	"evidences.http_request":         "not seen",
	"evidences.http_response":        "not seen",
	"evidences.ja4_fingerprint_list": "not seen",
	"evidences.tls":                  "not seen",
	// Vault logs only the address of the client that obtained a lease.
	"network_endpoint.owner":   "not known",
	"network_endpoint.type_id": "not known",
	// The database's host and owner are the target's configuration, not
	// part of what a finding saw.
	"resource_details.hostname": "not in the finding",
	"resource_details.ip":       "not in the finding",
	"resource_details.owner":    "not in the finding",
	// The policy is a managed entity without an email address.
	"managed_entity.email": "a policy has none",
}

// ocsfTypeWaived are recommended attributes waived for every event of a type.
var ocsfTypeWaived = map[string]map[string]string{
	// A decision updates a finding; the artifacts are the finding's.
	TypeApproval: {"detection_finding.evidences": "the updated finding carries them"},
	// A checkpoint is about the evidence chain: no user or address.
	TypeCheckpoint: {"application_lifecycle.observables": "nothing to index"},
}

// ocsfWaived is what is waived for an event: for all, for its type, and
// for its shape (extra).
func ocsfWaived(ev Event, extra map[string]string) map[string]string {
	w := maps.Clone(ocsfRecommendedWaived)
	maps.Copy(w, ocsfTypeWaived[ev.Type])
	maps.Copy(w, extra)
	return w
}

// ocsfCase is one kind of event leaseguard emits, built by the real
// Builder.
type ocsfCase struct {
	name  string
	build func(t *testing.T, b Builder) Event
	// waive: recommended attributes this shape cannot have, and why.
	waive map[string]string
}

func revocationCase(name string, mutate func(*schemas.RevocationCommand, *schemas.RevocationResult), lease *LeaseContext) ocsfCase {
	return ocsfCase{name: name, build: func(t *testing.T, b Builder) Event {
		cmd := sampleCommand(1)
		res := sampleResult(cmd, schemas.OutcomeDropped)
		mutate(&cmd, &res)
		ev, err := b.Revocation(cmd, res, lease)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}}
}

func findingCase(name string, mutate func(*schemas.Finding), lease *LeaseContext) ocsfCase {
	return ocsfCase{name: name, build: func(t *testing.T, b Builder) Event {
		f := sampleFinding(1)
		mutate(&f)
		ev, err := b.Finding(f, lease)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}}
}

func approvalCase(decision schemas.ApprovalState) ocsfCase {
	return ocsfCase{name: "approval/" + string(decision), build: func(t *testing.T, b Builder) Event {
		at := t0
		d := schemas.ApprovalDecision{
			PendingID: "216e34caed2d7caee8976a46c3c33762", Decision: decision, DecidedBy: "alice", DecidedAt: at,
			Comment: "INC-7", FindingID: "finding-0001", Rule: "lease-expired-not-revoked", Severity: schemas.SeverityHigh,
			Database: "main", DBUser: "v-token-x", LeaseID: "database/creds/ro/abc", Summary: "expired",
			RequestedAt: at.Add(-time.Minute), ExpiresAt: at.Add(time.Hour),
		}
		if decision == schemas.ApprovalExpired {
			d.DecidedBy, d.Comment = DecidedBySystem, ""
		}
		ev, err := b.Approval(d)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}}
}

func policyCase(name string, first bool) ocsfCase {
	return ocsfCase{name: name, build: func(t *testing.T, b Builder) Event {
		c := samplePolicyChange()
		if first {
			c.Version, c.Kind, c.Previous, c.Actor = 1, schemas.PolicyConfiguration, nil, "configuration"
		}
		ev, err := b.Policy(c)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}}
}

// ocsfCases: every kind of evidence event, in every shape it takes.
func ocsfCases() []ocsfCase {
	none := func(*schemas.RevocationCommand, *schemas.RevocationResult) {}
	outcome := func(o schemas.Outcome) func(*schemas.RevocationCommand, *schemas.RevocationResult) {
		return func(cmd *schemas.RevocationCommand, res *schemas.RevocationResult) { *res = sampleResult(*cmd, o) }
	}
	session := func(o schemas.Outcome) func(*schemas.RevocationCommand, *schemas.RevocationResult) {
		return func(cmd *schemas.RevocationCommand, res *schemas.RevocationResult) {
			cmd.Action, cmd.Rule = schemas.ActionTerminateSession, "ghost-session"
			cmd.Session = &schemas.SessionRef{PID: 4242, BackendStart: t0.Add(-time.Hour), UserOID: 24601}
			*res = schemas.RevocationResult{CommandID: cmd.ID, Database: cmd.Database, DBUser: cmd.DBUser,
				Outcome: o, StartedAt: t0.Add(-time.Millisecond), FinishedAt: t0,
				Statements: []string{"SELECT pg_terminate_backend($1)"}, SessionsTerminated: 1, RoleAbsentAfter: true}
		}
	}
	return []ocsfCase{
		revocationCase("revocation/dropped", none, sampleLease(1)),
		revocationCase("revocation/dropped-without-lease", none, nil),
		revocationCase("revocation/dropped-after-crash", func(cmd *schemas.RevocationCommand, res *schemas.RevocationResult) {
			res.Reason = "dropped by an earlier attempt (target transaction 812 committed) that ended before recording"
		}, sampleLease(1)),
		revocationCase("revocation/already_absent", outcome(schemas.OutcomeAlreadyAbsent), sampleLease(1)),
		revocationCase("revocation/failed", outcome(schemas.OutcomeFailed), sampleLease(1)),
		revocationCase("revocation/refused", outcome(schemas.OutcomeRefused), sampleLease(1)),
		revocationCase("revocation/refused-unrecorded-command", func(cmd *schemas.RevocationCommand, res *schemas.RevocationResult) {
			*res = sampleResult(*cmd, schemas.OutcomeRefused)
			res.Guard, res.Reason, res.CommandHash = "signature", "bad signature", strings.Repeat("ab", 32)
		}, nil),
		revocationCase("revocation/terminated", session(schemas.OutcomeTerminated), nil),
		revocationCase("revocation/terminated-unknown-user", func(cmd *schemas.RevocationCommand, res *schemas.RevocationResult) {
			session(schemas.OutcomeTerminated)(cmd, res)
			cmd.DBUser, res.DBUser, cmd.LeaseID, cmd.RoleOID = "", "", "", 0
		}, nil),
		findingCase("finding/enforce", func(*schemas.Finding) {}, sampleLease(1)),
		findingCase("finding/pilot-would_drop", func(f *schemas.Finding) {
			f.InScope, f.Action, f.CommandID = false, schemas.ActionWouldDrop, ""
		}, sampleLease(1)),
		findingCase("finding/approve-pending", func(f *schemas.Finding) {
			f.Mode, f.Action = schemas.ModeApprove, schemas.ActionApprovalRequested
		}, sampleLease(1)),
		findingCase("finding/observe-orphan-role", func(f *schemas.Finding) {
			f.Rule, f.Mode, f.Action, f.CommandID, f.LeaseID = "orphan-role", schemas.ModeObserve, schemas.ActionNone, "", ""
		}, nil),
		findingCase("finding/ghost-session", func(f *schemas.Finding) {
			f.Rule, f.DBUser, f.LeaseID, f.CommandID, f.Action = "ghost-session", "", "", "", schemas.ActionNone
			f.Facts = map[string]any{"pid": 4242, "user_oid": uint32(24601)}
		}, nil).with(map[string]string{
			// Only an OID (evidences[0].actor.user.uid) is known of the
			// dropped role: no name or address to index.
			"detection_finding.observables": "the former role has no name",
		}),
		findingCase("finding/database-only", func(f *schemas.Finding) {
			f.Rule, f.DBUser, f.LeaseID, f.CommandID, f.Action = "mass-revocation", "", "", "", schemas.ActionNone
		}, nil).with(map[string]string{
			"detection_finding.evidences":   "about a database as a whole: no user, no client address",
			"detection_finding.observables": "about a database as a whole: no user, no client address",
		}),
		findingCase("finding/lease-only", func(f *schemas.Finding) {
			f.Rule, f.Database, f.DBUser, f.CommandID, f.Action = "vault-lease-revoke", "", "", "", schemas.ActionNone
		}, nil).with(map[string]string{
			"detection_finding.evidences":   "about a Vault lease alone (its id is unmapped.lease_id)",
			"detection_finding.resources":   "about a Vault lease alone (its id is unmapped.lease_id)",
			"detection_finding.observables": "about a Vault lease alone (its id is unmapped.lease_id)",
		}),
		findingCase("finding/nothing-targeted", func(f *schemas.Finding) {
			f.Rule, f.Database, f.DBUser, f.LeaseID, f.CommandID, f.Action = "audit-silence", "", "", "", "", schemas.ActionNone
			f.Mount, f.Role = "", ""
		}, nil).with(map[string]string{
			"detection_finding.evidences":   "about Vault's audit stream: no database object involved",
			"detection_finding.resources":   "about Vault's audit stream: no database object involved",
			"detection_finding.observables": "about Vault's audit stream: no database object involved",
		}),
		// The finding revoker/refused.go makes of a refused command.
		findingCase("finding/command-refused", func(f *schemas.Finding) {
			*f = schemas.Finding{Type: schemas.FindingType, ID: "refused-" + strings.Repeat("ab", 16), Rule: "command-refused",
				Severity: schemas.SeverityHigh, Mode: schemas.ModeObserve, DetectedAt: t0, Database: "main",
				DBUser: "v-x", LeaseID: "postgres/creds/x/1", Summary: "a revocation command for main/v-x was refused",
				Facts: map[string]any{"guard": "signature", "reason": "bad signature"}, Action: schemas.ActionNone}
		}, nil),
		approvalCase(schemas.ApprovalApproved),
		approvalCase(schemas.ApprovalRejected),
		approvalCase(schemas.ApprovalExpired),
		policyCase("policy/create", true),
		policyCase("policy/update", false),
		{name: "checkpoint", build: func(t *testing.T, b Builder) Event {
			ev, err := b.Checkpoint(testEvidenceKey(t, 1), 41, "sha256:"+strings.Repeat("ab", 32), t0)
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}},
	}
}

func ocsfTestBuilder() Builder {
	b := testBuilder()
	b.Version = "1.4.2"
	return b
}

// with adds waivers to a case.
func (c ocsfCase) with(waive map[string]string) ocsfCase {
	c.waive = waive
	return c
}

// TestOCSFConformance validates every kind of evidence event leaseguard
// emits against the pinned OCSF version's vendored schema.
func TestOCSFConformance(t *testing.T) {
	s := loadOCSFSchema(t, ocsfSchemaDir)
	for _, tc := range ocsfCases() {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.build(t, ocsfTestBuilder())
			if problems := validateOCSF(s, ocsfClassFiles, ev.Data, ocsfWaived(ev, tc.waive)); len(problems) > 0 {
				sort.Strings(problems)
				t.Errorf("%d problems:\n  %s\ndata: %s", len(problems), strings.Join(problems, "\n  "), indent(ev.Data))
			}
		})
	}
	// A waiver nothing needs is stale: remove it, so that the attribute
	// is checked again.
	all := maps.Clone(ocsfRecommendedWaived)
	for _, w := range ocsfTypeWaived {
		maps.Copy(all, w)
	}
	for _, tc := range ocsfCases() {
		maps.Copy(all, tc.waive)
	}
	for k := range all {
		if !s.waiverUsed[k] {
			t.Errorf("waiver %s excuses nothing", k)
		}
	}
}

func indent(raw json.RawMessage) string {
	var v any
	_ = json.Unmarshal(raw, &v)
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// TestStatusCodeIsTheOutcome: a SIEM filters revocations on status_code,
// so it holds the outcome in every shape, including a drop an earlier
// attempt committed before a crash (recorded with the revoker's
// explanation, which goes to status_detail).
func TestStatusCodeIsTheOutcome(t *testing.T) {
	want := map[string][2]string{
		"revocation/dropped":                    {"dropped", `leaseguard dropped database user "v-approle-reporting-avBCPAqNnSFaMO7m0001-1795634398" on "main"`},
		"revocation/dropped-without-lease":      {"dropped", `leaseguard dropped database user "v-approle-reporting-avBCPAqNnSFaMO7m0001-1795634398" on "main"`},
		"revocation/dropped-after-crash":        {"dropped", "dropped by an earlier attempt (target transaction 812 committed) that ended before recording"},
		"revocation/already_absent":             {"already_absent", `database user "v-approle-reporting-avBCPAqNnSFaMO7m0001-1795634398" on "main" was already absent`},
		"revocation/failed":                     {"failed", "role owns objects in another database"},
		"revocation/refused":                    {"refused", "role has rolsuper"},
		"revocation/refused-unrecorded-command": {"refused", "bad signature"},
		"revocation/terminated":                 {"terminated", `leaseguard terminated ghost session pid 4242 of former user "v-approle-reporting-avBCPAqNnSFaMO7m0001-1795634398" on "main"`},
		"revocation/terminated-unknown-user":    {"terminated", `leaseguard terminated ghost session pid 4242 of an unknown former user on "main"`},
	}
	n := 0
	for _, tc := range ocsfCases() {
		if !strings.HasPrefix(tc.name, "revocation/") {
			continue
		}
		n++
		ev := tc.build(t, ocsfTestBuilder())
		var d struct {
			StatusCode   string `json:"status_code"`
			StatusDetail string `json:"status_detail"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if w := want[tc.name]; d.StatusCode != w[0] || d.StatusDetail != w[1] {
			t.Errorf("%s: status_code %q status_detail %q, want %q %q", tc.name, d.StatusCode, d.StatusDetail, w[0], w[1])
		}
	}
	if n != len(want) {
		t.Errorf("%d revocation shapes, %d expected", n, len(want))
	}
}

// TestOCSFValidatorRejects: the validator finds each kind of defect, so a
// conformance pass means something. Each case spoils a conformant event.
func TestOCSFValidatorRejects(t *testing.T) {
	s := loadOCSFSchema(t, ocsfSchemaDir)
	build := func(name string) map[string]any {
		for _, tc := range ocsfCases() {
			if tc.name == name {
				var m map[string]any
				if err := json.Unmarshal(tc.build(t, ocsfTestBuilder()).Data, &m); err != nil {
					t.Fatal(err)
				}
				return m
			}
		}
		t.Fatalf("no case %s", name)
		return nil
	}
	obj := func(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }
	for _, tc := range []struct {
		name, event, want string
		spoil             func(m map[string]any)
	}{
		{"unknown attribute", "revocation/dropped", "account_change.lease_id: unknown attribute",
			func(m map[string]any) { m["lease_id"] = "x" }},
		{"unknown nested attribute", "finding/enforce", "detection_finding.metadata.product.build: unknown attribute",
			func(m map[string]any) { obj(obj(m, "metadata"), "product")["build"] = "x" }},
		{"deprecated attribute", "policy/update", "entity_management.actor.invoked_by: deprecated since 1.2.0",
			func(m map[string]any) { obj(m, "actor")["invoked_by"] = "leaseguard" }},
		{"profile not declared", "approval/approved", `detection_finding.actor: unknown attribute (it belongs to profile "host"`,
			func(m map[string]any) { obj(m, "metadata")["profiles"] = []any{"datetime"} }},
		{"datetime attribute without the profile", "revocation/failed", "account_change.time_dt: unknown attribute",
			func(m map[string]any) { obj(m, "metadata")["profiles"] = []any{} }},
		{"unknown profile", "revocation/failed", `metadata.profiles: unknown profile "leaseguard"`,
			func(m map[string]any) { obj(m, "metadata")["profiles"] = []any{"datetime", "leaseguard"} }},
		{"required missing", "finding/enforce", "detection_finding.finding_info: required attribute missing",
			func(m map[string]any) { delete(m, "finding_info") }},
		{"recommended missing", "revocation/dropped", "account_change.metadata.log_name: recommended attribute missing",
			func(m map[string]any) { delete(obj(m, "metadata"), "log_name") }},
		{"value not in enum", "revocation/dropped", "account_change.user.type_id: 7 is not in the enum",
			func(m map[string]any) { obj(m, "user")["type_id"] = 7 }},
		{"sibling disagrees", "revocation/dropped", `account_change.status_id: sibling status is "Failure", want "Success"`,
			func(m map[string]any) { m["status"] = "Failure" }},
		{"wrong type", "revocation/dropped", "account_change.time: want an integer",
			func(m map[string]any) { m["time"] = "yesterday" }},
		{"bad datetime", "revocation/dropped", `account_change.time_dt: "yesterday" is not a valid datetime_t`,
			func(m map[string]any) { m["time_dt"] = "yesterday" }},
		{"wrong type_uid", "revocation/dropped", "type_uid 300101, want 300106",
			func(m map[string]any) { m["type_uid"] = 300101 }},
		{"wrong metadata.version", "policy/create", `metadata.version "1.1.0" is not the vendored schema's 1.8.0`,
			func(m map[string]any) { obj(m, "metadata")["version"] = "1.1.0" }},
		{"observable names no attribute", "revocation/dropped", `observables[0]: "user.login" names no attribute`,
			func(m map[string]any) { m["observables"].([]any)[0].(map[string]any)["name"] = "user.login" }},
		{"observable value differs", "revocation/dropped", "observables[0]: value nobody, but user.name is",
			func(m map[string]any) { m["observables"].([]any)[0].(map[string]any)["value"] = "nobody" }},
		{"observable of the wrong type", "finding/enforce", "observables[1]: type_id 4, want 2 for evidences[0].src_endpoint.ip",
			func(m map[string]any) { m["observables"].([]any)[1].(map[string]any)["type_id"] = 4 }},
		{"object constraint", "revocation/dropped", "account_change.user: constraint at_least_one",
			func(m map[string]any) { m["user"] = map[string]any{"type": "Service", "type_id": 4} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := build(tc.event)
			tc.spoil(m)
			raw, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			problems := validateOCSF(s, ocsfClassFiles, raw, ocsfRecommendedWaived)
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("want a problem containing %q, got %v", tc.want, problems)
		})
	}
}
