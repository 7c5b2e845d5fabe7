package mysql

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/engine"
)

// Guard names, as recorded in RevocationResult.Guard: the revoker's own
// names for the same guards (a test in package revoker pins them).
const (
	GuardEmpty          = "empty"
	GuardInvalidName    = "invalid_name"
	GuardManagedPattern = "managed_pattern"
	GuardProtected      = "protected"
	GuardDatabase       = "database"
	GuardSuperuser      = "superuser"
	GuardOwnRole        = "own_role"
	GuardTarget         = "target"
	GuardAction         = "action"
	GuardCorroboration  = "corroboration"
)

// MaxNameChars is the longest account name MySQL or MariaDB accepts (128
// characters on MariaDB 10.11, 32 on MySQL 8). A longer one is an error
// there, never truncated; refusing it here keeps it out of every statement.
const MaxNameChars = 128

// builtin are accounts the server itself needs: never dropped, whatever
// the managed pattern says. mariadb.sys defines the mysql.user view: once
// it is gone, every read of mysql.user fails (error 1449). "mysql" is the
// Debian packages' socket account. Every "mysql.*" name is the server's
// too (mysql.sys, mysql.session, mysql.infoschema on MySQL 8).
var builtin = []string{"root", "mariadb.sys", "mysql", "debian-sys-maint"}

// BuiltIn reports whether name is an account of the server itself, which
// no drop ever touches.
func BuiltIn(name string) bool {
	return slices.Contains(builtin, name) || strings.HasPrefix(name, "mysql.")
}

// refusal is a guard's refusal; nothing was executed when one is returned.
type refusal struct {
	guard, reason string
}

func (r *refusal) Error() string { return "refused by guard " + r.guard + ": " + r.reason }

func refuse(guard, format string, args ...any) *refusal {
	return &refusal{guard: guard, reason: fmt.Sprintf(format, args...)}
}

// checkName applies the guards that need no server, in order: empty,
// invalid_name, protected (the server's own accounts), managed_pattern,
// protected (configured).
func checkName(g engine.Guard, name string) *refusal {
	switch {
	case name == "":
		return refuse(GuardEmpty, "no user name")
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return refuse(GuardInvalidName, "user name is not valid UTF-8 text")
	case utf8.RuneCountInString(name) > MaxNameChars:
		return refuse(GuardInvalidName, "user name is longer than the %d characters MySQL and MariaDB accept", MaxNameChars)
	case BuiltIn(name):
		return refuse(GuardProtected, "%q is an account of the server itself", name)
	case g.ManagedPattern == nil || !g.ManagedPattern.MatchString(name):
		return refuse(GuardManagedPattern, "user %q does not match the managed pattern %v", name, g.ManagedPattern)
	case slices.Contains(g.Protected, name):
		return refuse(GuardProtected, "user %q is protected", name)
	}
	return nil
}

// checkCorroboration: MySQL has no VALID UNTIL, so nothing in the server
// says a credential is over. A drop needs Vault to have said the lease is
// gone or expired, or a person to have asked for it.
func checkCorroboration(cmd schemas.RevocationCommand) *refusal {
	switch cmd.Corroboration.Source {
	case schemas.CorroboratedByVaultLookup, schemas.CorroboratedByOperator:
		return nil
	}
	return refuse(GuardCorroboration, "MySQL and MariaDB keep no expiry of an account (no VALID UNTIL): "+
		"a drop needs Vault to say the lease is gone or expired, or an operator; the command rests on %q",
		cmd.Corroboration.Source)
}

// superGrant reports whether a SHOW GRANTS line gives global SUPER, ALL
// PRIVILEGES or (MySQL 8) SYSTEM_USER: the rights of an administrator,
// which Vault's plugin never grants by default.
func superGrant(line string) bool {
	up := strings.ToUpper(line)
	on := strings.Index(up, " ON *.* TO ")
	if !strings.HasPrefix(up, "GRANT ") || on < 0 {
		return false
	}
	for _, p := range strings.Split(up[len("GRANT "):on], ",") {
		switch strings.TrimSpace(p) {
		case "ALL", "ALL PRIVILEGES", "SUPER", "SYSTEM_USER":
			return true
		}
	}
	return false
}

// splitAccount splits CURRENT_USER()'s "user@host" at its last '@' (a
// user name may hold '@', a host name may not).
func splitAccount(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[:i]
	}
	return s
}
