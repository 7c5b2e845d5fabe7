package target

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// queryTimeout bounds every read this package makes of a target.
const queryTimeout = 10 * time.Second

// identityTTL: how long a target's identity is reused before it is read
// again. The system identifier never changes; the database oid changes
// only if the database is dropped and created again, and the revoker reads
// both again inside every drop transaction anyway.
const identityTTL = time.Minute

// IdentitySQL reads the identity of the database a connection is in. The
// revoker reads it in its drop transaction with the same statement.
const IdentitySQL = `SELECT (SELECT system_identifier FROM pg_control_system())::text, ` +
	`(SELECT oid FROM pg_database WHERE datname = current_database())`

type identities struct {
	mu sync.Mutex
	m  map[string]cachedIdentity
}

type cachedIdentity struct {
	id schemas.TargetIdentity
	at time.Time
}

func newIdentities() *identities { return &identities{m: map[string]cachedIdentity{}} }

// ErrUnknownTarget: no target of that name is configured.
var ErrUnknownTarget = errors.New("unknown target")

// Identity returns the named target's identity: its cluster's system
// identifier and its database oid (MySQL: its server's, see
// mysql.Engine.Identity). Signed commands carry it, so a command
// issued for one database is refused by a revoker whose target of that
// name is another.
func (s *Set) Identity(ctx context.Context, database string) (schemas.TargetIdentity, error) {
	e, ok := s.Engine(database)
	if !ok {
		return schemas.TargetIdentity{}, fmt.Errorf("%w %q", ErrUnknownTarget, database)
	}
	s.ids.mu.Lock()
	c, ok := s.ids.m[database]
	s.ids.mu.Unlock()
	if ok && time.Since(c.at) < identityTTL {
		return c.id, nil
	}
	id, err := e.Identity(ctx)
	if err != nil {
		return id, fmt.Errorf("read identity of %s: %w", database, err)
	}
	s.ids.mu.Lock()
	s.ids.m[database] = cachedIdentity{id: id, at: time.Now()}
	s.ids.mu.Unlock()
	return id, nil
}

// Role is what pg_roles says of one user: its oid and rolvaliduntil
// (ValidUntil nil: NULL or infinity, the password never expires).
type Role struct {
	OID        uint32
	ValidUntil *time.Time
	// NoExpiry: the engine keeps no expiry of its accounts (MySQL,
	// MariaDB), so a nil ValidUntil says nothing; OID is 0 there too.
	NoExpiry bool
}

// Roles reads the named users of a target; users that do not exist are
// missing from the result.
func (s *Set) Roles(ctx context.Context, database string, users []string) (map[string]Role, error) {
	if e, ok := s.mysqls[database]; ok {
		return mysqlRoles(ctx, e, database, users)
	}
	pool, ok := s.pools[database]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTarget, database)
	}
	roles, err := ReadRoles(ctx, pool, users)
	if err != nil {
		return nil, fmt.Errorf("read pg_roles of %s: %w", database, err)
	}
	return roles, nil
}

// mysqlRoles: the users with an account on a MySQL target, with no oid
// and NoExpiry (MySQL has neither).
func mysqlRoles(ctx context.Context, e *mysql.Engine, database string, users []string) (map[string]Role, error) {
	exist, err := e.Existing(ctx, users)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", database, err)
	}
	out := make(map[string]Role, len(exist))
	for u := range exist {
		out[u] = Role{NoExpiry: true}
	}
	return out, nil
}

// ReadIdentity reads the identity of the database pool connects to.
func ReadIdentity(ctx context.Context, pool *pgxpool.Pool) (schemas.TargetIdentity, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var id schemas.TargetIdentity
	err := pool.QueryRow(ctx, IdentitySQL).Scan(&id.SystemIdentifier, &id.DatabaseOID)
	return id, err
}

// ReadRoles reads pg_roles of the named users through pool; users that do
// not exist are missing from the result.
func ReadRoles(ctx context.Context, pool *pgxpool.Pool, users []string) (map[string]Role, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT rolname, oid, rolvaliduntil FROM pg_roles WHERE rolname = ANY($1)`, users)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Role, len(users))
	var name string
	var oid uint32
	var until pgtype.Timestamptz
	_, err = pgx.ForEachRow(rows, []any{&name, &oid, &until}, func() error {
		role := Role{OID: oid}
		if until.Valid && until.InfinityModifier == pgtype.Finite {
			t := until.Time
			role.ValidUntil = &t
		}
		out[name] = role
		return nil
	})
	return out, err
}

// RoleOIDs returns the oids of the users that exist in a target.
func (s *Set) RoleOIDs(ctx context.Context, database string, users []string) (map[string]uint32, error) {
	return oidsOf(s.Roles(ctx, database, users))
}

func oidsOf(roles map[string]Role, err error) (map[string]uint32, error) {
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint32, len(roles))
	for n, r := range roles {
		out[n] = r.OID
	}
	return out, nil
}

// Pools is a fixed set of target pools by name, read without caching: for
// tools and tests that build their own pools (the benchmark, test rigs).
type Pools map[string]*pgxpool.Pool

// Pool returns the named pool.
func (p Pools) Pool(name string) (*pgxpool.Pool, bool) {
	pool, ok := p[name]
	return pool, ok
}

// Names lists the targets in a stable order.
func (p Pools) Names() []string {
	out := make([]string, 0, len(p))
	for n := range p {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Identity reads the named target's identity.
func (p Pools) Identity(ctx context.Context, name string) (schemas.TargetIdentity, error) {
	pool, ok := p[name]
	if !ok {
		return schemas.TargetIdentity{}, fmt.Errorf("%w %q", ErrUnknownTarget, name)
	}
	return ReadIdentity(ctx, pool)
}

// Roles reads the named users of a target.
func (p Pools) Roles(ctx context.Context, name string, users []string) (map[string]Role, error) {
	pool, ok := p[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTarget, name)
	}
	return ReadRoles(ctx, pool, users)
}

// RoleOIDs returns the oids of the users that exist in a target.
func (p Pools) RoleOIDs(ctx context.Context, name string, users []string) (map[string]uint32, error) {
	return oidsOf(p.Roles(ctx, name, users))
}
