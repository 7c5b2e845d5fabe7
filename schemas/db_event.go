package schemas

import "time"

// Versioned types of the database observer's documents.
const (
	RoleEventType    = "io.leaseguard.db_role.v1"
	SessionEventType = "io.leaseguard.db_session.v1"
)

// RoleEventKind is what changed about a role in pg_roles.
type RoleEventKind string

const (
	// RoleAppeared: the role was not there at the previous pass (or this is
	// the observer's first pass of the database, Baseline).
	RoleAppeared RoleEventKind = "appeared"
	// RoleDisappeared: the role was dropped.
	RoleDisappeared RoleEventKind = "disappeared"
	// RoleChanged: its name, validity, LOGIN or SUPERUSER changed
	// (a renewal moves rolvaliduntil).
	RoleChanged RoleEventKind = "changed"
)

// RoleState is what pg_roles says about a role.
type RoleState struct {
	Name string `json:"name"`
	// ValidUntil is rolvaliduntil; nil means no limit (NULL or infinity).
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	CanLogin   bool       `json:"can_login"`
	Superuser  bool       `json:"superuser,omitempty"`
}

// RoleEvent reports a change of a managed role in a target database, as the
// observer saw it between two passes. Published on
// leaseguard.db.<database>.role.
type RoleEvent struct {
	Type string `json:"type"`
	// ID is deterministic over database, role, kind and pass: the JetStream
	// message id.
	ID       string        `json:"id"`
	Kind     RoleEventKind `json:"kind"`
	Database string        `json:"database"`
	// OID is pg_roles.oid; sessions name their role by it (usesysid).
	OID uint32 `json:"oid"`
	// ObservedAt is the pass that saw the change; PreviousPassAt the pass
	// before it (the change happened in between). Absent on a baseline.
	ObservedAt     time.Time  `json:"observed_at"`
	PreviousPassAt *time.Time `json:"previous_pass_at,omitempty"`
	// Baseline: the role was there when the observer first looked at the
	// database; when it was created is unknown.
	Baseline bool `json:"baseline,omitempty"`
	// Role is the state after the change (for disappeared: the last state
	// seen); Previous the state before a change.
	Role     RoleState  `json:"role"`
	Previous *RoleState `json:"previous,omitempty"`
	// Managed: the role's name (after the change) matches the managed
	// pattern. Only changes of managed roles are published, and renames
	// into or out of the pattern (the latter with Managed false).
	Managed bool `json:"managed"`
}

// SessionEventKind is what happened to a session in pg_stat_activity.
type SessionEventKind string

const (
	SessionStarted SessionEventKind = "started"
	SessionEnded   SessionEventKind = "ended"
	// SessionGhost: the session's role was dropped and the session lives on
	// with no user name (its usesysid matches no role).
	SessionGhost SessionEventKind = "ghost"
)

// SessionEvent reports a session of a managed role, or a ghost session,
// starting, ending or losing its role. Published on
// leaseguard.db.<database>.session.
type SessionEvent struct {
	Type           string           `json:"type"`
	ID             string           `json:"id"`
	Kind           SessionEventKind `json:"kind"`
	Database       string           `json:"database"`
	ObservedAt     time.Time        `json:"observed_at"`
	PreviousPassAt *time.Time       `json:"previous_pass_at,omitempty"`
	Baseline       bool             `json:"baseline,omitempty"`
	// PID and BackendStart identify the session; a pid alone is reused.
	PID          int32     `json:"pid"`
	BackendStart time.Time `json:"backend_start"`
	// UserOID is usesysid; User the role name, empty for a ghost.
	UserOID uint32 `json:"user_oid"`
	User    string `json:"user,omitempty"`
	// Ghost: no role has UserOID any more. FormerUser is the name the
	// observer's history, or the session when first seen, knew for it.
	Ghost           bool   `json:"ghost,omitempty"`
	FormerUser      string `json:"former_user,omitempty"`
	ClientAddr      string `json:"client_addr,omitempty"`
	ClientPort      int32  `json:"client_port,omitempty"`
	ApplicationName string `json:"application_name,omitempty"`
	// Datname is the database the session is connected to (pg_stat_activity
	// shows the whole cluster); Database is the observed target.
	Datname     string `json:"datname,omitempty"`
	BackendType string `json:"backend_type,omitempty"`
}
