package detectors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Rule names.
const (
	RuleLeaseExpired = "lease-expired-not-revoked"
	// The database observer's rules (observe.go).
	RuleGhostSession      = "ghost-session"
	RuleReuseAfterRevoke  = "credential-reuse-after-revoke"
	RuleReuseUnknownLease = "credential-reuse-unknown-lease"
	RuleOrphanRole        = "orphan-role"
)

// DefaultModes are the modes of rules the configuration does not name. The
// three rules that enforce by default act only inside the enforcement
// scope, which is empty unless configured: a first run acts nowhere.
var DefaultModes = map[string]schemas.Mode{
	RuleLeaseExpired:      schemas.ModeEnforce,
	RuleGhostSession:      schemas.ModeEnforce,
	RuleReuseAfterRevoke:  schemas.ModeEnforce,
	RuleReuseUnknownLease: schemas.ModeObserve,
	RuleOrphanRole:        schemas.ModeObserve,
	// The audit-log rules (audit_rules.go) name no user: observe only.
	RuleUnauditedIssue: schemas.ModeObserve,
	RuleMassRevocation: schemas.ModeObserve,
	// The audit-signal rules (audit_signal_*.go). Those naming a database
	// user (foreign address, renewal past max TTL) may enforce; the others
	// only observe.
	RuleForeignAddress:      schemas.ModeObserve,
	RuleRenewalPastMaxTTL:   schemas.ModeObserve,
	RuleIssuanceBurst:       schemas.ModeObserve,
	RuleDeniedBurst:         schemas.ModeObserve,
	RuleRootTokenUse:        schemas.ModeObserve,
	RuleAuditDeviceDisabled: schemas.ModeObserve,
	RuleAuditSilence:        schemas.ModeObserve,
}

// Modes maps rule names to modes.
type Modes map[string]schemas.Mode

// ParseModes reads "rule=mode,rule=mode" over the defaults.
func ParseModes(s string) (Modes, error) {
	return Modes(DefaultModes).With(s)
}

// With returns a copy of m with "rule=mode,…" applied over it; m is left as
// it is (a runtime change starts from the effective modes, not the
// defaults).
func (m Modes) With(s string) (Modes, error) {
	out := Modes{}
	for k, v := range m {
		out[k] = v
	}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		rule, mode, ok := strings.Cut(e, "=")
		rule, mode = strings.TrimSpace(rule), strings.TrimSpace(mode)
		if !ok {
			return nil, fmt.Errorf("%q: want rule=mode", e)
		}
		if _, known := DefaultModes[rule]; !known {
			return nil, fmt.Errorf("unknown rule %q", rule)
		}
		switch schemas.Mode(mode) {
		case schemas.ModeObserve, schemas.ModeEnforce:
		case schemas.ModeApprove: // an owner approves each revocation (approval.go)
		default:
			return nil, fmt.Errorf("rule %s: mode %q is not observe, approve or enforce", rule, mode)
		}
		out[rule] = schemas.Mode(mode)
	}
	return out, nil
}

// Mode of a rule (observe when unknown).
func (m Modes) Mode(rule string) schemas.Mode {
	if v, ok := m[rule]; ok {
		return v
	}
	return schemas.ModeObserve
}

// String is the canonical "rule=mode,…" of every known rule, sorted, so two
// equal sets of modes print the same.
func (m Modes) String() string {
	rules := make([]string, 0, len(DefaultModes))
	for r := range DefaultModes {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = r + "=" + string(m.Mode(r))
	}
	return strings.Join(parts, ",")
}

// ValidateModes refuses modes a rule cannot have: the rules that name no
// database user only observe. The configuration and every runtime change
// are checked alike.
func ValidateModes(m Modes) error {
	for _, r := range []string{RuleUnauditedIssue, RuleMassRevocation} {
		if Acts(m.Mode(r)) {
			return fmt.Errorf("rule %s names no database user and can only observe", r)
		}
	}
	return CheckSignalModes(m)
}

// Scope limits where rules may enforce: outside it they only observe (and
// record what they would have done: would_drop, would_terminate), so a team
// can pilot on a few databases or Vault roles and widen later. An empty
// scope enforces nowhere; "*" (All) is everywhere. With database patterns
// only, every role of those databases is in scope; with role patterns only,
// those roles in every database; with both, both must match.
type Scope struct {
	// All is "*": everywhere.
	All bool
	// Databases are path.Match globs over target names.
	Databases []string
	// Roles are path.Match globs over "mount/role" (or a bare role name,
	// matched against the role alone).
	Roles []string
}

// Everywhere is the scope "*".
func Everywhere() Scope { return Scope{All: true} }

// ParseScope reads "*" or "db:<glob>,role:<glob>,…".
func ParseScope(s string) (Scope, error) {
	var sc Scope
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if e == "*" {
			sc.All = true
			continue
		}
		kind, pat, ok := strings.Cut(e, ":")
		pat = strings.Trim(strings.TrimSpace(pat), "/")
		if !ok || pat == "" {
			return sc, fmt.Errorf("%q: want *, db:<glob> or role:<glob>", e)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return sc, fmt.Errorf("%q: %w", e, err)
		}
		switch strings.TrimSpace(kind) {
		case "db", "database":
			sc.Databases = append(sc.Databases, pat)
		case "role":
			sc.Roles = append(sc.Roles, pat)
		default:
			return sc, fmt.Errorf("%q: want *, db:<glob> or role:<glob>", e)
		}
	}
	return sc.normal(), nil
}

// normal sorts and de-duplicates the patterns; "*" makes them moot.
func (s Scope) normal() Scope {
	if s.All {
		return Everywhere()
	}
	norm := func(ps []string) []string {
		ps = slices.Clone(ps)
		sort.Strings(ps)
		return slices.Compact(ps)
	}
	return Scope{Databases: norm(s.Databases), Roles: norm(s.Roles)}
}

// Empty reports whether the scope enforces nowhere.
func (s Scope) Empty() bool { return !s.All && len(s.Databases) == 0 && len(s.Roles) == 0 }

// String is the canonical form ParseScope reads back: "", "*", or the
// sorted patterns.
func (s Scope) String() string {
	s = s.normal()
	if s.All {
		return "*"
	}
	parts := make([]string, 0, len(s.Databases)+len(s.Roles))
	for _, d := range s.Databases {
		parts = append(parts, "db:"+d)
	}
	for _, r := range s.Roles {
		parts = append(parts, "role:"+r)
	}
	return strings.Join(parts, ",")
}

// Union is the scope covering both (an expansion).
func (s Scope) Union(o Scope) Scope {
	return Scope{All: s.All || o.All, Databases: append(slices.Clone(s.Databases), o.Databases...),
		Roles: append(slices.Clone(s.Roles), o.Roles...)}.normal()
}

// Contains reports whether a user of mount/role in database is in scope.
func (s Scope) Contains(database, mount, role string) bool {
	switch {
	case s.All:
		return true
	case s.Empty():
		return false
	}
	return (len(s.Databases) == 0 || matchAny(s.Databases, database)) &&
		(len(s.Roles) == 0 || matchRole(s.Roles, strings.Trim(mount, "/"), role))
}

func matchAny(pats []string, v string) bool {
	for _, p := range pats {
		if ok, _ := path.Match(p, v); ok {
			return true
		}
	}
	return false
}

func matchRole(pats []string, mount, role string) bool {
	full := mount + "/" + role
	for _, p := range pats {
		if strings.Contains(p, "/") {
			if ok, _ := path.Match(p, full); ok {
				return true
			}
		} else if ok, _ := path.Match(p, role); ok {
			return true
		}
	}
	return false
}

// Policy is what the rules act under: each rule's mode and the enforcement
// scope. A rule that would act (enforce or approve) on an object outside
// the scope records what it would have done instead.
type Policy struct {
	// Version of the policy in the state store (package rollout); 0 for a
	// policy given in code (StaticPolicy).
	Version int64
	Modes   Modes
	Scope   Scope
}

// PolicySource gives the policy in force. Every detector, observer and
// audit-rule pass reads it at its start, inside the pass when it has a
// transaction, and keeps it for that pass only: a change recorded by any
// process takes effect on every process within one pass.
type PolicySource interface {
	Policy(ctx context.Context, q store.Querier) (Policy, error)
}

// StaticPolicy is a policy fixed in code: tests, and tools without a state
// store policy.
func StaticPolicy(modes Modes, scope Scope) PolicySource {
	if modes == nil {
		modes, _ = ParseModes("")
	}
	return staticPolicy{Modes: modes, Scope: scope}
}

type staticPolicy Policy

func (s staticPolicy) Policy(context.Context, store.Querier) (Policy, error) { return Policy(s), nil }

// pilot reports whether a rule would act on the object but may not: its
// mode acts and the object is outside the scope. Such verdicts are
// corroborated as if enforced and recorded as would_drop or
// would_terminate, under a finding id of their own (pilotID), so that once
// the scope covers the object the verdict is a new finding and is acted on.
func (p Policy) pilot(rule, database, mount, role string) bool {
	return Acts(p.Modes.Mode(rule)) && !p.Scope.Contains(database, mount, role)
}

// note records in the facts of a finding of a rule that acts (or would)
// which policy version judged it.
func (p Policy) note(facts map[string]any) {
	if p.Version > 0 {
		facts["policy_version"] = p.Version
	}
}

// pilotFacts says in a pilot finding's facts why nothing was done and, in
// approve mode, that a drop would have waited for an owner.
func pilotFacts(facts map[string]any, mode schemas.Mode) {
	facts["not_enforced"] = "outside the enforcement scope"
	if mode == schemas.ModeApprove {
		facts["would_need_approval"] = true
	}
}

// pilotID is the finding id of a verdict recorded as a pilot.
func pilotID(findingID string) string { return id(findingID, "pilot") }

// wouldAction is what a pilot records for the command cmd it would have
// issued.
func wouldAction(cmd *schemas.RevocationCommand) string {
	if cmd.Action == schemas.ActionTerminateSession {
		return schemas.ActionWouldTerminate
	}
	return schemas.ActionWouldDrop
}

// id derives a deterministic identifier from its parts.
func id(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
