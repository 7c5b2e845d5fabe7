package store

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
)

// The audit signals: what the audit-signal rules (issuance-burst,
// permission-denied-burst, root-token-use, audit-device-disabled,
// audit-silence, credential-foreign-address) need from audit entries,
// written by Apply in the batch's transaction. They are kept cheap, because
// most audit entries change no lease: counts per minute and key in
// audit_counts, one liveness row per state-store connection at most once a
// HeartbeatEvery, a row per (lease, client address), and a row per
// audit-device change (rare). See migrations/007_audit_signals.sql.
//
// Counts are at least once: a batch committed whose acknowledgement was lost
// is counted again when redelivered (lease events are not: they have ids).
// The rules judge bursts, where that error is small.

// SignalKind is what an AuditSignal counts.
type SignalKind string

const (
	// SignalDeniedCreds: a permission-denied error on <mount>/creds/<role>.
	SignalDeniedCreds SignalKind = "denied_creds"
	// SignalRootUse: a request on a database mount made with a root token.
	SignalRootUse SignalKind = "root_use"
	// SignalIssue: a database credential issued. Apply counts these from the
	// batch's issued lease events; normalisers need not send them.
	SignalIssue SignalKind = "issue"
)

// BucketWidth is the granularity of audit_counts: windows of the rules are
// whole multiples of it.
const BucketWidth = time.Minute

// HeartbeatEvery bounds how often one Store records the stream's liveness.
const HeartbeatEvery = time.Second

// AuditSignal is one audit entry that a counting rule looks at.
type AuditSignal struct {
	Kind SignalKind
	// Time is the entry's time (Vault's clock).
	Time      time.Time
	Namespace string
	Mount     string
	Role      string
	// EntityID, TokenAccessor: who asked; the principal is the entity when
	// known, else the accessor.
	EntityID      string
	TokenAccessor string
	DisplayName   string
	// RemoteAddress is the client address without a port.
	RemoteAddress string
	RequestID     string
}

// Principal is how counts name who asked: "entity:<id>", else
// "accessor:<accessor as logged>", else "".
func Principal(entityID, accessor string) string {
	switch {
	case entityID != "":
		return "entity:" + entityID
	case accessor != "":
		return "accessor:" + accessor
	}
	return ""
}

// Audit device operations.
const (
	AuditDeviceEnable  = "enable"
	AuditDeviceDisable = "disable"
)

// AuditDeviceChange is a request or response entry of sys/audit/<path> that
// enables (update) or disables (delete) an audit device.
type AuditDeviceChange struct {
	RequestID string
	// Response: the response entry; else the request entry.
	Response bool
	// DevicePath is <path> of sys/audit/<path>.
	DevicePath string
	// Operation is AuditDeviceEnable or AuditDeviceDisable.
	Operation     string
	Time          time.Time
	Error         bool
	Namespace     string
	EntityID      string
	TokenAccessor string
	DisplayName   string
	RemoteAddress string
}

// AuditSignals is what one batch of audit entries says to the audit-signal
// rules. Observe adds one entry.
type AuditSignals struct {
	// Entries counts the audit entries of the batch (decoded ones).
	Entries int
	// LastEntry is the latest entry time of the batch.
	LastEntry     time.Time
	Counts        []AuditSignal
	DeviceChanges []AuditDeviceChange
}

// Observe adds one decoded audit entry, of time at, with what it signals
// (either may be nil).
func (s *AuditSignals) Observe(at time.Time, sig *AuditSignal, dev *AuditDeviceChange) {
	s.Entries++
	if at.After(s.LastEntry) {
		s.LastEntry = at
	}
	if sig != nil {
		s.Counts = append(s.Counts, *sig)
	}
	if dev != nil {
		s.DeviceChanges = append(s.DeviceChanges, *dev)
	}
}

// Empty reports whether b carries nothing to write.
func (b Batch) Empty() bool {
	return len(b.Leases) == 0 && len(b.Creds) == 0 && b.Signals.Entries == 0 &&
		len(b.Signals.Counts) == 0 && len(b.Signals.DeviceChanges) == 0
}

// heartbeat throttles the liveness row of one Store.
type heartbeat struct {
	mu   sync.Mutex
	last time.Time
}

func (h *heartbeat) due(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.last) < HeartbeatEvery && !now.Before(h.last) {
		return false
	}
	h.last = now
	return true
}

type countKey struct {
	kind                                      SignalKind
	namespace, mount, role, principal, remote string
	bucket                                    int64
}

type countRow struct {
	n                int64
	first, last      time.Time
	request, display string
}

type addressKey struct{ lease, address string }

type addressRow struct {
	kind string
	at   time.Time
}

// signalWrites is what Apply writes for the audit signals of one batch.
type signalWrites struct {
	counts    map[countKey]*countRow
	addresses map[addressKey]addressRow
	devices   []AuditDeviceChange
	// heartbeat is the batch's latest entry time when the liveness row is
	// to be written.
	heartbeat time.Time
}

func (w *signalWrites) empty() bool {
	return w == nil || len(w.counts) == 0 && len(w.addresses) == 0 && len(w.devices) == 0 && w.heartbeat.IsZero()
}

// prepareSignals gathers the signal writes of b: its counts, the issues of
// its lease events, the client addresses of its renewals,
// its audit-device changes, and the liveness row when due.
//
// Lease events are taken from p, where repeats within the batch are gone.
func (s *Store) prepareSignals(b Batch, p *preparedBatch) *signalWrites {
	w := &signalWrites{counts: map[countKey]*countRow{}, addresses: map[addressKey]addressRow{},
		devices: b.Signals.DeviceChanges}
	add := func(sig *AuditSignal) {
		if sig.Time.IsZero() {
			return
		}
		role, remote := sig.Role, sig.RemoteAddress
		switch sig.Kind {
		case SignalDeniedCreds:
			// Refusals are counted per mount: probing many roles is one burst.
			role = ""
		case SignalIssue:
			// Issues are counted per principal and role, from wherever.
			remote = ""
		}
		k := countKey{kind: sig.Kind, namespace: sig.Namespace, mount: sig.Mount, role: role,
			principal: Principal(sig.EntityID, sig.TokenAccessor), remote: remote,
			bucket: sig.Time.Truncate(BucketWidth).UnixMicro()}
		r := w.counts[k]
		if r == nil {
			r = &countRow{first: sig.Time, last: sig.Time}
			w.counts[k] = r
		}
		r.n++
		if sig.Time.Before(r.first) {
			r.first = sig.Time
		}
		if sig.Time.After(r.last) {
			r.last = sig.Time
		}
		if r.request == "" {
			r.request = sig.RequestID
		}
		if r.display == "" {
			r.display = sig.DisplayName
		}
	}
	for i := range b.Signals.Counts {
		add(&b.Signals.Counts[i])
	}
	for i := range p.events {
		e := &p.events[i].ev
		if e.LeaseID == "" || e.LeaseIDHMAC || (e.Kind != schemas.LeaseIssued && e.Kind != schemas.LeaseRenewed) {
			continue
		}
		if e.Kind == schemas.LeaseIssued {
			at := e.EventTime
			if e.IssueTime != nil {
				at = *e.IssueTime
			}
			add(&AuditSignal{Kind: SignalIssue, Time: at, Namespace: e.Namespace, Mount: e.Mount, Role: e.Role,
				EntityID: e.EntityID, TokenAccessor: e.TokenAccessor, DisplayName: e.DisplayName,
				RemoteAddress: e.RemoteAddress, RequestID: e.VaultRequestID})
		}
		// The issue's address is the lease's own (leases.remote_address);
		// only renewals add addresses.
		if e.RemoteAddress == "" || e.Kind != schemas.LeaseRenewed {
			continue
		}
		k := addressKey{e.LeaseID, e.RemoteAddress}
		if r, ok := w.addresses[k]; !ok || e.EventTime.Before(r.at) {
			w.addresses[k] = addressRow{kind: string(e.Kind), at: e.EventTime}
		}
	}
	if b.Signals.Entries > 0 && s.beat.due(time.Now()) {
		w.heartbeat = b.Signals.LastEntry
	}
	return w
}

// queueSignalWrites queues w's statements on b, each in a fixed row order.
func queueSignalWrites(b *pgx.Batch, w *signalWrites) {
	if w.empty() {
		return
	}
	if len(w.counts) > 0 {
		keys := make([]countKey, 0, len(w.counts))
		for k := range w.counts {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return lessCount(keys[i], keys[j]) })
		n := len(keys)
		kinds, nss, mounts, roles, princs, remotes, reqs, dns := make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		buckets, firsts, lasts := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		counts := make([]int64, n)
		for i, k := range keys {
			r := w.counts[k]
			kinds[i], nss[i], mounts[i], roles[i], princs[i], remotes[i] = string(k.kind), k.namespace, k.mount, k.role, k.principal, k.remote
			buckets[i], firsts[i], lasts[i], counts[i] = time.UnixMicro(k.bucket).UTC(), r.first, r.last, r.n
			reqs[i], dns[i] = r.request, r.display
		}
		b.Queue(`INSERT INTO audit_counts AS c (kind, namespace, mount, role, principal, remote_address, bucket, writer,
				count, first_at, last_at, sample_request_id, display_name)
			SELECT k, ns, m, r, p, ra, bk, pg_backend_pid(), n, f, l, NULLIF(rq, ''), NULLIF(dn, '')
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
				$8::bigint[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[])
				AS x(k, ns, m, r, p, ra, bk, n, f, l, rq, dn)
			ON CONFLICT (kind, namespace, mount, role, principal, remote_address, bucket, writer) DO UPDATE SET
				count = c.count + EXCLUDED.count,
				first_at = LEAST(c.first_at, EXCLUDED.first_at),
				last_at = GREATEST(c.last_at, EXCLUDED.last_at),
				sample_request_id = COALESCE(c.sample_request_id, EXCLUDED.sample_request_id),
				display_name = COALESCE(c.display_name, EXCLUDED.display_name)`,
			kinds, nss, mounts, roles, princs, remotes, buckets, counts, firsts, lasts, reqs, dns)
	}
	if len(w.addresses) > 0 {
		keys := make([]addressKey, 0, len(w.addresses))
		for k := range w.addresses {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].lease != keys[j].lease {
				return keys[i].lease < keys[j].lease
			}
			return keys[i].address < keys[j].address
		})
		leases, addrs, kinds := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys))
		ats := make([]time.Time, len(keys))
		for i, k := range keys {
			r := w.addresses[k]
			leases[i], addrs[i], kinds[i], ats[i] = k.lease, k.address, r.kind, r.at
		}
		b.Queue(`INSERT INTO lease_addresses (lease_id, address, kind, first_seen_at)
			SELECT l, a, k, t FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS x(l, a, k, t)
			ON CONFLICT (lease_id, address) DO NOTHING`, leases, addrs, kinds, ats)
	}
	for _, d := range w.devices {
		entry := "request"
		if d.Response {
			entry = "response"
		}
		b.Queue(`INSERT INTO audit_device_changes (request_id, entry, device_path, operation, at, error, namespace,
				entity_id, token_accessor, display_name, remote_address)
			VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), NULLIF($8, ''), NULLIF($9, ''), NULLIF($10, ''), NULLIF($11, ''))
			ON CONFLICT (request_id, entry) DO NOTHING`,
			d.RequestID, entry, d.DevicePath, d.Operation, d.Time, d.Error, d.Namespace, d.EntityID, d.TokenAccessor,
			d.DisplayName, d.RemoteAddress)
	}
	if !w.heartbeat.IsZero() {
		b.Queue(`INSERT INTO audit_heartbeats AS h (writer, last_entry_at, received_at)
			VALUES (pg_backend_pid(), $1, now())
			ON CONFLICT (writer) DO UPDATE SET last_entry_at = GREATEST(h.last_entry_at, EXCLUDED.last_entry_at),
				received_at = GREATEST(h.received_at, EXCLUDED.received_at)`, w.heartbeat)
	}
}

func lessCount(a, b countKey) bool {
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	if c := strings.Compare(a.namespace+"\x00"+a.mount+"\x00"+a.role+"\x00"+a.principal+"\x00"+a.remote,
		b.namespace+"\x00"+b.mount+"\x00"+b.role+"\x00"+b.principal+"\x00"+b.remote); c != 0 {
		return c < 0
	}
	return a.bucket < b.bucket
}
