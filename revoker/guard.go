// Package revoker drops the PostgreSQL users of expired Vault leases, behind
// guards that make dropping the wrong user impossible by construction: a
// command must name a managed, unprotected, ordinary login role, and the
// database must confirm that inside the transaction that drops it.
package revoker

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
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
}

func (g GuardConfig) withDefaults() GuardConfig {
	if g.ManagedPattern == nil {
		g.ManagedPattern = DefaultManagedPattern
	}
	g.Protected = slices.Clone(g.Protected)
	return g
}

// CheckName applies the guards that need no database, in order: empty,
// invalid_name (longer than 63 bytes, NUL or invalid UTF-8), managed_pattern,
// protected. It returns nil or a *Refusal.
func (g GuardConfig) CheckName(name string) error {
	g = g.withDefaults()
	switch {
	case name == "":
		return refuse(GuardEmpty, "no role name")
	case len(name) > maxIdentifierBytes:
		return refuse(GuardInvalidName, "role name is %d bytes, longer than PostgreSQL's %d", len(name), maxIdentifierBytes)
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
// advisory lock in the transaction that drops it.
type roleFacts struct {
	Name        string
	OID         uint32
	Superuser   bool
	Replication bool
	BypassRLS   bool
}

// sessionFacts describes the revoker's own connection to the target.
type sessionFacts struct {
	CurrentUser string
	SessionUser string
}

// checkRole applies the guards that need the database, in order:
// superuser, own_role, replication, bypassrls, reassign_target. It returns
// nil or a *Refusal.
func checkRole(r roleFacts, s sessionFacts, reassignTo string) error {
	switch {
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
	}
	return nil
}

// asRefusal reports whether err is a *Refusal and returns it.
func asRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}
