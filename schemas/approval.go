package schemas

import "time"

// ApprovalState is where a pending revocation stands.
type ApprovalState string

const (
	// ApprovalPending: waiting for an owner's decision.
	ApprovalPending ApprovalState = "pending"
	// ApprovalApproved: an owner approved; the command went to the revoker.
	ApprovalApproved ApprovalState = "approved"
	// ApprovalRejected: an owner rejected; nothing is dropped.
	ApprovalRejected ApprovalState = "rejected"
	// ApprovalExpired: nobody decided in time; nothing is dropped.
	ApprovalExpired ApprovalState = "expired"
)

// ApprovalDecision is what became of a pending revocation: approved or
// rejected by a named owner, or expired. It is what approval evidence is
// made of.
type ApprovalDecision struct {
	// PendingID is the pending revocation's id, which is the id of the
	// command enforce would have issued (and approval issues).
	PendingID string        `json:"pending_id"`
	Decision  ApprovalState `json:"decision"`
	// DecidedBy names the owner (the CLI's actor, the API's principal), or
	// "leaseguard" for an expiry.
	DecidedBy   string    `json:"decided_by"`
	DecidedAt   time.Time `json:"decided_at"`
	Comment     string    `json:"comment,omitempty"`
	FindingID   string    `json:"finding_id"`
	Rule        string    `json:"rule"`
	Severity    Severity  `json:"severity"`
	Database    string    `json:"database"`
	DBUser      string    `json:"db_user"`
	LeaseID     string    `json:"lease_id,omitempty"`
	Summary     string    `json:"summary"`
	RequestedAt time.Time `json:"requested_at"`
	ExpiresAt   time.Time `json:"expires_at"`
}
