package observer

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/leaseguard/leaseguard/observer/observed"
)

// knownRoles is what a committed pass recorded of its database's present
// roles, as db_roles holds them. The process that holds the duty is the
// only writer of db_roles for the database, so while it keeps the duty the
// next pass can diff against this instead of reading every role back from
// the state store: at 100,000 roles that read was most of a pass that saw
// no change, and the state store's work then grows with the changes, not
// with the roles.
type knownRoles struct {
	// passAt is the pass that left them: only the pass whose previous
	// pass (observer_targets.last_pass_at) is exactly that one may use
	// them.
	passAt time.Time
	// roles, by oid.
	roles []knownRole
}

// knownRole is what the next pass needs of a present role: enough to tell
// whether it changed, and when it was first seen. The role's row itself
// (its name, for the events of a change) is read back from db_roles for
// the roles that changed only. Kept between passes for every role (100,000
// on a large target), it holds no pointer and no name: it was the row, its
// name and a validity of its own, about 245 bytes a role.
type knownRole struct {
	oid          uint32
	login, super bool
	// name is a digest of the role's name: a rename whose digest
	// collided would go unrecorded (odds of 2^-128, the seeds being
	// the process's own and secret); no verdict uses it, the rules
	// judging the roles as read.
	name nameDigest
	// valid is the validity in microseconds (noTime: none); firstSeen
	// and createdAfter are the row's first_seen_at and created_after
	// (noTime: NULL).
	valid, firstSeen, createdAfter int64
}

// nameDigest is a keyed digest of a role name.
type nameDigest [2]uint64

// noTime stands for a NULL time in a knownRole.
const noTime = math.MinInt64

var nameSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func digestName(name string) nameDigest {
	return nameDigest{maphash.String(nameSeeds[0], name), maphash.String(nameSeeds[1], name)}
}

func microsOf(t *time.Time) int64 {
	if t == nil {
		return noTime
	}
	return t.UnixMicro()
}

// knownOf is what the next pass needs of a role recorded as row.
func knownOf(row roleRow) knownRole {
	return knownRole{oid: row.OID, login: row.CanLogin, super: row.Superuser, name: digestName(row.Name),
		valid: microsOf(row.ValidUntil), firstSeen: row.firstSeen.UnixMicro(), createdAfter: microsOf(row.createdAfter)}
}

// matches reports whether r (its validity as the state store keeps it) is
// the role k was recorded from, unchanged.
func (k *knownRole) matches(r observed.DBRole) bool {
	return k.valid == microsOf(r.ValidUntil) && k.login == r.CanLogin && k.super == r.Superuser && k.name == digestName(r.Name)
}

// set records r's state in k; when it was first seen stays.
func (k *knownRole) set(r observed.DBRole) {
	k.login, k.super, k.name, k.valid = r.CanLogin, r.Superuser, digestName(r.Name), microsOf(r.ValidUntil)
}

func compareOID(k knownRole, oid uint32) int { return cmp.Compare(k.oid, oid) }

// findKnown is the index of oid in roles (sorted by oid).
func findKnown(roles []knownRole, oid uint32) (int, bool) {
	return slices.BinarySearchFunc(roles, oid, compareOID)
}

func sortKnown(roles []knownRole) {
	slices.SortFunc(roles, func(a, b knownRole) int { return cmp.Compare(a.oid, b.oid) })
}

// loadKnown reads the roles present at the previous pass of db from the
// state store (after a restart, or a pass that did not commit).
func loadKnown(ctx context.Context, tx pgx.Tx, db string) ([]knownRole, error) {
	rows, err := tx.Query(ctx, `
		SELECT oid, rolname, valid_until, can_login, superuser, first_seen_at, created_after
		FROM db_roles WHERE database = $1 AND gone_at IS NULL`, db)
	if err != nil {
		return nil, fmt.Errorf("load roles of %s: %w", db, err)
	}
	var out []knownRole
	var k knownRole
	var oid int64
	var name string
	var valid, created pgtype.Timestamptz
	var first time.Time
	_, err = pgx.ForEachRow(rows, []any{&oid, &name, &valid, &k.login, &k.super, &first, &created}, func() error {
		k.oid, k.name, k.firstSeen = uint32(oid), digestName(name), first.UnixMicro()
		k.valid, k.createdAfter = tzMicros(valid), tzMicros(created)
		out = append(out, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load roles of %s: %w", db, err)
	}
	sortKnown(out)
	return out, nil
}

// tzMicros is t in microseconds, noTime for NULL. A validity of infinity
// is not stored (the observer records it as none).
func tzMicros(t pgtype.Timestamptz) int64 {
	if !t.Valid {
		return noTime
	}
	return t.Time.UnixMicro()
}

// timeRefs hands out one pointer per distinct time, so that the roles of a
// pass first seen at the same pass share their CreatedAfter instead of
// costing an allocation each.
type timeRefs map[int64]*time.Time

func (m timeRefs) ref(micros int64) *time.Time {
	if micros == noTime {
		return nil
	}
	if t, ok := m[micros]; ok {
		return t
	}
	t := time.UnixMicro(micros).UTC()
	m[micros] = &t
	return &t
}
