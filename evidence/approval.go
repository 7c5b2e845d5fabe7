package evidence

import (
	"fmt"

	"github.com/leaseguard/leaseguard/schemas"
)

// TypeApproval is the type of the evidence of an owner's decision on a
// pending revocation (rule mode approve): approved, rejected or expired.
const TypeApproval = "io.leaseguard.approval.v1"

// OCSF Detection Finding: activity Update, and the statuses a decision
// gives the finding.
const (
	ocsfActivityUpdate       = 2
	ocsfFindingInProgress    = 2
	ocsfFindingSuppressed    = 3
	approvalDecidedBySystem  = "leaseguard"
	approvalTypeNameApproval = "Approval"
)

// approvalFinding is an OCSF Detection Finding event with activity Update:
// the finding's revocation was approved (status In Progress: the revoker
// acts next), or rejected or left to expire (status Suppressed). The actor
// is the owner who decided.
type approvalFinding struct {
	ocsfClass
	ocsfStatus
	ocsfOccurrence
	// IsAlert is false: a decision updates a finding already alerted on.
	IsAlert     bool             `json:"is_alert"`
	Message     string           `json:"message"`
	Metadata    ocsfMetadata     `json:"metadata"`
	FindingInfo ocsfFindingInfo  `json:"finding_info"`
	Resources   []ocsfResource   `json:"resources"`
	Actor       ocsfActor        `json:"actor"`
	Observables []ocsfObservable `json:"observables"`
	Unmapped    approvalData     `json:"unmapped"`
}

type approvalData struct {
	PendingID   string `json:"pending_id"`
	CommandID   string `json:"command_id"`
	Decision    string `json:"decision"`
	DecidedBy   string `json:"decided_by"`
	DecidedAt   string `json:"decided_at"`
	Comment     string `json:"comment,omitempty"`
	FindingID   string `json:"finding_id"`
	Rule        string `json:"rule"`
	Severity    string `json:"severity"`
	Database    string `json:"database"`
	DBUser      string `json:"db_user"`
	LeaseID     string `json:"lease_id,omitempty"`
	RequestedAt string `json:"requested_at"`
	ExpiresAt   string `json:"expires_at"`
}

// Approval builds the evidence of a decision on a pending revocation. Its
// id is derived from the pending revocation and the decision, so a retry
// builds the same event; a pending revocation has one decision.
func (b Builder) Approval(d schemas.ApprovalDecision) (Event, error) {
	if err := b.validate(); err != nil {
		return Event{}, err
	}
	status, statusName := ocsfFindingSuppressed, "Suppressed"
	var msg string
	switch d.Decision {
	case schemas.ApprovalApproved:
		status, statusName = ocsfFindingInProgress, "In Progress"
		msg = fmt.Sprintf("%s approved dropping database user %q on %q", d.DecidedBy, d.DBUser, d.Database)
	case schemas.ApprovalRejected:
		msg = fmt.Sprintf("%s rejected dropping database user %q on %q", d.DecidedBy, d.DBUser, d.Database)
	case schemas.ApprovalExpired:
		msg = fmt.Sprintf("nobody approved dropping database user %q on %q before %s; it is not dropped",
			d.DBUser, d.Database, rfc3339(d.ExpiresAt))
	default:
		return Event{}, fmt.Errorf("%w: decision %q is not approved, rejected or expired", ErrInvalidInput, d.Decision)
	}
	switch {
	case d.PendingID == "" || d.FindingID == "" || d.Rule == "":
		return Event{}, fmt.Errorf("%w: a decision needs the pending revocation, its finding and rule", ErrInvalidInput)
	case d.Database == "" || d.DBUser == "":
		return Event{}, fmt.Errorf("%w: a decision names no database or user", ErrInvalidInput)
	case d.DecidedBy == "" || d.DecidedAt.IsZero():
		return Event{}, fmt.Errorf("%w: a decision needs who decided and when", ErrInvalidInput)
	}
	id := eventID("approval", d.PendingID, string(d.Decision))
	// status_code is the decision; status_detail the owner's comment, or
	// else the message.
	detail := d.Comment
	if detail == "" {
		detail = msg
	}
	data := approvalFinding{
		ocsfClass: classify(ocsfCategoryFindings, "Findings", ocsfClassDetection, "Detection Finding",
			ocsfActivityUpdate, "Update", d.Severity.Rank()),
		ocsfStatus:     ocsfStatus{StatusID: status, Status: statusName, StatusCode: string(d.Decision), StatusDetail: detail},
		ocsfOccurrence: occurrence(d.DecidedAt),
		Message:        msg,
		// The actor is on Detection Finding through the host profile.
		Metadata: b.metadata(id, d.PendingID, ocsfProfileHost),
		FindingInfo: ocsfFindingInfo{
			UID: d.FindingID, Title: d.Rule, Desc: d.Summary, Types: []string{d.Rule, approvalTypeNameApproval},
			CreatedTime: d.RequestedAt.UnixMilli(),
			Analytic:    ocsfAnalytic{Name: d.Rule, UID: d.Rule, Type: "Rule", TypeID: ocsfAnalyticRule},
		},
		Resources:   []ocsfResource{targetResource(d.DBUser, "", "Database User", d.Database)},
		Actor:       ocsfActor{User: person(d.DecidedBy, d.DecidedBy == DecidedBySystem)},
		Observables: userNames("actor.user.name", d.DecidedBy),
		Unmapped: approvalData{
			PendingID: d.PendingID, CommandID: d.PendingID, Decision: string(d.Decision), DecidedBy: d.DecidedBy,
			DecidedAt: rfc3339(d.DecidedAt), Comment: d.Comment, FindingID: d.FindingID, Rule: d.Rule,
			Severity: string(d.Severity), Database: d.Database, DBUser: d.DBUser, LeaseID: d.LeaseID,
			RequestedAt: rfc3339(d.RequestedAt), ExpiresAt: rfc3339(d.ExpiresAt),
		},
	}
	return b.event(TypeApproval, id, d.Database+"/"+d.DBUser, d.DecidedAt, data)
}

// DecidedBySystem is who decides an expiry.
const DecidedBySystem = approvalDecidedBySystem
