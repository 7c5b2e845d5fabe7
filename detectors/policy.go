// Package detectors holds leaseguard's rules: each looks at the ledger (and,
// in later rules, at the databases), raises findings, and, where its mode is
// enforce and the object is in the enforcement scope, asks the revoker to
// drop the user.
package detectors

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/leaseguard/leaseguard/schemas"
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

// DefaultModes are the modes of rules the configuration does not name.
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
	out := Modes{}
	for k, v := range DefaultModes {
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

// Scope limits where rules may enforce: outside it they only observe, so a
// team can pilot on a few databases or Vault roles and widen later. Empty
// pattern lists match everything.
type Scope struct {
	// Databases are path.Match globs over target names.
	Databases []string
	// Roles are path.Match globs over "mount/role" (or a bare role name,
	// matched against the role alone).
	Roles []string
}

// ParseScope reads "db:<glob>,role:<glob>,…".
func ParseScope(s string) (Scope, error) {
	var sc Scope
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		kind, pat, ok := strings.Cut(e, ":")
		pat = strings.Trim(strings.TrimSpace(pat), "/")
		if !ok || pat == "" {
			return sc, fmt.Errorf("%q: want db:<glob> or role:<glob>", e)
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
			return sc, fmt.Errorf("%q: want db:<glob> or role:<glob>", e)
		}
	}
	return sc, nil
}

// Contains reports whether a user of mount/role in database is in scope.
func (s Scope) Contains(database, mount, role string) bool {
	return matchAny(s.Databases, database) && (len(s.Roles) == 0 || matchRole(s.Roles, strings.Trim(mount, "/"), role))
}

func matchAny(pats []string, v string) bool {
	if len(pats) == 0 {
		return true
	}
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

// id derives a deterministic identifier from its parts.
func id(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
