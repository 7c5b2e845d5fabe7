package observer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

type roleRow struct {
	observed.DBRole
	firstSeen    time.Time
	createdAfter *time.Time
	gone         bool
}

type sessionKey struct {
	pid   int32
	start int64 // backend_start, microseconds since the epoch
}

func keyOf(s observed.DBSession) sessionKey { return sessionKey{s.PID, s.BackendStart.UnixMicro()} }

// sessionRow is an open db_sessions row; UserName is the name the session
// had when first seen (empty if first seen as a ghost).
type sessionRow struct {
	observed.DBSession
	firstSeen  time.Time
	ghostSince *time.Time
	// seen: this pass saw it.
	seen bool
}

// Snapshot is what one observer pass read from a target.
type Snapshot struct {
	Database   string
	ObservedAt time.Time
	// Sessions must be read before Roles: a session's role then exists in
	// Roles unless it was dropped in between, so a session whose role is not
	// in Roles is a ghost, never a session of a role created in between.
	Sessions []observed.DBSession
	// Roles is all of pg_roles.
	Roles []observed.DBRole
	// Managed reports whether a role name matches the managed pattern.
	Managed func(name string) bool
}

// applySnapshot diffs snap against the previous pass of its database,
// records the new state in db_roles and db_sessions and the changes in the
// db_events outbox, and returns the pass for the rules. It must run in the
// pass transaction (after Duty.Check). The first pass of a database is its
// baseline: every role and session is reported with Baseline set.
//
// Roles are diffed by oid: a role absent from the previous pass appeared, a
// role missing now disappeared, a change of name, validity, LOGIN or
// SUPERUSER is a change. Sessions are diffed by (pid, backend_start), a pid
// alone being reused: started, ended, or turned ghost (its role dropped
// under it). Only managed roles and their sessions, and ghost sessions, are
// reported.
func applySnapshot(ctx context.Context, tx pgx.Tx, snap Snapshot) (*observed.Pass, error) {
	p, _, err := applySnapshotKnown(ctx, tx, snap, nil)
	return p, err
}

// applySnapshotKnown is applySnapshot diffing against known (nil: read
// from the state store), which it consumes: the map is updated in place.
// It returns what the next pass may diff against once tx commits (known
// must be dropped if it does not).
func applySnapshotKnown(ctx context.Context, tx pgx.Tx, snap Snapshot, known *knownRoles) (*observed.Pass, *knownRoles, error) {
	if snap.Database == "" || snap.Managed == nil || snap.ObservedAt.IsZero() {
		return nil, nil, errors.New("apply snapshot: database, managed and observed time are required")
	}
	d, err := startDiff(ctx, tx, snap, known)
	if err != nil {
		return nil, nil, err
	}
	d.diffRoles()
	d.diffSessions()
	d.endSessions()
	d.keepKnown()
	d.reportRoles()
	d.sortPass()
	if err := d.w.flush(); err != nil {
		return nil, nil, err
	}
	d.p.RoleEvents, d.p.SessionEvents = d.w.roleEvents, d.w.sessionEvents
	d.p.RolesRecorded = true
	return d.p, &knownRoles{passAt: d.now, roles: d.known}, nil
}

// snapshotDiff is one pass being diffed against the previous one: what the
// previous pass left (known roles, open sessions), what this one sees
// (snap, present) and what comes of it (the pass p, the writes w).
type snapshotDiff struct {
	snap Snapshot
	now  time.Time
	p    *observed.Pass
	w    *snapshotWriter
	// known are the roles present at the previous pass, by oid, updated
	// in place; added the roles that appeared, known once the pass ends.
	known, added []knownRole
	// rows are the roles as db_roles holds them, of the oids whose row
	// the pass needs: the known roles that changed or disappeared (their
	// events name their former state), and the roles of sessions whose
	// role is not present (history); those gone are marked so.
	rows map[uint32]roleRow
	open map[sessionKey]sessionRow
	// present indexes snap.Roles by oid; managed tells, by the same
	// index, which match the managed pattern (set by diffRoles). The
	// snapshot is not copied: at 100,000 roles each copy of it, or map of
	// its roles, was megabytes more per pass.
	present map[uint32]int32
	managed []bool
}

// startDiff reads what the previous pass of snap's database left: its time,
// the open sessions and the roles (from known when it is that pass's), and
// the rows of the roles the pass needs as the state store holds them.
func startDiff(ctx context.Context, tx pgx.Tx, snap Snapshot, known *knownRoles) (*snapshotDiff, error) {
	now := dbTime(snap.ObservedAt)
	p, err := startPass(ctx, tx, snap.Database, now)
	if err != nil {
		return nil, err
	}
	open, err := loadOpenSessions(ctx, tx, snap.Database)
	if err != nil {
		return nil, err
	}
	present := make(map[uint32]int32, len(snap.Roles))
	for i, r := range snap.Roles {
		present[r.OID] = int32(i)
	}
	d := &snapshotDiff{snap: snap, now: now, p: p, open: open, present: present,
		w: newSnapshotWriter(ctx, tx, snap.Database, now, p.PreviousPassAt)}
	if known != nil && p.PreviousPassAt != nil && known.passAt.Equal(*p.PreviousPassAt) {
		d.known = known.roles
	} else if d.known, err = loadKnown(ctx, tx, snap.Database); err != nil {
		return nil, err
	}
	d.rows, err = loadRows(ctx, tx, snap.Database, append(d.changedOIDs(), historyOIDs(snap, open, present)...))
	return d, err
}

// changedOIDs are the known roles that changed or disappeared.
func (d *snapshotDiff) changedOIDs() []int64 {
	var out []int64
	for i := range d.snap.Roles {
		r := d.role(i)
		if j, ok := findKnown(d.known, r.OID); ok && !d.known[j].matches(r) {
			out = append(out, int64(r.OID))
		}
	}
	for _, k := range d.known {
		if _, still := d.present[k.oid]; !still {
			out = append(out, int64(k.oid))
		}
	}
	return out
}

// formerRow is the row of a known role that changed or disappeared. The
// state store must have it (the duty's holder is its only writer): if it
// does not, the pass fails, and the next reads every role back.
func (d *snapshotDiff) formerRow(oid uint32) (roleRow, bool) {
	row, ok := d.rows[oid]
	if !ok || row.gone {
		d.w.fail(fmt.Errorf("role %d of %s: known to the last pass, not present in db_roles", oid, d.snap.Database))
		return roleRow{}, false
	}
	return row, true
}

// role is the snapshot's i-th role with its validity as the state store
// keeps it (a copy of the time only when it is not so already).
func (d *snapshotDiff) role(i int) observed.DBRole {
	r := d.snap.Roles[i]
	if r.ValidUntil != nil && dbTime(*r.ValidUntil) != *r.ValidUntil {
		r.ValidUntil = dbTimePtr(r.ValidUntil)
	}
	return r
}

// startPass is the pass of db at now: its coverage, and when the previous
// pass was.
func startPass(ctx context.Context, tx pgx.Tx, db string, now time.Time) (*observed.Pass, error) {
	cov, err := store.EnsureCoverage(ctx, tx, now)
	if err != nil {
		return nil, err
	}
	var last pgtype.Timestamptz
	err = tx.QueryRow(ctx, `SELECT last_pass_at FROM observer_targets WHERE database = $1`, db).Scan(&last)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("observer state of %s: %w", db, err)
	}
	p := &observed.Pass{Database: db, ObservedAt: now, Coverage: cov}
	if last.Valid {
		t := last.Time.UTC()
		p.PreviousPassAt = &t
	}
	return p, nil
}

// historyOIDs are the oids whose history (gone roles) may be needed: those
// of sessions, seen now or tracked, with no present role (ghosts). A
// session whose role is present needs only that role, known anyway.
func historyOIDs(snap Snapshot, open map[sessionKey]sessionRow, present map[uint32]int32) []int64 {
	var history []int64
	for _, s := range snap.Sessions {
		if _, ok := present[s.UserOID]; !ok {
			history = append(history, int64(s.UserOID))
		}
	}
	for _, s := range open {
		if _, ok := present[s.UserOID]; !ok {
			history = append(history, int64(s.UserOID))
		}
	}
	return history
}

// diffRoles records the roles that appeared or changed, then those that
// disappeared.
func (d *snapshotDiff) diffRoles() {
	d.managed = make([]bool, len(d.snap.Roles))
	// The roles new to the pass, and their events, are listed at their
	// number (all of them on a first pass: grown an entry at a time, these
	// lists were the largest peak of a first pass), a little more when
	// some roles were also dropped.
	if fresh := len(d.snap.Roles) - len(d.known); fresh > 0 {
		d.added = make([]knownRole, 0, fresh)
		d.w.roleEvents = make([]schemas.RoleEvent, 0, fresh)
	}
	for i := range d.snap.Roles {
		r := d.role(i)
		d.managed[i] = d.snap.Managed(r.Name)
		j, known := findKnown(d.known, r.OID)
		switch {
		case !known:
			row := roleRow{DBRole: r, firstSeen: d.now, createdAfter: d.p.PreviousPassAt}
			d.w.upsertRole(row)
			if d.managed[i] {
				d.w.roleEvent(schemas.RoleAppeared, r, nil, true)
			}
			d.added = append(d.added, knownOf(row))
		case !d.known[j].matches(r):
			old, ok := d.formerRow(r.OID)
			if !ok {
				return
			}
			row := old
			row.DBRole = r
			d.w.upsertRole(row)
			if d.managed[i] || d.snap.Managed(old.Name) {
				prevState := roleState(old.DBRole)
				d.w.roleEvent(schemas.RoleChanged, r, &prevState, d.managed[i])
			}
			d.known[j].set(r)
		}
	}
	for _, k := range d.known {
		if _, still := d.present[k.oid]; still {
			continue
		}
		old, ok := d.formerRow(k.oid)
		if !ok {
			return
		}
		d.w.roleGone(k.oid)
		if d.snap.Managed(old.Name) {
			d.w.roleEvent(schemas.RoleDisappeared, old.DBRole, nil, true)
		}
		old.gone = true
		d.rows[k.oid] = old
	}
}

// keepKnown leaves in known the roles present now: gone roles stay in
// db_roles as history, read by oid when a session needs them.
func (d *snapshotDiff) keepKnown() {
	d.known = slices.DeleteFunc(d.known, func(k knownRole) bool { _, still := d.present[k.oid]; return !still })
	switch {
	case len(d.known) == 0:
		d.known = d.added
		sortKnown(d.known)
	case len(d.added) > 0:
		d.known = append(d.known, d.added...)
		sortKnown(d.known)
	}
	d.added = nil
}

// formerName is the name the pass knows for a role that is not present:
// the history's (gone roles).
func (d *snapshotDiff) formerName(oid uint32) (string, bool) {
	if i, ok := d.present[oid]; ok {
		return d.snap.Roles[i].Name, true
	}
	h, ok := d.rows[oid]
	return h.Name, ok
}

// diffSessions records the sessions that started or turned ghost, and
// reports every managed or ghost session in the pass. The tracked sessions
// it sees are marked seen in open.
func (d *snapshotDiff) diffSessions() {
	// Sized for the snapshot once: grown a session at a time, the list
	// (and a set of every session seen) were 4 MB a pass at 5,000
	// sessions.
	d.p.Sessions = make([]observed.Session, 0, len(d.snap.Sessions))
	var fresh map[sessionKey]bool // the new sessions seen, few
	for _, s := range d.snap.Sessions {
		if s.BackendStart.IsZero() {
			d.p.Hidden++
			continue
		}
		cur, ok := d.session(s)
		if !ok {
			continue
		}
		k := keyOf(cur.DBSession)
		if old, tracked := d.open[k]; tracked {
			if old.seen {
				continue
			}
			old.seen = true
			d.open[k] = old
			d.trackedSession(&cur, old, k)
		} else {
			if fresh[k] {
				continue
			}
			if fresh == nil {
				fresh = map[sessionKey]bool{}
			}
			fresh[k] = true
			d.newSession(&cur)
		}
		d.p.Sessions = append(d.p.Sessions, cur)
	}
}

// session is s as the pass reports it, named after its present role, or a
// ghost named after its former one; false for a session of an unmanaged
// role.
func (d *snapshotDiff) session(s observed.DBSession) (observed.Session, bool) {
	s.BackendStart = dbTime(s.BackendStart)
	i, hasRole := d.present[s.UserOID]
	ghost := !hasRole
	if hasRole {
		s.UserName = d.snap.Roles[i].Name
		if !d.managed[i] {
			return observed.Session{}, false
		}
	} else if name, ok := d.formerName(s.UserOID); ok && s.UserName == "" {
		// The name as the activity read showed it (the role was dropped
		// between the two reads), else as history knew it.
		s.UserName = name
	}
	cur := observed.Session{DBSession: s, FirstSeenAt: d.now, Ghost: ghost}
	if ghost {
		cur.FormerUser, cur.FormerManaged = s.UserName, s.UserName != "" && d.snap.Managed(s.UserName)
		cur.UserName = ""
	}
	return cur, true
}

// newSession records a session the previous pass did not track.
func (d *snapshotDiff) newSession(cur *observed.Session) {
	if cur.Ghost {
		cur.GhostSince = &d.now
	}
	d.w.insertSession(*cur)
	d.w.sessionEvent(schemas.SessionStarted, *cur)
}

// trackedSession carries over what the previous pass knew of a session,
// and records it turning ghost.
func (d *snapshotDiff) trackedSession(cur *observed.Session, old sessionRow, k sessionKey) {
	cur.FirstSeenAt = old.firstSeen
	if cur.Ghost && old.UserName != "" {
		// The name the session had when first seen wins: the oid
		// was that role's when the session logged in.
		cur.FormerUser, cur.FormerManaged = old.UserName, d.snap.Managed(old.UserName)
	}
	switch {
	case cur.Ghost && old.ghostSince == nil:
		cur.GhostSince = &d.now
		d.w.sessionGhost(k)
		d.w.sessionEvent(schemas.SessionGhost, *cur)
	case cur.Ghost:
		t := *old.ghostSince
		cur.GhostSince = &t
	}
}

// endSessions records the tracked sessions this pass did not see.
func (d *snapshotDiff) endSessions() {
	for k, old := range d.open {
		if old.seen {
			continue
		}
		d.w.sessionEnded(k)
		s := observed.Session{DBSession: old.DBSession, FirstSeenAt: old.firstSeen, Ghost: old.ghostSince != nil, GhostSince: old.ghostSince}
		if s.Ghost {
			s.FormerUser, s.UserName = s.UserName, ""
			if name, ok := d.formerName(s.UserOID); ok && s.FormerUser == "" {
				s.FormerUser = name
			}
		}
		d.w.sessionEvent(schemas.SessionEnded, s)
	}
}

// reportRoles puts the managed roles in the pass, with when they were
// first seen (known, once keepKnown has run).
func (d *snapshotDiff) reportRoles() {
	n := 0
	for _, m := range d.managed {
		if m {
			n++
		}
	}
	if n > 0 {
		d.p.Roles = make([]observed.Role, 0, n)
	}
	refs := timeRefs{}
	if prev := d.p.PreviousPassAt; prev != nil {
		refs[prev.UnixMicro()] = prev
	}
	for i := range d.snap.Roles {
		if !d.managed[i] {
			continue
		}
		r := d.role(i)
		role := observed.Role{DBRole: r}
		if j, ok := findKnown(d.known, r.OID); ok {
			k := &d.known[j]
			role.FirstSeenAt, role.CreatedAfter = time.UnixMicro(k.firstSeen).UTC(), refs.ref(k.createdAfter)
		}
		d.p.Roles = append(d.p.Roles, role)
	}
}

// sortPass orders the pass's roles by name and its sessions by pid and
// start, so the rules see them in a stable order.
func (d *snapshotDiff) sortPass() {
	p := d.p
	sort.Slice(p.Roles, func(i, j int) bool { return p.Roles[i].Name < p.Roles[j].Name })
	sort.Slice(p.Sessions, func(i, j int) bool {
		a, b := p.Sessions[i], p.Sessions[j]
		if a.PID != b.PID {
			return a.PID < b.PID
		}
		return a.BackendStart.Before(b.BackendStart)
	})
}

func roleState(r observed.DBRole) schemas.RoleState {
	return schemas.RoleState{Name: r.Name, ValidUntil: r.ValidUntil, CanLogin: r.CanLogin, Superuser: r.Superuser}
}

// loadRows reads the db_roles rows of db with the given oids, gone or not.
func loadRows(ctx context.Context, tx pgx.Tx, db string, oids []int64) (map[uint32]roleRow, error) {
	out := map[uint32]roleRow{}
	if len(oids) == 0 {
		return out, nil
	}
	return out, scanRoles(ctx, tx, out, db, `oid = ANY($2)`, oids)
}

// scanRoles reads the db_roles rows of db that match where (in which $2
// is oids) into out.
func scanRoles(ctx context.Context, tx pgx.Tx, out map[uint32]roleRow, db, where string, oids []int64) error {
	rows, err := tx.Query(ctx, `
		SELECT oid, rolname, valid_until, can_login, superuser, first_seen_at, created_after, gone_at IS NOT NULL
		FROM db_roles WHERE database = $1 AND (`+where+`)`, db, oids)
	if err != nil {
		return fmt.Errorf("load roles of %s: %w", db, err)
	}
	var r roleRow
	var oid int64
	_, err = pgx.ForEachRow(rows, []any{&oid, &r.Name, &r.ValidUntil, &r.CanLogin, &r.Superuser, &r.firstSeen, &r.createdAfter, &r.gone}, func() error {
		c := r
		c.OID = uint32(oid)
		c.ValidUntil = utcPtr(c.ValidUntil)
		c.createdAfter = utcPtr(c.createdAfter)
		c.firstSeen = c.firstSeen.UTC()
		out[c.OID] = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("load roles of %s: %w", db, err)
	}
	return nil
}

func loadOpenSessions(ctx context.Context, tx pgx.Tx, db string) (map[sessionKey]sessionRow, error) {
	rows, err := tx.Query(ctx, `
		SELECT pid, backend_start, user_oid, coalesce(user_name, ''), coalesce(client_addr, ''), coalesce(client_port, 0),
		       coalesce(application_name, ''), coalesce(datname, ''), coalesce(backend_type, ''), first_seen_at, ghost_since
		FROM db_sessions WHERE database = $1 AND ended_at IS NULL`, db)
	if err != nil {
		return nil, fmt.Errorf("load sessions of %s: %w", db, err)
	}
	out := map[sessionKey]sessionRow{}
	var oid int64
	var s sessionRow
	_, err = pgx.ForEachRow(rows, []any{&s.PID, &s.BackendStart, &oid, &s.UserName, &s.ClientAddr, &s.ClientPort,
		&s.ApplicationName, &s.Datname, &s.BackendType, &s.firstSeen, &s.ghostSince}, func() error {
		c := s
		c.UserOID = uint32(oid)
		c.BackendStart = c.BackendStart.UTC()
		c.firstSeen = c.firstSeen.UTC()
		c.ghostSince = utcPtr(c.ghostSince)
		out[keyOf(c.DBSession)] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load sessions of %s: %w", db, err)
	}
	return out, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// dbTime is t as the state store keeps it: UTC, to the microsecond.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func dbTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := dbTime(*t)
	return &u
}
