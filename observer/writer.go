package observer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
)

// writeChunk bounds the rows (roles, sessions, events) one statement of a
// pass carries. A pass sends its writes whenever one kind of them reaches
// it, so what it holds besides the pass itself does not grow with the
// target: a first pass over 100,000 roles once built all its rows, their
// events as JSON and the encoding of all of it for the wire at once, most
// of the observer's peak memory.
const writeChunk = 1000

// snapshotWriter collects a pass's writes and sends them in the pass
// transaction, a chunk at a time. An error sticks: the writes after it are
// dropped and flush returns it (the transaction is rolled back).
type snapshotWriter struct {
	ctx  context.Context
	tx   pgx.Tx
	err  error
	db   string
	now  time.Time
	prev *time.Time

	roleUpserts []roleRow
	gone        []int64
	newSessions []observed.Session
	ghosts      []sessionKey
	ended       []sessionKey
	// events waiting to be written, in the order they were found (seq
	// keeps it).
	evIDs, evKinds, evDocs []string

	// roleEvents and sessionEvents are every event of the pass, for it.
	roleEvents    []schemas.RoleEvent
	sessionEvents []schemas.SessionEvent

	cols writeColumns
}

func newSnapshotWriter(ctx context.Context, tx pgx.Tx, db string, now time.Time, prev *time.Time) *snapshotWriter {
	return &snapshotWriter{ctx: ctx, tx: tx, db: db, now: now, prev: prev}
}

func (w *snapshotWriter) upsertRole(r roleRow) {
	w.roleUpserts = append(w.roleUpserts, r)
	w.sendIfFull(len(w.roleUpserts))
}

func (w *snapshotWriter) roleGone(oid uint32) {
	w.gone = append(w.gone, int64(oid))
	w.sendIfFull(len(w.gone))
}

func (w *snapshotWriter) insertSession(s observed.Session) {
	w.newSessions = append(w.newSessions, s)
	w.sendIfFull(len(w.newSessions))
}

func (w *snapshotWriter) sessionGhost(k sessionKey) {
	w.ghosts = append(w.ghosts, k)
	w.sendIfFull(len(w.ghosts))
}

func (w *snapshotWriter) sessionEnded(k sessionKey) {
	w.ended = append(w.ended, k)
	w.sendIfFull(len(w.ended))
}

func (w *snapshotWriter) roleEvent(kind schemas.RoleEventKind, r observed.DBRole, prev *schemas.RoleState, managed bool) {
	ev := schemas.RoleEvent{
		Type:       schemas.RoleEventType,
		ID:         observerID("role", w.db, string(kind), strconv.FormatUint(uint64(r.OID), 10), micros(w.now)),
		Kind:       kind,
		Database:   w.db,
		OID:        r.OID,
		ObservedAt: w.now,
		Role:       roleState(r),
		Previous:   prev,
		Managed:    managed,
	}
	if w.prev == nil {
		ev.Baseline = true
	} else {
		t := *w.prev
		ev.PreviousPassAt = &t
	}
	w.roleEvents = append(w.roleEvents, ev)
	w.queueEvent(ev.ID, "role", ev)
}

func (w *snapshotWriter) sessionEvent(kind schemas.SessionEventKind, s observed.Session) {
	ev := schemas.SessionEvent{
		Type:            schemas.SessionEventType,
		ID:              observerID("session", w.db, string(kind), strconv.Itoa(int(s.PID)), micros(s.BackendStart), micros(w.now)),
		Kind:            kind,
		Database:        w.db,
		ObservedAt:      w.now,
		PID:             s.PID,
		BackendStart:    s.BackendStart,
		UserOID:         s.UserOID,
		User:            s.UserName,
		Ghost:           s.Ghost,
		FormerUser:      s.FormerUser,
		ClientAddr:      s.ClientAddr,
		ClientPort:      s.ClientPort,
		ApplicationName: s.ApplicationName,
		Datname:         s.Datname,
		BackendType:     s.BackendType,
	}
	if s.Ghost {
		ev.User = ""
	}
	if w.prev == nil && kind == schemas.SessionStarted {
		ev.Baseline = true
	} else if w.prev != nil {
		t := *w.prev
		ev.PreviousPassAt = &t
	}
	w.sessionEvents = append(w.sessionEvents, ev)
	w.queueEvent(ev.ID, "session", ev)
}

// queueEvent encodes an event for the outbox now, so that only a chunk of
// them is ever held as JSON.
func (w *snapshotWriter) queueEvent(id, kind string, ev any) {
	if w.err != nil {
		return
	}
	doc, err := json.Marshal(ev)
	if err != nil {
		w.err = fmt.Errorf("encode %s event: %w", kind, err)
		return
	}
	w.evIDs, w.evKinds, w.evDocs = append(w.evIDs, id), append(w.evKinds, kind), append(w.evDocs, string(doc))
	w.sendIfFull(len(w.evIDs))
}

func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// observerID derives a deterministic event id from its parts.
func observerID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// sendIfFull sends what is pending once a kind of write holds a chunk.
func (w *snapshotWriter) sendIfFull(n int) {
	if n >= writeChunk && w.err == nil {
		w.err = w.send(&pgx.Batch{})
	}
}

// flush sends the rest of the pass's writes, and records the pass as the
// target's last.
func (w *snapshotWriter) flush() error {
	if w.err != nil {
		return w.err
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE observer_targets SET last_pass_at = $2, first_pass_at = coalesce(first_pass_at, $2) WHERE database = $1`, w.db, w.now)
	b.Queue(`INSERT INTO observer_targets (database, epoch, holder, acquired_at, first_pass_at, last_pass_at)
		VALUES ($1, 0, '', $2, $2, $2) ON CONFLICT (database) DO NOTHING`, w.db, w.now)
	w.err = w.send(b)
	return w.err
}

// send queues the pending writes after b's own statements, sends them in
// one round trip, and empties them (their slices are reused).
func (w *snapshotWriter) send(b *pgx.Batch) error {
	pending := &pgx.Batch{}
	w.queueRoles(pending)
	w.queueSessions(pending)
	w.queueEvents(pending)
	pending.QueuedQueries = append(pending.QueuedQueries, b.QueuedQueries...)
	if pending.Len() == 0 {
		return nil
	}
	err := w.tx.SendBatch(w.ctx, pending).Close()
	w.roleUpserts, w.gone, w.newSessions = w.roleUpserts[:0], w.gone[:0], w.newSessions[:0]
	w.ghosts, w.ended = w.ghosts[:0], w.ended[:0]
	clear(w.evDocs) // the JSON is the bulk: not kept until the next chunk
	w.evIDs, w.evKinds, w.evDocs = w.evIDs[:0], w.evKinds[:0], w.evDocs[:0]
	if err != nil {
		return fmt.Errorf("record pass of %s: %w", w.db, err)
	}
	return nil
}

// writeColumns are the argument arrays of a chunk's statements, reused
// from chunk to chunk (pgx has encoded them once the batch is closed).
type writeColumns struct {
	oids, sessOIDs         []int64
	names                  []string
	valid, created, ghosts []*time.Time
	login, super           []bool
	first, starts          []time.Time
	pids, ports            []int32
	users, addrs, apps     []*string
	dbs, types             []*string
}

func (w *snapshotWriter) queueRoles(b *pgx.Batch) {
	if len(w.roleUpserts) > 0 {
		c := &w.cols
		c.oids, c.names, c.valid, c.created = c.oids[:0], c.names[:0], c.valid[:0], c.created[:0]
		c.login, c.super, c.first = c.login[:0], c.super[:0], c.first[:0]
		for _, r := range w.roleUpserts {
			c.oids, c.names, c.valid = append(c.oids, int64(r.OID)), append(c.names, r.Name), append(c.valid, r.ValidUntil)
			c.login, c.super = append(c.login, r.CanLogin), append(c.super, r.Superuser)
			c.first, c.created = append(c.first, r.firstSeen), append(c.created, r.createdAfter)
		}
		b.Queue(`
			INSERT INTO db_roles (database, oid, rolname, valid_until, can_login, superuser, first_seen_at, created_after, changed_at, gone_at)
			SELECT $1, o, n, v, l, s, f, c, $9, NULL
			FROM unnest($2::int8[], $3::text[], $4::timestamptz[], $5::bool[], $6::bool[], $7::timestamptz[], $8::timestamptz[])
				AS x(o, n, v, l, s, f, c)
			ON CONFLICT (database, oid) DO UPDATE SET
				rolname = EXCLUDED.rolname, valid_until = EXCLUDED.valid_until, can_login = EXCLUDED.can_login,
				superuser = EXCLUDED.superuser, first_seen_at = EXCLUDED.first_seen_at,
				created_after = EXCLUDED.created_after, changed_at = EXCLUDED.changed_at, gone_at = NULL`,
			w.db, c.oids, c.names, c.valid, c.login, c.super, c.first, c.created, w.now)
	}
	if len(w.gone) > 0 {
		b.Queue(`UPDATE db_roles SET gone_at = $3, changed_at = $3 WHERE database = $1 AND oid = ANY($2) AND gone_at IS NULL`,
			w.db, w.gone, w.now)
	}
}

func (w *snapshotWriter) queueSessions(b *pgx.Batch) {
	if len(w.newSessions) > 0 {
		w.queueNewSessions(b)
	}
	for _, u := range []struct {
		keys []sessionKey
		sql  string
	}{
		{w.ghosts, `UPDATE db_sessions SET ghost_since = $4 WHERE database = $1 AND ghost_since IS NULL
			AND (pid, backend_start) IN (SELECT * FROM unnest($2::int4[], $3::timestamptz[]))`},
		{w.ended, `UPDATE db_sessions SET ended_at = $4 WHERE database = $1 AND ended_at IS NULL
			AND (pid, backend_start) IN (SELECT * FROM unnest($2::int4[], $3::timestamptz[]))`},
	} {
		if len(u.keys) == 0 {
			continue
		}
		// Small (sessions change a few at a time): not reused.
		pids, starts := make([]int32, len(u.keys)), make([]time.Time, len(u.keys))
		for i, k := range u.keys {
			pids[i], starts[i] = k.pid, time.UnixMicro(k.start).UTC()
		}
		b.Queue(u.sql, w.db, pids, starts, w.now)
	}
}

func (w *snapshotWriter) queueNewSessions(b *pgx.Batch) {
	c := &w.cols
	c.pids, c.starts, c.sessOIDs, c.ports, c.ghosts = c.pids[:0], c.starts[:0], c.sessOIDs[:0], c.ports[:0], c.ghosts[:0]
	c.users, c.addrs, c.apps, c.dbs, c.types = c.users[:0], c.addrs[:0], c.apps[:0], c.dbs[:0], c.types[:0]
	for _, s := range w.newSessions {
		c.pids, c.starts, c.sessOIDs = append(c.pids, s.PID), append(c.starts, s.BackendStart), append(c.sessOIDs, int64(s.UserOID))
		c.ports, c.ghosts = append(c.ports, s.ClientPort), append(c.ghosts, s.GhostSince)
		name := s.UserName
		if s.Ghost {
			name = s.FormerUser
		}
		c.users, c.addrs, c.apps = append(c.users, textPtr(name)), append(c.addrs, textPtr(s.ClientAddr)), append(c.apps, textPtr(s.ApplicationName))
		c.dbs, c.types = append(c.dbs, textPtr(s.Datname)), append(c.types, textPtr(s.BackendType))
	}
	b.Queue(`
		INSERT INTO db_sessions (database, pid, backend_start, user_oid, user_name, client_addr, client_port,
			application_name, datname, backend_type, first_seen_at, ghost_since)
		SELECT $1, p, bs, o, u, a, pt, ap, d, t, $12, g
		FROM unnest($2::int4[], $3::timestamptz[], $4::int8[], $5::text[], $6::text[], $7::int4[], $8::text[],
			$9::text[], $10::text[], $11::timestamptz[]) AS x(p, bs, o, u, a, pt, ap, d, t, g)
		ON CONFLICT (database, pid, backend_start) DO UPDATE SET ended_at = NULL`,
		w.db, c.pids, c.starts, c.sessOIDs, c.users, c.addrs, c.ports, c.apps, c.dbs, c.types, c.ghosts, w.now)
}

func textPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (w *snapshotWriter) queueEvents(b *pgx.Batch) {
	if len(w.evIDs) == 0 {
		return
	}
	// WITH ORDINALITY keeps the order of the events in seq.
	b.Queue(`
		INSERT INTO db_events (id, database, kind, event, observed_at)
		SELECT i, $1, k, e::jsonb, $5
		FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS x(i, k, e, n)
		ORDER BY n
		ON CONFLICT (id) DO NOTHING`, w.db, w.evIDs, w.evKinds, w.evDocs, w.now)
}

// fail makes err the pass's error, unless it has one.
func (w *snapshotWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}
