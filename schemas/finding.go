package schemas

import "time"

// FindingType is the versioned type of Finding documents.
const FindingType = "io.leaseguard.finding.v1"

// Severity of a finding, lowest first.
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Rank orders severities (info 1 … critical 5; unknown 0).
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityLow:
		return 2
	case SeverityMedium:
		return 3
	case SeverityHigh:
		return 4
	case SeverityCritical:
		return 5
	}
	return 0
}

// Mode is what a rule may do about its findings.
type Mode string

const (
	// ModeObserve: a finding only.
	ModeObserve Mode = "observe"
	// ModeApprove: a finding and a pending revocation that waits for an
	// owner's approval (see PendingRevocation).
	ModeApprove Mode = "approve"
	// ModeEnforce: a finding and a revocation command.
	ModeEnforce Mode = "enforce"
)

// Finding is a rule's verdict on one object (a lease, a database user, a
// session): what was seen, why it matters, and what leaseguard did about it.
type Finding struct {
	Type string `json:"type"`
	// ID is deterministic over rule and object, so a finding raised twice
	// (redelivery, two processes) is one finding.
	ID         string    `json:"id"`
	Rule       string    `json:"rule"`
	Severity   Severity  `json:"severity"`
	Mode       Mode      `json:"mode"`
	InScope    bool      `json:"in_scope"`
	DetectedAt time.Time `json:"detected_at"`
	Database   string    `json:"database,omitempty"`
	DBUser     string    `json:"db_user,omitempty"`
	LeaseID    string    `json:"lease_id,omitempty"`
	Mount      string    `json:"mount,omitempty"`
	Role       string    `json:"role,omitempty"`
	EntityID   string    `json:"entity_id,omitempty"`
	Summary    string    `json:"summary"`
	// Facts are the observations the verdict rests on (expire time and its
	// source, last Vault event, …), named so a reviewer can check each.
	Facts map[string]any `json:"facts,omitempty"`
	// Action is "none" (observe, or out of scope), "revocation_requested"
	// (enforce), "approval_requested" (approve: CommandID names the
	// pending revocation, which is the command enforce would have issued)
	// or "unconfirmed" (the rule would act, but neither the target database
	// nor Vault corroborated it: nothing is done, and someone must look).
	// A rule that would act (enforce or approve, corroborated) on an object
	// outside the enforcement scope records "would_drop" or
	// "would_terminate" (a ghost session): a pilot, nothing is done.
	Action    string `json:"action"`
	CommandID string `json:"command_id,omitempty"`
}

// Finding actions.
const (
	ActionNone                = "none"
	ActionRevocationRequested = "revocation_requested"
	ActionApprovalRequested   = "approval_requested"
	ActionUnconfirmed         = "unconfirmed"
	ActionWouldDrop           = "would_drop"
	ActionWouldTerminate      = "would_terminate"
)
