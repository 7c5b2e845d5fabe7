package schemas

import "time"

// PolicyChangeKind says how a version of the enforcement policy came to be.
type PolicyChangeKind string

const (
	// PolicyConfiguration: the configured starting point
	// (LEASEGUARD_ENFORCE_SCOPE, LEASEGUARD_RULE_MODES), recorded as
	// version 1 the first time a state store has no policy.
	PolicyConfiguration PolicyChangeKind = "configuration"
	// PolicyExpand: an operator widened the scope or changed rule modes.
	PolicyExpand PolicyChangeKind = "expand"
	// PolicyRollback: an operator returned to an earlier version, or to
	// the configured starting point.
	PolicyRollback PolicyChangeKind = "rollback"
)

// PolicyState is one version of the enforcement policy: the scope in its
// canonical form ("" nowhere, "*" everywhere, or db:/role: patterns) and
// the mode of every rule.
type PolicyState struct {
	Version int64           `json:"version"`
	Scope   string          `json:"scope"`
	Modes   map[string]Mode `json:"modes"`
}

// PolicyChange is one recorded change of the enforcement policy, with who
// made it and why: the input of its evidence (io.leaseguard.policy.v1).
type PolicyChange struct {
	Version int64            `json:"version"`
	Kind    PolicyChangeKind `json:"kind"`
	Actor   string           `json:"actor"`
	Reason  string           `json:"reason"`
	// ChangedAt is the state store's time of the change.
	ChangedAt time.Time       `json:"changed_at"`
	Scope     string          `json:"scope"`
	Modes     map[string]Mode `json:"modes"`
	// RestoredVersion: a rollback's earlier version (0 with
	// RestoredConfiguration: the configured starting point).
	RestoredVersion       int64 `json:"restored_version,omitempty"`
	RestoredConfiguration bool  `json:"restored_configuration,omitempty"`
	// Previous is the policy this change replaced (nil for version 1).
	Previous *PolicyState `json:"previous,omitempty"`
}
