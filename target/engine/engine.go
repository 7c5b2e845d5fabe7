// Package engine is what leaseguard needs of a target database, whatever
// its kind: PostgreSQL (package target) and MySQL/MariaDB (target/mysql)
// implement it. It imports nothing of ours but schemas, so both can.
//
// The interface was drawn from the two engines, not from PostgreSQL alone:
//   - an account is a name; on MySQL it exists once per host ('u'@'%',
//     'u'@'localhost'), and dropping the name drops every host;
//   - only PostgreSQL says when a password ends (VALID UNTIL): Expiry
//     returns ErrNoExpiry on MySQL, whose expiry must come from Vault;
//   - PostgreSQL finds a session of a dropped role by its oid, MySQL by the
//     name left in the processlist: Verify answers for the name.
package engine

import (
	"context"
	"errors"
	"regexp"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// Kind names an engine.
type Kind string

// The engines leaseguard knows.
const (
	KindPostgres Kind = "postgres"
	KindMySQL    Kind = "mysql"
)

// ErrNoExpiry: the engine keeps no expiry of its accounts (MySQL and
// MariaDB have no VALID UNTIL, and Vault's plugin sets no password expiry).
var ErrNoExpiry = errors.New("the engine keeps no expiry of its accounts")

// Account is one database user, all its hosts together.
type Account struct {
	Name string
	// Hosts are the MySQL host parts of the account ('u'@'%' …); empty on
	// PostgreSQL.
	Hosts []string
	// OID is PostgreSQL's role oid; 0 on MySQL, which has none.
	OID uint32
	// ValidUntil is when the database stops honouring the password; nil:
	// never, or the engine does not say.
	ValidUntil *time.Time
	CanLogin   bool
	Superuser  bool
}

// Session is one connection to the target.
type Session struct {
	// ID is the PostgreSQL backend pid or the MySQL connection id.
	ID int64
	// User is the session's user name ("" on PostgreSQL when its role was
	// dropped; on MySQL the processlist keeps the name).
	User string
	// Host is the client address, without port where the engine gives one.
	Host string
	// Started is when the session began (MySQL: now minus its TIME, to
	// the second).
	Started time.Time
}

// Gone is what a check after a drop found.
type Gone struct {
	// Absent: no account of the name is left (no host of it).
	Absent bool
	// Sessions still connected as the name.
	Sessions int
}

// Engine is what the revoker and the observer need of one target.
type Engine interface {
	Kind() Kind
	// Identity identifies the server (and database) behind the target, for
	// signed commands: a command issued for one is refused by another.
	Identity(ctx context.Context) (schemas.TargetIdentity, error)
	// Accounts lists the accounts whose name the pattern matches.
	Accounts(ctx context.Context, managed *regexp.Regexp) ([]Account, error)
	// Sessions lists every session but the caller's own.
	Sessions(ctx context.Context) ([]Session, error)
	// Expiry gives the named accounts' password expiry; ErrNoExpiry when
	// the engine keeps none.
	Expiry(ctx context.Context, users []string) (map[string]time.Time, error)
	// Terminate ends every session of the user and returns how many it
	// ended.
	Terminate(ctx context.Context, user string) (int, error)
	// Verify checks that the user is gone: no account, no session.
	Verify(ctx context.Context, user string) (Gone, error)
	Ping(ctx context.Context) error
	Close()
}

// Guard is what a drop must respect, whatever the engine: which names are
// managed, which are never touched, and whether accounts with global
// superuser rights may go.
type Guard struct {
	ManagedPattern *regexp.Regexp
	Protected      []string
	// AllowSuper lets a drop remove an account with global SUPER or ALL
	// PRIVILEGES (MySQL). Vault's plugin never grants them by default.
	AllowSuper bool
}

// Revoker is an engine that drops its accounts itself. PostgreSQL's drops
// are the revoker's batched transactions (package revoker); MySQL's are
// this: one account at a time, all its hosts.
type Revoker interface {
	Engine
	// Drop revokes the command's user in the target named database. It
	// never returns an error: every path ends in an outcome with its
	// reason, and a second call finds the user already absent.
	Drop(ctx context.Context, database string, cmd schemas.RevocationCommand, g Guard) schemas.RevocationResult
}
