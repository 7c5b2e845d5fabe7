package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leaseguard/leaseguard/schemas"
)

// Batch is what one Apply writes, in one transaction.
type Batch struct {
	Leases []schemas.LeaseEvent
	Creds  []CredsRecord
	// Signals feed the audit-signal rules (audit_signals.go).
	Signals AuditSignals
}

// ApplyStats says what one Apply did.
type ApplyStats struct {
	// Events is the number of lease events in the batch.
	Events int
	// Duplicates were applied before (or repeat an event of the batch) and
	// were skipped.
	Duplicates int
	// LeasesInserted, LeasesUpdated and LeasesUnchanged count the leases the
	// batch's new events name: rows created, rows changed, rows the events
	// left as they were (older news).
	LeasesInserted  int
	LeasesUpdated   int
	LeasesUnchanged int
	// PrefixRevocations counts new prefix_revocations rows.
	PrefixRevocations int
	// RevokedByPrefix counts leases that became revoked through a prefix
	// revocation, old or new.
	RevokedByPrefix int
	// HashedRevocations counts new hashed_revocations rows.
	HashedRevocations int
	// Creds counts creds_requests rows written (one per request id).
	Creds int
}

// InvalidError reports an input of a Batch that Apply refuses; nothing of
// the batch was written. Drop (dead-letter) that input and apply the rest.
type InvalidError struct {
	// Field is "Leases" or "Creds", Index the position in that slice.
	Field string
	Index int
	Err   error
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("%s[%d]: %v", e.Field, e.Index, e.Err)
}

func (e *InvalidError) Unwrap() error { return e.Err }

// maxApplyAttempts bounds the retries of a batch that lost a deadlock, a
// serialization conflict or the insert of a new lease to a concurrent batch;
// the transaction is rolled back each time, so a retry starts from scratch.
const maxApplyAttempts = 5

// Apply writes b in one transaction: the lease events not applied before are
// recorded in lease_events and folded into leases (see merge.go), prefix and
// HMAC revocations are recorded, prefix revocations revoke the leases they
// cover, and creds records are merged into creds_requests. Applying the same
// events again, or in another order, leaves the same rows.
func (s *Store) Apply(ctx context.Context, b Batch) (ApplyStats, error) {
	p, err := prepare(b)
	if err != nil {
		return ApplyStats{}, err
	}
	p.signals = s.prepareSignals(b, p)
	if len(p.events) == 0 && len(p.creds) == 0 && p.signals.empty() {
		return ApplyStats{Events: len(b.Leases), Duplicates: p.duplicates}, nil
	}
	for attempt := 1; ; attempt++ {
		st, err := s.applyOnce(ctx, p)
		if err == nil {
			st.Events = len(b.Leases)
			st.Duplicates += p.duplicates
			return st, nil
		}
		var pgErr *pgconn.PgError
		retry := errors.Is(err, errLeaseRace) || errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
		if !retry || attempt == maxApplyAttempts || ctx.Err() != nil {
			return ApplyStats{}, fmt.Errorf("apply batch: %w", err)
		}
	}
}

type preparedEvent struct {
	id     string
	ev     schemas.LeaseEvent
	source string
}

type preparedBatch struct {
	events     []preparedEvent // distinct ids, sorted by id
	duplicates int             // repeats within the batch
	hasPrefix  bool
	creds      []credsRow // one per request id, sorted
	signals    *signalWrites
}

func prepare(b Batch) (*preparedBatch, error) {
	p := &preparedBatch{}
	seen := make(map[string]bool, len(b.Leases))
	for i := range b.Leases {
		e := &b.Leases[i]
		if err := e.Validate(); err != nil {
			return nil, &InvalidError{Field: "Leases", Index: i, Err: err}
		}
		id := EventID(e)
		if seen[id] {
			p.duplicates++
			continue
		}
		seen[id] = true
		src, err := json.Marshal(e.Source)
		if err != nil {
			return nil, &InvalidError{Field: "Leases", Index: i, Err: err}
		}
		p.events = append(p.events, preparedEvent{id: id, ev: normalize(*e), source: string(src)})
		if e.LeasePrefix != "" {
			p.hasPrefix = true
		}
	}
	sort.Slice(p.events, func(i, j int) bool { return p.events[i].id < p.events[j].id })
	creds, err := mergeCreds(b.Creds)
	if err != nil {
		return nil, err
	}
	p.creds = creds
	return p, nil
}

func (s *Store) applyOnce(ctx context.Context, p *preparedBatch) (st ApplyStats, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return st, err
	}
	defer conn.Release()
	defer func() {
		if err != nil {
			// A connection that cannot roll back is not returned to the pool
			// in a transaction.
			if _, rbErr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rbErr != nil {
				_ = conn.Conn().Close(context.WithoutCancel(ctx))
			}
		}
	}()

	// First round trip: BEGIN, the inserts that need no answer from the
	// ledger, and the reads (with row locks) the fold needs.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	fresh := s.recordInputs(b, p, &st)
	reads := queueLeaseReads(b, p)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return st, err
	}
	st.Duplicates = len(p.events) - len(*fresh)
	if len(*fresh) > 0 {
		if err := foldLeases(ctx, conn.Conn(), *fresh, reads, &st); err != nil {
			return st, err
		}
	}
	_, err = conn.Exec(ctx, "COMMIT")
	return st, err
}

// recordInputs queues the prefix lock, then every insert that needs no
// answer from the ledger. Once b is sent, *fresh holds the events not
// applied before.
func (s *Store) recordInputs(b *pgx.Batch, p *preparedBatch, st *ApplyStats) (fresh *[]*preparedEvent) {
	fresh = new([]*preparedEvent)
	if len(p.events) > 0 {
		lock := "SELECT pg_advisory_xact_lock_shared($1::int4, $2::int4)"
		if p.hasPrefix {
			lock = "SELECT pg_advisory_xact_lock($1::int4, $2::int4)"
		}
		b.Queue(lock, lockClassPrefix, s.lockKey)
	}

	if len(p.events) > 0 {
		n := len(p.events)
		ids, leaseIDs, prefixes, kinds, reqs, sources := make([]string, n), make([]*string, n), make([]*string, n), make([]string, n), make([]string, n), make([]string, n)
		hmacs, times := make([]bool, n), make([]time.Time, n)
		byID := make(map[string]*preparedEvent, n)
		for i := range p.events {
			pe := &p.events[i]
			e := &pe.ev
			byID[pe.id] = pe
			ids[i], kinds[i], reqs[i], sources[i] = pe.id, string(e.Kind), e.VaultRequestID, pe.source
			hmacs[i], times[i] = e.LeaseIDHMAC, e.EventTime
			if e.LeasePrefix != "" {
				prefixes[i] = &e.LeasePrefix
			} else {
				leaseIDs[i] = &e.LeaseID
			}
		}
		b.Queue(`INSERT INTO lease_events (event_id, lease_id, lease_id_hmac, lease_prefix, kind, event_time, vault_request_id, source)
			SELECT id, lid, hm, pf, k, t, NULLIF(r, ''), src::jsonb
			FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[])
			     AS e(id, lid, hm, pf, k, t, r, src)
			ORDER BY id
			ON CONFLICT (event_id) DO NOTHING
			RETURNING event_id`, ids, leaseIDs, hmacs, prefixes, kinds, times, reqs, sources).
			Query(func(rows pgx.Rows) error {
				var id string
				_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
					*fresh = append(*fresh, byID[id])
					return nil
				})
				return err
			})
	}

	// Prefix and HMAC revocations are recorded whether or not their event is
	// new: the inserts are idempotent.
	var pf, pm, pns, pr []string
	var pt []time.Time
	var hl, hm, hns, hr []string
	var ht []time.Time
	for i := range p.events {
		e := &p.events[i].ev
		switch {
		case e.LeasePrefix != "":
			pf, pm, pns, pr, pt = append(pf, e.LeasePrefix), append(pm, prefixMethod(e)), append(pns, e.Namespace), append(pr, e.VaultRequestID), append(pt, e.EventTime)
		case e.LeaseIDHMAC:
			hl, hm, hns, hr, ht = append(hl, e.LeaseID), append(hm, string(e.RevokeBy)), append(hns, e.Namespace), append(hr, e.VaultRequestID), append(ht, e.EventTime)
		}
	}
	if len(pf) > 0 {
		b.Queue(`INSERT INTO prefix_revocations (prefix, revoked_at, method, namespace, vault_request_id)
			SELECT p, t, m, NULLIF(ns, ''), NULLIF(r, '')
			FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[]) AS x(p, t, m, ns, r)
			ORDER BY p, t
			ON CONFLICT (prefix, revoked_at) DO NOTHING`, pf, pt, pm, pns, pr).
			Exec(func(ct pgconn.CommandTag) error { st.PrefixRevocations = int(ct.RowsAffected()); return nil })
	}
	if len(hl) > 0 {
		b.Queue(`INSERT INTO hashed_revocations (lease_id_hmac, revoked_at, method, namespace, vault_request_id)
			SELECT l, t, NULLIF(m, ''), NULLIF(ns, ''), NULLIF(r, '')
			FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[]) AS x(l, t, m, ns, r)
			ORDER BY l, t
			ON CONFLICT (lease_id_hmac, revoked_at) DO NOTHING`, hl, ht, hm, hns, hr).
			Exec(func(ct pgconn.CommandTag) error { st.HashedRevocations = int(ct.RowsAffected()); return nil })
	}
	if len(p.creds) > 0 {
		queueCredsUpsert(b, p.creds)
		st.Creds = len(p.creds)
	}
	queueSignalWrites(b, p.signals)
	return fresh
}

func prefixMethod(e *schemas.LeaseEvent) string {
	if e.RevokeBy != "" {
		return string(e.RevokeBy)
	}
	return string(schemas.RevokeByPrefix)
}

// errLeaseRace: a lease this transaction meant to insert was inserted by a
// concurrent one. The batch is retried; the row is then locked and merged.
var errLeaseRace = errors.New("lease inserted concurrently")

// leaseReads are the rows the fold starts from, read and locked in the
// first round trip.
type leaseReads struct {
	rows     map[string]*Lease
	orig     map[string]Lease
	prefixes []prefixRevocation
}

// queueLeaseReads queues the reads of the fold: every existing row the
// batch's events touch (named leases, and those under a prefix the batch
// revokes), locked in lease id order, and the prefix revocations that may
// cover the named leases (the batch's own too: they are inserted before).
// It reads for every event of the batch, applied before or not: which are
// new is only known once the batch has run, and a row that only old events
// name is left unchanged by the fold.
func queueLeaseReads(b *pgx.Batch, p *preparedBatch) *leaseReads {
	r := &leaseReads{rows: map[string]*Lease{}, orig: map[string]Lease{}}
	var ids []string
	seen := map[string]bool{}
	where := []string{"lease_id = ANY($1)"}
	args := []any{nil}
	for i := range p.events {
		e := &p.events[i].ev
		switch {
		case e.LeasePrefix != "":
			lo, hi := prefixRange(e.LeasePrefix)
			n := len(args)
			where = append(where, fmt.Sprintf("lease_id = $%d OR (lease_id >= $%d AND lease_id < $%d)", n+1, n+2, n+3))
			args = append(args, e.LeasePrefix, lo, hi)
		case e.LeaseIDHMAC:
			// Recorded in hashed_revocations only.
		case !seen[e.LeaseID]:
			seen[e.LeaseID] = true
			ids = append(ids, e.LeaseID)
		}
	}
	if len(ids) == 0 && len(args) == 1 {
		return r
	}
	sort.Strings(ids)
	if ids == nil {
		ids = []string{}
	}
	args[0] = ids
	b.Queue("SELECT "+leaseSelect+" FROM leases WHERE "+strings.Join(where, " OR ")+" ORDER BY lease_id FOR UPDATE", args...).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				l, err := scanLease(rows)
				if err != nil {
					return err
				}
				r.orig[l.LeaseID] = l
				r.rows[l.LeaseID] = &l
			}
			return rows.Err()
		})
	if len(ids) > 0 {
		b.Queue(`SELECT p.prefix, p.revoked_at, p.method, COALESCE(p.namespace, ''), COALESCE(p.vault_request_id, '')
			FROM prefix_revocations p
			WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS l(id)
			              WHERE l.id = p.prefix
			                 OR starts_with(l.id, CASE WHEN right(p.prefix, 1) = '/' THEN p.prefix ELSE p.prefix || '/' END))
			ORDER BY p.prefix, p.revoked_at`, ids).
			Query(func(rows pgx.Rows) error {
				var pr prefixRevocation
				_, err := pgx.ForEachRow(rows, []any{&pr.Prefix, &pr.RevokedAt, &pr.Method, &pr.Namespace, &pr.RequestID}, func() error {
					pr.RevokedAt = pr.RevokedAt.UTC()
					r.prefixes = append(r.prefixes, pr)
					return nil
				})
				return err
			})
	}
	return r
}

// foldLeases merges the fresh events into the rows read (see merge.go) and
// writes the new and changed rows in one statement: the second round trip.
func foldLeases(ctx context.Context, conn *pgx.Conn, fresh []*preparedEvent, reads *leaseReads, st *ApplyStats) error {
	named := map[string]bool{}
	var newPrefixes []prefixRevocation
	for _, pe := range fresh {
		e := &pe.ev
		switch {
		case e.LeasePrefix != "":
			newPrefixes = append(newPrefixes, prefixRevocation{
				Prefix: e.LeasePrefix, RevokedAt: e.EventTime, Method: schemas.RevokeMethod(prefixMethod(e)),
				Namespace: e.Namespace, RequestID: e.VaultRequestID,
			})
		case e.LeaseIDHMAC:
		default:
			named[e.LeaseID] = true
		}
	}
	if len(named) == 0 && len(newPrefixes) == 0 {
		return nil
	}
	rows, orig, prefixes := reads.rows, reads.orig, reads.prefixes

	inserted := map[string]bool{}
	for _, pe := range fresh {
		e := &pe.ev
		if e.LeasePrefix != "" || e.LeaseIDHMAC {
			continue
		}
		l := rows[e.LeaseID]
		if l == nil {
			l = &Lease{LeaseID: e.LeaseID}
			rows[e.LeaseID] = l
			inserted[e.LeaseID] = true
		}
		mergeEvent(l, e)
	}
	order := make([]string, 0, len(rows))
	for id := range rows {
		order = append(order, id)
	}
	sort.Strings(order)
	prefixes = append(prefixes, newPrefixes...)
	for _, id := range order {
		l := rows[id]
		for i := range prefixes {
			if applyPrefix(l, &prefixes[i]) {
				st.RevokedByPrefix++
			}
		}
	}

	var writes leaseRows
	for _, id := range order {
		l, o := rows[id], orig[id]
		switch {
		case inserted[id]:
			st.LeasesInserted++
			writes.add(l)
		case sameWrite(l, &o):
			if named[id] {
				st.LeasesUnchanged++
			}
		default:
			if named[id] {
				st.LeasesUpdated++
			}
			writes.add(l)
		}
	}
	if writes.n == 0 {
		return nil
	}
	// One statement for the batch's new and changed rows. The changed ones
	// are locked above; a new one that a concurrent batch inserted meanwhile
	// comes back as not inserted, and the whole transaction is retried.
	res, err := conn.Query(ctx, leaseUpsertSQL, writes.args()...)
	if err != nil {
		return err
	}
	var id string
	var wasInserted bool
	_, err = pgx.ForEachRow(res, []any{&id, &wasInserted}, func() error {
		if inserted[id] && !wasInserted {
			return errLeaseRace
		}
		return nil
	})
	return err
}
