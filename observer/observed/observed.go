// Package observed holds what the database observer saw of a target and
// what its rules made of it: the facts both the observer (which records
// them) and the rules (which judge them) use, so that neither imports the
// other.
package observed

import (
	"slices"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// DBRole is one row of a target's pg_roles.
type DBRole struct {
	OID  uint32
	Name string
	// ValidUntil is rolvaliduntil; nil means no limit (NULL or infinity).
	ValidUntil *time.Time
	CanLogin   bool
	Superuser  bool
}

// DBSession is one row of a target's pg_stat_activity that has a user
// (usesysid not NULL).
type DBSession struct {
	PID          int32
	BackendStart time.Time
	// UserOID is usesysid; UserName is usename, empty when no role has
	// that oid any more (a ghost).
	UserOID         uint32
	UserName        string
	ClientAddr      string
	ClientPort      int32
	ApplicationName string
	Datname         string
	BackendType     string
}

// Role is a managed role present at a pass, with its history.
type Role struct {
	DBRole
	FirstSeenAt time.Time
	// CreatedAfter is the observer's previous pass, at which the role did
	// not exist: it was created after this time. Nil when the role was
	// there at the observer's first pass of the database (its creation
	// time is unknown).
	CreatedAfter *time.Time
}

// Session is a session of a managed role, or a ghost session,
// present at a pass.
type Session struct {
	DBSession
	FirstSeenAt time.Time
	// Ghost: no role has UserOID; GhostSince is the pass that first saw it
	// so.
	Ghost      bool
	GhostSince *time.Time
	// FormerUser is, for a ghost, the role name the observer knew for
	// UserOID (its history of pg_roles, or the session as first seen);
	// empty when unknown. FormerManaged: that name matches the managed
	// pattern.
	FormerUser    string
	FormerManaged bool
}

// Pass is one pass of the observer over a target, diffed against
// the previous one: what the rules judge.
type Pass struct {
	Database string
	// Engine is the target's engine: "postgres" or "mysql" (MySQL and
	// MariaDB, whose sessions' BackendStart is the server's start, a
	// lower bound of theirs: see package observer).
	Engine     string
	ObservedAt time.Time
	// PreviousPassAt is nil on the observer's first pass of the database.
	PreviousPassAt *time.Time
	// Coverage is the ledger's coverage watermark.
	Coverage time.Time
	// Roles are the managed roles present, by name.
	Roles []Role
	// Sessions are the sessions of managed roles and the ghost sessions.
	Sessions      []Session
	RoleEvents    []schemas.RoleEvent
	SessionEvents []schemas.SessionEvent
	// Hidden counts sessions whose backend_start the observer may not read
	// (it lacks pg_read_all_stats); they are not tracked.
	Hidden int
	// Server identifies the server the target is on (see package
	// observer); empty when unknown (the target is judged alone).
	Server string
	// ServerTargets are the configured targets on that server, this one
	// included, sorted: roles are the server's, and a lease naming any of
	// them accounts for a role. UnknownServerTargets are the configured
	// targets whose server could not be read: they may be on it, and their
	// leases count too.
	ServerTargets        []string
	UnknownServerTargets []string
	// RolesRecorded: the pass's transaction holds, in the state store's
	// db_roles under Database, every role present at this pass as the
	// observer read it (gone_at NULL). The rules then look the roles'
	// leases up through it instead of sending every name.
	RolesRecorded bool
}

// RoleScope is the name a finding about a role is keyed by: the first
// target of the server, so that a role is found once per server whichever
// target's pass sees it (the database itself when it is alone).
func (p *Pass) RoleScope() string {
	if len(p.ServerTargets) > 0 {
		return p.ServerTargets[0]
	}
	return p.Database
}

// LeaseTargets are the targets whose leases may account for a role of the
// pass: every target that is, or may be, on its server.
func (p *Pass) LeaseTargets() []string {
	out := append([]string{p.Database}, p.ServerTargets...)
	out = append(out, p.UnknownServerTargets...)
	slices.Sort(out)
	return slices.Compact(out)
}

// Baseline reports whether this is the observer's first pass of the
// database.
func (p *Pass) Baseline() bool { return p.PreviousPassAt == nil }

// Report is what the rules did with one pass.
type Report struct {
	// Findings recorded by this pass (new ones, and carried ones).
	Findings []schemas.Finding
	// Commands queued (drops, and terminations of ghost sessions).
	Commands int
	// Ambiguous counts roles not judged "unknown" because HMAC'd leases
	// issued while they were created might be theirs.
	Ambiguous int
}
