package revoker

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// Guard names, as recorded in RevocationResult.Guard.
const (
	GuardEmpty          = "empty"
	GuardInvalidName    = "invalid_name"
	GuardManagedPattern = "managed_pattern"
	GuardProtected      = "protected"
	GuardDatabase       = "database"
	GuardSuperuser      = "superuser"
	GuardOwnRole        = "own_role"
	GuardReplication    = "replication"
	GuardBypassRLS      = "bypassrls"
	GuardReassignTarget = "reassign_target"
	GuardSignature      = "signature"
	// The guards below are checked before a command is recorded under its
	// id (except role_oid, corroboration, group_role and createrole, which
	// the target answers under the role's lock).
	GuardExpired       = "expired"
	GuardAction        = "action"
	GuardTarget        = "target"
	GuardUnknownTarget = "unknown_target"
	GuardApproval      = "approval"
	GuardRoleOID       = "role_oid"
	GuardCorroboration = "corroboration"
	GuardGroupRole     = "group_role"
	GuardCreateRole    = "createrole"
)

// DefaultManagedPattern matches the names Vault's PostgreSQL plugin gives
// dynamic users with its default username template ("v-<display>-<role>-…").
var DefaultManagedPattern = regexp.MustCompile(`^v-`)

// maxIdentifierBytes is PostgreSQL's NAMEDATALEN-1. A longer identifier is
// silently truncated by the server, so a command naming one would act on
// whichever role carries the first 63 bytes of the name: refuse it instead.
const maxIdentifierBytes = 63

// Refusal is the error of a guard that refused a command. Nothing was
// executed against the database when a Refusal is returned.
type Refusal struct {
	Guard  string
	Reason string
}

func (r *Refusal) Error() string {
	return "refused by guard " + r.Guard + ": " + r.Reason
}

func refuse(guard, format string, args ...any) *Refusal {
	return &Refusal{Guard: guard, Reason: fmt.Sprintf(format, args...)}
}

// GuardConfig says which roles the revoker may drop at all.
type GuardConfig struct {
	// ManagedPattern must match a role name for it to be dropped.
	// Default DefaultManagedPattern (^v-).
	ManagedPattern *regexp.Regexp
	// Protected names are never dropped (exact, case-sensitive match).
	Protected []string
	// AllowGroupRoles lets the revoker drop a role that has members.
	// Vault's plugin creates login roles with no members; a role others are
	// granted is a group role, and dropping it takes their privileges away.
	AllowGroupRoles bool
	// AllowCreateRole lets the revoker drop a role with CREATEROLE, which
	// Vault's default creation statements never grant.
	AllowCreateRole bool
	// AllowSuperuser lets the revoker drop a MySQL or MariaDB account with
	// global SUPER or ALL PRIVILEGES, which Vault's plugin never grants by
	// default. A PostgreSQL superuser is never dropped.
	AllowSuperuser bool
}

func (g GuardConfig) withDefaults() GuardConfig {
	if g.ManagedPattern == nil {
		g.ManagedPattern = DefaultManagedPattern
	}
	g.Protected = slices.Clone(g.Protected)
	return g
}

// CheckName applies the guards that need no database to a PostgreSQL role
// name: CheckNameFor of engine.KindPostgres.
func (g GuardConfig) CheckName(name string) error {
	return g.CheckNameFor(engine.KindPostgres, name)
}

// CheckNameFor applies the guards that need no database, in order: empty,
// invalid_name (longer than the engine allows: 63 bytes on PostgreSQL, 128
// characters on MySQL and MariaDB; NUL or invalid UTF-8), managed_pattern,
// protected. It returns nil or a *Refusal.
func (g GuardConfig) CheckNameFor(kind engine.Kind, name string) error {
	g = g.withDefaults()
	switch {
	case name == "":
		return refuse(GuardEmpty, "no role name")
	case kind != engine.KindMySQL && len(name) > maxIdentifierBytes:
		return refuse(GuardInvalidName, "role name is %d bytes, longer than PostgreSQL's %d", len(name), maxIdentifierBytes)
	case kind == engine.KindMySQL && utf8.RuneCountInString(name) > mysql.MaxNameChars:
		return refuse(GuardInvalidName, "user name is %d characters, longer than the %d MySQL and MariaDB accept",
			utf8.RuneCountInString(name), mysql.MaxNameChars)
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return refuse(GuardInvalidName, "role name is not valid UTF-8 text")
	case !g.ManagedPattern.MatchString(name):
		return refuse(GuardManagedPattern, "role %q does not match the managed pattern %s", name, g.ManagedPattern)
	case slices.Contains(g.Protected, name):
		return refuse(GuardProtected, "role %q is protected", name)
	}
	return nil
}

// roleFacts is what pg_roles says about a role, read under the role's
// advisory lock in the transaction that drops it. It is comparable: the
// revoker reads it twice and compares.
type roleFacts struct {
	Name        string
	OID         uint32
	Superuser   bool
	Replication bool
	BypassRLS   bool
	CreateRole  bool
	// HasMembers: roles other than the revoker's own are members of it (a
	// group role).
	HasMembers bool
	// ValidUntilPassed: rolvaliduntil is finite and before the
	// transaction's start (the database no longer honours the password).
	ValidUntilPassed bool
}

// sessionFacts describes the revoker's own connection to the target.
type sessionFacts struct {
	CurrentUser string
	SessionUser string
	// Target is the identity of the database the connection is in.
	Target schemas.TargetIdentity
}

// expectation is what a command says the target and its role were when it
// was issued; the revoker refuses when the database disagrees.
type expectation struct {
	target        schemas.TargetIdentity
	oid           uint32
	corroboration string
}

func expect(cmd schemas.RevocationCommand) expectation {
	return expectation{target: cmd.Target, oid: cmd.RoleOID, corroboration: cmd.Corroboration.Source}
}

// checkTarget refuses a command issued for another database than the one
// the connection is in.
func checkTarget(s sessionFacts, e expectation) error {
	if s.Target != e.target {
		return refuse(GuardTarget, "the command was issued for database %s/%d, and this target is %s/%d",
			e.target.SystemIdentifier, e.target.DatabaseOID, s.Target.SystemIdentifier, s.Target.DatabaseOID)
	}
	return nil
}

// checkRole applies the guards that need the database, in order:
// role_oid, superuser, own_role, replication, bypassrls, reassign_target,
// group_role, createrole, corroboration. It returns nil or a *Refusal.
func checkRole(r roleFacts, s sessionFacts, reassignTo string, e expectation, g GuardConfig) error {
	switch {
	case r.OID != e.oid:
		return refuse(GuardRoleOID, "role %q has oid %d; the command was issued for oid %d (the role was replaced)", r.Name, r.OID, e.oid)
	case r.Superuser:
		return refuse(GuardSuperuser, "role %q is a superuser", r.Name)
	case r.Name == s.CurrentUser || r.Name == s.SessionUser:
		return refuse(GuardOwnRole, "role %q is the revoker's own login role", r.Name)
	case r.Replication:
		return refuse(GuardReplication, "role %q has REPLICATION", r.Name)
	case r.BypassRLS:
		return refuse(GuardBypassRLS, "role %q has BYPASSRLS", r.Name)
	case r.Name == reassignTo:
		return refuse(GuardReassignTarget, "role %q is the role its objects would be reassigned to", r.Name)
	case r.HasMembers && !g.AllowGroupRoles:
		return refuse(GuardGroupRole, "role %q has members: it is a group role", r.Name)
	case r.CreateRole && !g.AllowCreateRole:
		return refuse(GuardCreateRole, "role %q has CREATEROLE", r.Name)
	case e.corroboration == schemas.CorroboratedByValidUntil && !r.ValidUntilPassed:
		return refuse(GuardCorroboration, "the command rests on rolvaliduntil having passed, and the database honours the password of %q again (renewed since)", r.Name)
	}
	return nil
}

// asRefusal reports whether err is a *Refusal and returns it.
func asRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}

// refuseByName applies the guards that need neither the database nor the
// blast-radius limit (the name: managed pattern, protected, valid): a
// command they refuse takes no token. It returns the refusal and true, or
// false. kind is the engine of the command's target: the names it accepts
// are its own.
func (d *Dropper) refuseByName(cmd schemas.RevocationCommand, kind engine.Kind, now time.Time) (schemas.RevocationResult, bool) {
	if cmd.Action == schemas.ActionTerminateSession && cmd.DBUser == "" {
		return schemas.RevocationResult{}, false // a ghost of a role nobody knows
	}
	r, ok := asRefusal(d.guard.CheckNameFor(kind, cmd.DBUser))
	if !ok {
		return schemas.RevocationResult{}, false
	}
	return schemas.RevocationResult{CommandID: cmd.ID, Database: cmd.Database, DBUser: cmd.DBUser,
		Outcome: schemas.OutcomeRefused, Guard: r.Guard, Reason: r.Reason, StartedAt: now, FinishedAt: now}, true
}
