package evidence

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// The data of an event is an OCSF event (schema.ocsf.io, version 1.1.0).
// Fields OCSF has no place for go under "unmapped", named as leaseguard names
// them. Times are epoch milliseconds as OCSF requires; the exact times are
// repeated in unmapped as RFC 3339 with nanoseconds.
const (
	OCSFVersion = "1.1.0"
	productName = "leaseguard"
)

// OCSF identifiers used here.
const (
	ocsfCategoryIAM      = 3
	ocsfClassAccount     = 3001 // Account Change
	ocsfActivityDelete   = 6
	ocsfCategoryFindings = 2
	ocsfClassDetection   = 2004 // Detection Finding
	ocsfActivityCreate   = 1

	ocsfStatusSuccess = 1
	ocsfStatusFailure = 2
	ocsfFindingNew    = 1

	// OCSF 1.1.0 has no "Service" user type (it arrived later as 4), so
	// the database user is "Other" with type "Service".
	ocsfUserTypeOther = 99
	ocsfAnalyticRule  = 1
)

var ocsfSeverityNames = map[int]string{
	0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical",
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	// Version is the leaseguard build that made the event.
	Version string `json:"version,omitempty"`
}

func (b Builder) product() ocsfProduct {
	return ocsfProduct{Name: productName, VendorName: productName, Version: b.Version}
}

type ocsfMetadata struct {
	Version string      `json:"version"`
	Product ocsfProduct `json:"product"`
	// UID is the event's CloudEvents id.
	UID string `json:"uid"`
	// CorrelationUID is the revocation command id, which links a finding
	// to the revocation it requested.
	CorrelationUID string `json:"correlation_uid,omitempty"`
}

type ocsfUser struct {
	Name   string `json:"name,omitempty"`
	UID    string `json:"uid,omitempty"`
	Type   string `json:"type,omitempty"`
	TypeID int    `json:"type_id,omitempty"`
	// Domain is the leaseguard database target that holds the user.
	Domain string `json:"domain,omitempty"`
}

type ocsfEndpoint struct {
	IP   string `json:"ip,omitempty"`
	Port int    `json:"port,omitempty"`
}

// ocsfActor: OCSF 1.1.0's actor has no app_name (added in 1.2.0), so the
// acting program is named in invoked_by.
type ocsfActor struct {
	User      *ocsfUser `json:"user,omitempty"`
	InvokedBy string    `json:"invoked_by,omitempty"`
}

// ocsfClass is the classification every OCSF event starts with.
type ocsfClass struct {
	ActivityID   int    `json:"activity_id"`
	ActivityName string `json:"activity_name"`
	CategoryUID  int    `json:"category_uid"`
	CategoryName string `json:"category_name"`
	ClassUID     int    `json:"class_uid"`
	ClassName    string `json:"class_name"`
	TypeUID      int    `json:"type_uid"`
	TypeName     string `json:"type_name"`
	SeverityID   int    `json:"severity_id"`
	Severity     string `json:"severity"`
}

func classify(category int, categoryName string, class int, className string, activity int, activityName string, severity int) ocsfClass {
	return ocsfClass{
		ActivityID:   activity,
		ActivityName: activityName,
		CategoryUID:  category,
		CategoryName: categoryName,
		ClassUID:     class,
		ClassName:    className,
		TypeUID:      class*100 + activity,
		TypeName:     className + ": " + activityName,
		SeverityID:   severity,
		Severity:     ocsfSeverityNames[severity],
	}
}

// accountChange is an OCSF Account Change event with activity Delete.
//
// The lease's remote address is deliberately not the event's src_endpoint:
// in Account Change that is the source of the deletion, which is leaseguard,
// not the client that obtained the credential. It is in unmapped.
type accountChange struct {
	ocsfClass
	StatusID     int                `json:"status_id"`
	Status       string             `json:"status"`
	StatusCode   string             `json:"status_code,omitempty"`
	StatusDetail string             `json:"status_detail,omitempty"`
	Time         int64              `json:"time"`
	StartTime    int64              `json:"start_time,omitempty"`
	EndTime      int64              `json:"end_time,omitempty"`
	Duration     *int64             `json:"duration,omitempty"`
	Message      string             `json:"message"`
	Metadata     ocsfMetadata       `json:"metadata"`
	User         ocsfUser           `json:"user"`
	Actor        ocsfActor          `json:"actor"`
	Unmapped     revocationUnmapped `json:"unmapped"`
}

type revocationUnmapped struct {
	Rule               string                  `json:"rule"`
	CommandID          string                  `json:"command_id"`
	FindingID          string                  `json:"finding_id,omitempty"`
	Issuer             string                  `json:"issuer"`
	Actor              string                  `json:"actor,omitempty"`
	Emergency          bool                    `json:"emergency"`
	KeyID              string                  `json:"key_id,omitempty"`
	CommandReason      string                  `json:"command_reason,omitempty"`
	Database           string                  `json:"database"`
	DBUser             string                  `json:"db_user"`
	LeaseID            string                  `json:"lease_id,omitempty"`
	VaultRequestID     string                  `json:"vault_request_id,omitempty"`
	EntityID           string                  `json:"entity_id,omitempty"`
	Mount              string                  `json:"mount,omitempty"`
	Role               string                  `json:"role,omitempty"`
	LeaseRemoteAddress string                  `json:"lease_remote_address,omitempty"`
	Action             string                  `json:"action,omitempty"`
	CommandHash        string                  `json:"command_hash,omitempty"`
	RoleOID            uint32                  `json:"role_oid,omitempty"`
	Target             *schemas.TargetIdentity `json:"target,omitempty"`
	Session            *schemas.SessionRef     `json:"session,omitempty"`
	Corroboration      *schemas.Corroboration  `json:"corroboration,omitempty"`
	IssuedAt           string                  `json:"command_issued_at,omitempty"`
	ExpiresAt          string                  `json:"command_expires_at,omitempty"`
	Outcome            string                  `json:"outcome"`
	Guard              string                  `json:"guard,omitempty"`
	Reason             string                  `json:"reason,omitempty"`
	SQLState           string                  `json:"sqlstate,omitempty"`
	Statements         []string                `json:"statements"`
	SessionsTerminated int                     `json:"sessions_terminated"`
	ReassignedTo       string                  `json:"reassigned_to,omitempty"`
	RoleAbsentAfter    bool                    `json:"role_absent_after"`
	SessionsLeftAfter  int                     `json:"sessions_left_after"`
	StartedAt          string                  `json:"started_at,omitempty"`
	FinishedAt         string                  `json:"finished_at,omitempty"`
	DurationMS         *int64                  `json:"duration_ms,omitempty"`
}

// outcomeStatus maps an outcome to an OCSF status: the role is gone
// (dropped, already absent) or it is not (failed, refused).
func outcomeStatus(o schemas.Outcome) (int, bool) {
	switch o {
	case schemas.OutcomeDropped, schemas.OutcomeTerminated, schemas.OutcomeAlreadyAbsent:
		return ocsfStatusSuccess, true
	case schemas.OutcomeFailed, schemas.OutcomeRefused:
		return ocsfStatusFailure, true
	}
	return 0, false
}

// outcomeSeverity: a revocation that left the user in place is what a SIEM
// should look at. Failed (statements ran, the role is still there) is High;
// refused (a guard stopped it, nothing ran) is Medium; success is
// Informational.
func outcomeSeverity(o schemas.Outcome) int {
	switch o {
	case schemas.OutcomeFailed:
		return 4
	case schemas.OutcomeRefused:
		return 3
	}
	return 1
}

func revocationMessage(cmd schemas.RevocationCommand, res schemas.RevocationResult) string {
	if cmd.Action == schemas.ActionTerminateSession && cmd.Session != nil {
		return terminationMessage(cmd, res)
	}
	switch res.Outcome {
	case schemas.OutcomeDropped:
		return fmt.Sprintf("leaseguard dropped database user %q on %q", res.DBUser, res.Database)
	case schemas.OutcomeAlreadyAbsent:
		return fmt.Sprintf("database user %q on %q was already absent", res.DBUser, res.Database)
	case schemas.OutcomeRefused:
		return fmt.Sprintf("leaseguard refused to drop database user %q on %q (guard %s)", res.DBUser, res.Database, res.Guard)
	}
	return fmt.Sprintf("leaseguard could not drop database user %q on %q", res.DBUser, res.Database)
}

func terminationMessage(cmd schemas.RevocationCommand, res schemas.RevocationResult) string {
	who := "an unknown former user"
	if res.DBUser != "" {
		who = fmt.Sprintf("former user %q", res.DBUser)
	}
	switch res.Outcome {
	case schemas.OutcomeTerminated:
		return fmt.Sprintf("leaseguard terminated ghost session pid %d of %s on %q", cmd.Session.PID, who, res.Database)
	case schemas.OutcomeAlreadyAbsent:
		return fmt.Sprintf("ghost session pid %d of %s on %q was already gone", cmd.Session.PID, who, res.Database)
	case schemas.OutcomeRefused:
		return fmt.Sprintf("leaseguard refused to terminate ghost session pid %d of %s on %q (guard %s)", cmd.Session.PID, who, res.Database, res.Guard)
	}
	return fmt.Sprintf("leaseguard could not terminate ghost session pid %d of %s on %q", cmd.Session.PID, who, res.Database)
}

func (b Builder) revocationData(id string, cmd schemas.RevocationCommand, res schemas.RevocationResult, lc LeaseContext, occurred time.Time) accountChange {
	statusID, _ := outcomeStatus(res.Outcome)
	status := "Success"
	if statusID == ocsfStatusFailure {
		status = "Failure"
	}
	detail := string(res.Outcome)
	if res.Reason != "" {
		detail += ": " + res.Reason
	}
	actor := cmd.Actor
	if actor == "" {
		actor = cmd.Issuer
	}
	statements := res.Statements
	if statements == nil {
		statements = []string{}
	}
	ev := accountChange{
		ocsfClass: classify(ocsfCategoryIAM, "Identity & Access Management", ocsfClassAccount, "Account Change",
			ocsfActivityDelete, "Delete", outcomeSeverity(res.Outcome)),
		StatusID:     statusID,
		Status:       status,
		StatusCode:   res.SQLState,
		StatusDetail: detail,
		Time:         occurred.UnixMilli(),
		StartTime:    epochMS(res.StartedAt),
		EndTime:      epochMS(res.FinishedAt),
		Message:      revocationMessage(cmd, res),
		Metadata: ocsfMetadata{
			Version:        OCSFVersion,
			Product:        b.product(),
			UID:            id,
			CorrelationUID: cmd.ID,
		},
		User: ocsfUser{
			Name:   res.DBUser,
			UID:    lc.LeaseID,
			Type:   "Service",
			TypeID: ocsfUserTypeOther,
			Domain: res.Database,
		},
		Actor: ocsfActor{User: &ocsfUser{Name: actor}, InvokedBy: productName},
		Unmapped: revocationUnmapped{
			Rule:               cmd.Rule,
			CommandID:          cmd.ID,
			FindingID:          cmd.FindingID,
			Issuer:             cmd.Issuer,
			Actor:              cmd.Actor,
			Emergency:          cmd.Emergency,
			KeyID:              cmd.KeyID,
			CommandReason:      cmd.Reason,
			Database:           res.Database,
			DBUser:             res.DBUser,
			LeaseID:            lc.LeaseID,
			VaultRequestID:     lc.VaultRequestID,
			EntityID:           lc.EntityID,
			Mount:              lc.Mount,
			Role:               lc.Role,
			LeaseRemoteAddress: lc.RemoteAddress,
			Action:             cmd.Action,
			CommandHash:        res.CommandHash,
			RoleOID:            cmd.RoleOID,
			Session:            cmd.Session,
			IssuedAt:           rfc3339(cmd.IssuedAt),
			ExpiresAt:          rfc3339(cmd.ExpiresAt),
			Outcome:            string(res.Outcome),
			Guard:              res.Guard,
			Reason:             res.Reason,
			SQLState:           res.SQLState,
			Statements:         statements,
			SessionsTerminated: res.SessionsTerminated,
			ReassignedTo:       res.ReassignedTo,
			RoleAbsentAfter:    res.RoleAbsentAfter,
			SessionsLeftAfter:  res.SessionsLeftAfter,
			StartedAt:          rfc3339(res.StartedAt),
			FinishedAt:         rfc3339(res.FinishedAt),
		},
	}
	if cmd.Target != (schemas.TargetIdentity{}) {
		t := cmd.Target
		ev.Unmapped.Target = &t
	}
	if cmd.Corroboration.Source != "" {
		c := cmd.Corroboration
		c.CheckedAt = c.CheckedAt.UTC()
		ev.Unmapped.Corroboration = &c
	}
	if !res.StartedAt.IsZero() && !res.FinishedAt.IsZero() {
		d := res.FinishedAt.Sub(res.StartedAt).Milliseconds()
		ev.Duration = &d
		ev.Unmapped.DurationMS = &d
	}
	return ev
}

// detectionFinding is an OCSF Detection Finding event with activity Create.
type detectionFinding struct {
	ocsfClass
	StatusID    int                 `json:"status_id"`
	Status      string              `json:"status"`
	Time        int64               `json:"time"`
	Message     string              `json:"message"`
	Metadata    ocsfMetadata        `json:"metadata"`
	FindingInfo ocsfFindingInfo     `json:"finding_info"`
	Resources   []ocsfResource      `json:"resources,omitempty"`
	Evidences   []ocsfEvidence      `json:"evidences,omitempty"`
	Unmapped    findingUnmappedData `json:"unmapped"`
}

type ocsfFindingInfo struct {
	UID         string       `json:"uid"`
	Title       string       `json:"title"`
	Desc        string       `json:"desc,omitempty"`
	Types       []string     `json:"types"`
	CreatedTime int64        `json:"created_time"`
	Analytic    ocsfAnalytic `json:"analytic"`
}

type ocsfAnalytic struct {
	Name   string `json:"name"`
	UID    string `json:"uid"`
	Type   string `json:"type"`
	TypeID int    `json:"type_id"`
}

type ocsfResource struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
	Type string `json:"type"`
	// Namespace is the leaseguard database target.
	Namespace string `json:"namespace,omitempty"`
}

// ocsfEvidence: the actor of the activity that raised the finding (the
// database user) and where its lease was obtained from.
type ocsfEvidence struct {
	Actor       *ocsfActor    `json:"actor,omitempty"`
	SrcEndpoint *ocsfEndpoint `json:"src_endpoint,omitempty"`
}

type findingUnmappedData struct {
	FindingID      string         `json:"finding_id"`
	Rule           string         `json:"rule"`
	Severity       string         `json:"severity"`
	Mode           string         `json:"mode"`
	InScope        bool           `json:"in_scope"`
	Action         string         `json:"action"`
	CommandID      string         `json:"command_id,omitempty"`
	Database       string         `json:"database,omitempty"`
	DBUser         string         `json:"db_user,omitempty"`
	LeaseID        string         `json:"lease_id,omitempty"`
	VaultRequestID string         `json:"vault_request_id,omitempty"`
	EntityID       string         `json:"entity_id,omitempty"`
	Mount          string         `json:"mount,omitempty"`
	Role           string         `json:"role,omitempty"`
	RemoteAddress  string         `json:"lease_remote_address,omitempty"`
	DetectedAt     string         `json:"detected_at,omitempty"`
	Facts          map[string]any `json:"facts,omitempty"`
}

func (b Builder) findingData(id string, f schemas.Finding, lc LeaseContext, occurred time.Time) detectionFinding {
	ev := detectionFinding{
		ocsfClass: classify(ocsfCategoryFindings, "Findings", ocsfClassDetection, "Detection Finding",
			ocsfActivityCreate, "Create", f.Severity.Rank()),
		StatusID: ocsfFindingNew,
		Status:   "New",
		Time:     occurred.UnixMilli(),
		Message:  f.Summary,
		Metadata: ocsfMetadata{
			Version:        OCSFVersion,
			Product:        b.product(),
			UID:            id,
			CorrelationUID: f.CommandID,
		},
		FindingInfo: ocsfFindingInfo{
			UID:         f.ID,
			Title:       f.Rule,
			Desc:        f.Summary,
			Types:       findingTypes(f),
			CreatedTime: occurred.UnixMilli(),
			Analytic:    ocsfAnalytic{Name: f.Rule, UID: f.Rule, Type: "Rule", TypeID: ocsfAnalyticRule},
		},
		Unmapped: findingUnmappedData{
			FindingID:      f.ID,
			Rule:           f.Rule,
			Severity:       string(f.Severity),
			Mode:           string(f.Mode),
			InScope:        f.InScope,
			Action:         f.Action,
			CommandID:      f.CommandID,
			Database:       f.Database,
			DBUser:         f.DBUser,
			LeaseID:        lc.LeaseID,
			VaultRequestID: lc.VaultRequestID,
			EntityID:       lc.EntityID,
			Mount:          lc.Mount,
			Role:           lc.Role,
			RemoteAddress:  lc.RemoteAddress,
			DetectedAt:     rfc3339(f.DetectedAt),
			Facts:          f.Facts,
		},
	}
	if f.DBUser != "" {
		ev.Resources = []ocsfResource{{Name: f.DBUser, UID: lc.LeaseID, Type: "Database User", Namespace: f.Database}}
	} else if f.Database != "" {
		ev.Resources = []ocsfResource{{Name: f.Database, Type: "Database"}}
	}
	var evd ocsfEvidence
	if f.DBUser != "" || lc.LeaseID != "" {
		evd.Actor = &ocsfActor{User: &ocsfUser{
			Name: f.DBUser, UID: lc.LeaseID, Type: "Service", TypeID: ocsfUserTypeOther, Domain: f.Database,
		}}
	}
	evd.SrcEndpoint = endpoint(lc.RemoteAddress)
	if evd.Actor != nil || evd.SrcEndpoint != nil {
		ev.Evidences = []ocsfEvidence{evd}
	}
	return ev
}

// findingTypes are the rule and, for a pilot (would_drop, would_terminate:
// the rule would have acted outside the enforcement scope), "Pilot", so a
// SIEM can tell what leaseguard did from what it would have done.
func findingTypes(f schemas.Finding) []string {
	if f.Action == schemas.ActionWouldDrop || f.Action == schemas.ActionWouldTerminate {
		return []string{f.Rule, "Pilot"}
	}
	return []string{f.Rule}
}

// endpoint parses a remote address as Vault logs it: an IP, "ip:port" or
// "[ipv6]:port". Anything else gives nil (the raw value stays in unmapped).
func endpoint(addr string) *ocsfEndpoint {
	if addr == "" {
		return nil
	}
	if ip, err := netip.ParseAddr(addr); err == nil {
		return &ocsfEndpoint{IP: ip.String()}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	ep := &ocsfEndpoint{IP: ip.String()}
	if p, err := strconv.Atoi(port); err == nil && p > 0 && p < 65536 {
		ep.Port = p
	}
	return ep
}

func epochMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
