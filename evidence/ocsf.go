package evidence

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// The data of an event is an OCSF event (schema.ocsf.io, version 1.8.0, the
// newest release when it was pinned; testdata/ocsf-1.8.0 holds the schema
// files the conformance test checks every kind of event against). Fields
// OCSF has no place for go under "unmapped", named as leaseguard names them.
// Times are epoch milliseconds as OCSF requires; with the datetime profile
// the event time is repeated as time_dt, and the exact times are in
// unmapped as RFC 3339 with nanoseconds.
const (
	OCSFVersion = "1.8.0"
	productName = "leaseguard"
	// ocsfLogName is metadata.log_name of every event: the log is
	// leaseguard's evidence chain, whatever the class.
	ocsfLogName = "leaseguard evidence"
	// ocsfLogProvider is metadata.log_provider: leaseguard writes the log.
	ocsfLogProvider = "leaseguard"
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

	// User types: a database user is a Service account; who issued,
	// approved or configured something is a User (a person) or System
	// (leaseguard itself).
	ocsfUserTypeUser    = 1
	ocsfUserTypeSystem  = 3
	ocsfUserTypeService = 4

	ocsfAnalyticRule = 1
	// ocsfResourceTarget is resource_details.role_id Target: the database
	// user (or database) the finding is about.
	ocsfResourceTarget = 1

	// Profiles an event declares in metadata.profiles. datetime: time_dt
	// is set. host: the event carries a top-level actor on a class that
	// has it only through that profile (Detection Finding).
	ocsfProfileDatetime = "datetime"
	ocsfProfileHost     = "host"
)

var ocsfSeverityNames = map[int]string{
	0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical",
}

var ocsfUserTypeNames = map[int]string{
	ocsfUserTypeUser: "User", ocsfUserTypeSystem: "System", ocsfUserTypeService: "Service",
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	// Version is leaseguard's version (Builder.Version).
	Version string `json:"version,omitempty"`
}

type ocsfMetadata struct {
	Version string      `json:"version"`
	Product ocsfProduct `json:"product"`
	// UID is the event's CloudEvents id.
	UID string `json:"uid"`
	// CorrelationUID is the revocation command id, which links a finding
	// to the revocation it requested.
	CorrelationUID string   `json:"correlation_uid,omitempty"`
	LogName        string   `json:"log_name"`
	LogProvider    string   `json:"log_provider"`
	Profiles       []string `json:"profiles"`
}

// metadata is every event's metadata; profiles are those the event uses
// besides datetime, which every event declares.
func (b Builder) metadata(id, correlation string, profiles ...string) ocsfMetadata {
	return ocsfMetadata{
		Version:        OCSFVersion,
		Product:        ocsfProduct{Name: productName, VendorName: productName, Version: b.Version},
		UID:            id,
		CorrelationUID: correlation,
		LogName:        ocsfLogName,
		LogProvider:    ocsfLogProvider,
		Profiles:       append([]string{ocsfProfileDatetime}, profiles...),
	}
}

// ocsfOccurrence is when the event happened: epoch milliseconds, and (the
// datetime profile) RFC 3339. leaseguard records UTC, so the offset is 0.
type ocsfOccurrence struct {
	Time           int64  `json:"time"`
	TimeDT         string `json:"time_dt"`
	TimezoneOffset int    `json:"timezone_offset"`
}

func occurrence(t time.Time) ocsfOccurrence {
	return ocsfOccurrence{Time: t.UnixMilli(), TimeDT: rfc3339(t)}
}

// ocsfStatus: status_code is the one enumerated word a SIEM filters on
// (the revocation outcome, the finding action, the approval decision, the
// policy change kind); status_detail explains it.
type ocsfStatus struct {
	StatusID     int    `json:"status_id"`
	Status       string `json:"status"`
	StatusCode   string `json:"status_code"`
	StatusDetail string `json:"status_detail"`
}

// ocsfUser: UID is the database role's OID (decimal) when the user is a
// database user; Domain is then the leaseguard database target that holds
// it (an OID is unique only within its cluster). The lease id is never
// here: it is unmapped.lease_id.
type ocsfUser struct {
	Name   string `json:"name,omitempty"`
	UID    string `json:"uid,omitempty"`
	Type   string `json:"type,omitempty"`
	TypeID int    `json:"type_id,omitempty"`
	Domain string `json:"domain,omitempty"`
}

// dbUser is a database user as OCSF sees it: a service account.
func dbUser(name string, oid uint32, database string) ocsfUser {
	u := ocsfUser{Name: name, Type: ocsfUserTypeNames[ocsfUserTypeService], TypeID: ocsfUserTypeService, Domain: database}
	if oid != 0 {
		u.UID = strconv.FormatUint(uint64(oid), 10)
	}
	return u
}

// person is who acted: a User, or leaseguard itself (System).
func person(name string, system bool) *ocsfUser {
	t := ocsfUserTypeUser
	if system {
		t = ocsfUserTypeSystem
	}
	return &ocsfUser{Name: name, Type: ocsfUserTypeNames[t], TypeID: t}
}

// ocsfObservable indexes a value a SIEM pivots on: a user name or an IP
// address, by its path in the event.
type ocsfObservable struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	TypeID int    `json:"type_id"`
	Value  string `json:"value"`
}

// Observable types (OCSF dictionary types username_t and ip_t).
const (
	ocsfObservableIP       = 2
	ocsfObservableUserName = 4
)

// observables lists path/value pairs of one type, leaving out empty values.
func observables(typeID int, typeName string, pathValues ...string) []ocsfObservable {
	var out []ocsfObservable
	for i := 0; i+1 < len(pathValues); i += 2 {
		if pathValues[i+1] != "" {
			out = append(out, ocsfObservable{Name: pathValues[i], Type: typeName, TypeID: typeID, Value: pathValues[i+1]})
		}
	}
	return out
}

func userNames(pathValues ...string) []ocsfObservable {
	return observables(ocsfObservableUserName, "User Name", pathValues...)
}

type ocsfEndpoint struct {
	IP   string `json:"ip,omitempty"`
	Port int    `json:"port,omitempty"`
}

// ocsfActor: User is who acted; AppName is the program that carried it
// out (leaseguard), on events where leaseguard acted for someone.
type ocsfActor struct {
	User    *ocsfUser `json:"user,omitempty"`
	AppName string    `json:"app_name,omitempty"`
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
	ocsfStatus
	ocsfOccurrence
	StartTime   int64              `json:"start_time,omitempty"`
	EndTime     int64              `json:"end_time,omitempty"`
	Duration    *int64             `json:"duration,omitempty"`
	Message     string             `json:"message"`
	Metadata    ocsfMetadata       `json:"metadata"`
	User        ocsfUser           `json:"user"`
	Actor       ocsfActor          `json:"actor"`
	Observables []ocsfObservable   `json:"observables,omitempty"`
	Unmapped    revocationUnmapped `json:"unmapped"`
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
	Definers           []string                `json:"definers,omitempty"`
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

// revocationDetail explains the outcome: the revoker's reason (why it
// failed or was refused, or that an earlier attempt dropped the role), or
// else the message.
func revocationDetail(cmd schemas.RevocationCommand, res schemas.RevocationResult) string {
	if res.Reason != "" {
		return res.Reason
	}
	return revocationMessage(cmd, res)
}

// revokedUser is the database user the revocation is about; for a ghost
// session it is the session's former role, whose OID the session names.
func revokedUser(cmd schemas.RevocationCommand, res schemas.RevocationResult) ocsfUser {
	oid := cmd.RoleOID
	if oid == 0 && cmd.Session != nil {
		oid = cmd.Session.UserOID
	}
	return dbUser(res.DBUser, oid, res.Database)
}

func (b Builder) revocationData(id string, cmd schemas.RevocationCommand, res schemas.RevocationResult, lc LeaseContext, occurred time.Time) accountChange {
	statusID, _ := outcomeStatus(res.Outcome)
	status := "Success"
	if statusID == ocsfStatusFailure {
		status = "Failure"
	}
	// The actor is who asked: the operator, or else the issuing part of
	// leaseguard (the detector).
	actor := person(cmd.Actor, false)
	if cmd.Actor == "" {
		actor = person(cmd.Issuer, true)
	}
	statements := res.Statements
	if statements == nil {
		statements = []string{}
	}
	ev := accountChange{
		ocsfClass: classify(ocsfCategoryIAM, "Identity & Access Management", ocsfClassAccount, "Account Change",
			ocsfActivityDelete, "Delete", outcomeSeverity(res.Outcome)),
		ocsfStatus: ocsfStatus{StatusID: statusID, Status: status, StatusCode: string(res.Outcome),
			StatusDetail: revocationDetail(cmd, res)},
		ocsfOccurrence: occurrence(occurred),
		StartTime:      epochMS(res.StartedAt),
		EndTime:        epochMS(res.FinishedAt),
		Message:        revocationMessage(cmd, res),
		Metadata:       b.metadata(id, cmd.ID),
		User:           revokedUser(cmd, res),
		Actor:          ocsfActor{User: actor, AppName: productName},
		Observables:    userNames("user.name", res.DBUser, "actor.user.name", actor.Name),
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
			Definers:           res.Definers,
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
	ocsfStatus
	ocsfOccurrence
	// IsAlert: every finding is a signal someone should see (a pilot's
	// too: it says what enforcement would do).
	IsAlert     bool                `json:"is_alert"`
	Message     string              `json:"message"`
	Metadata    ocsfMetadata        `json:"metadata"`
	FindingInfo ocsfFindingInfo     `json:"finding_info"`
	Resources   []ocsfResource      `json:"resources,omitempty"`
	Evidences   []ocsfEvidence      `json:"evidences,omitempty"`
	Observables []ocsfObservable    `json:"observables,omitempty"`
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

// ocsfResource is what a finding is about: a database user (UID is its
// role's OID when known) or a database.
type ocsfResource struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
	Type string `json:"type"`
	// Namespace is the leaseguard database target.
	Namespace string `json:"namespace,omitempty"`
	Role      string `json:"role"`
	RoleID    int    `json:"role_id"`
}

func targetResource(name, uid, typ, namespace string) ocsfResource {
	return ocsfResource{Name: name, UID: uid, Type: typ, Namespace: namespace, Role: "Target", RoleID: ocsfResourceTarget}
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

// findingActionDetail explains a finding's action (its status_code).
var findingActionDetail = map[string]string{
	schemas.ActionNone:                "nothing is done; someone must look",
	schemas.ActionRevocationRequested: "leaseguard requested the revocation",
	schemas.ActionApprovalRequested:   "the revocation waits for an owner's approval",
	schemas.ActionUnconfirmed:         "nothing corroborated the finding; nothing is done",
	schemas.ActionWouldDrop:           "pilot: the rule would have dropped the user, outside the enforcement scope; nothing is done",
	schemas.ActionWouldTerminate:      "pilot: the rule would have terminated the session, outside the enforcement scope; nothing is done",
}

// roleOID is the database role's OID as a finding's facts give it
// (role_oid, or user_oid for a ghost session's former role), or "".
func roleOID(facts map[string]any) string {
	for _, k := range []string{"role_oid", "user_oid"} {
		switch v := facts[k].(type) {
		case uint32:
			return strconv.FormatUint(uint64(v), 10)
		case int:
			return strconv.Itoa(v)
		case int64:
			return strconv.FormatInt(v, 10)
		case float64:
			if v > 0 && v == float64(uint32(v)) {
				return strconv.FormatUint(uint64(v), 10)
			}
		case json.Number:
			if _, err := strconv.ParseUint(string(v), 10, 32); err == nil {
				return string(v)
			}
		}
	}
	return ""
}

func (b Builder) findingData(id string, f schemas.Finding, lc LeaseContext, occurred time.Time) detectionFinding {
	detail, ok := findingActionDetail[f.Action]
	if !ok {
		detail = f.Action
	}
	ev := detectionFinding{
		ocsfClass: classify(ocsfCategoryFindings, "Findings", ocsfClassDetection, "Detection Finding",
			ocsfActivityCreate, "Create", f.Severity.Rank()),
		ocsfStatus:     ocsfStatus{StatusID: ocsfFindingNew, Status: "New", StatusCode: f.Action, StatusDetail: detail},
		ocsfOccurrence: occurrence(occurred),
		IsAlert:        true,
		Message:        f.Summary,
		Metadata:       b.metadata(id, f.CommandID),
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
	oid := roleOID(f.Facts)
	if f.DBUser != "" {
		ev.Resources = []ocsfResource{targetResource(f.DBUser, oid, "Database User", f.Database)}
	} else if f.Database != "" {
		ev.Resources = []ocsfResource{targetResource(f.Database, "", "Database", "")}
	}
	var evd ocsfEvidence
	if f.DBUser != "" || oid != "" {
		u := dbUser(f.DBUser, 0, f.Database)
		u.UID = oid
		evd.Actor = &ocsfActor{User: &u}
	}
	evd.SrcEndpoint = endpoint(lc.RemoteAddress)
	if evd.Actor != nil || evd.SrcEndpoint != nil {
		ev.Evidences = []ocsfEvidence{evd}
		ev.Observables = userNames("evidences[0].actor.user.name", f.DBUser)
		if evd.SrcEndpoint != nil {
			ev.Observables = append(ev.Observables,
				observables(ocsfObservableIP, "IP Address", "evidences[0].src_endpoint.ip", evd.SrcEndpoint.IP)...)
		}
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
