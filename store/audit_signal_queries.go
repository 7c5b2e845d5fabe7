package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The queries of the audit-signal rules (detectors/audit_signal_rules.go)
// over what audit_signals.go writes and the ledger. What they read of the
// observer's tables is in observer/observed.

// lockClassSignalRules serialises the scanning audit-signal rules: one
// process at a time judges windows, silence, sessions and renewals, so a
// finding's evidence is appended once.
const lockClassSignalRules int32 = 0x4c47_0010

// TryAuditSignalRules takes the transaction-level lock of the scanning
// audit-signal rules of this schema; false means another process holds it.
func TryAuditSignalRules(ctx context.Context, tx pgx.Tx) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1::int4, hashtext(current_schema()))`, lockClassSignalRules).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("audit signal rules lock: %w", err)
	}
	return ok, nil
}

// WindowQuery asks for the windows of one kind of count worth judging.
type WindowQuery struct {
	Kind SignalKind
	// Rule whose marks suppress windows already reported.
	Rule string
	// From: windows ending (their last bucket) at or after From are judged;
	// later entries that land in older buckets are not.
	From time.Time
	// Window is the width of a window, a multiple of BucketWidth.
	Window time.Duration
	// Min: only windows whose count is above Min are returned.
	Min int64
	// Threshold: for each key, the earliest window above Threshold is
	// returned, else the window with the largest count.
	Threshold int64
	// BaselinePeriod: how far before a window its key's baseline is summed
	// (0: no baseline).
	BaselinePeriod time.Duration
	Limit          int
}

// WindowCount is one key's window: Count entries in the window ending with
// the bucket End (so covering [End+BucketWidth-Window, End+BucketWidth)).
type WindowCount struct {
	Namespace, Mount, Role, Principal, RemoteAddress string
	End                                              time.Time
	Count                                            int64
	FirstAt, LastAt                                  time.Time
	SampleRequestID, DisplayName                     string
	// BaselineSum is the key's count over BaselinePeriod before the window;
	// BaselineFrom is the first bucket the key has in that period (zero when
	// none).
	BaselineSum  int64
	BaselineFrom time.Time
}

// Key names the counted key, for rule marks and finding ids.
func (w WindowCount) Key() string {
	return strings.Join([]string{w.Namespace, w.Mount, w.Role, w.Principal, w.RemoteAddress}, "\x1f")
}

// WindowCandidates returns, per key, the one window worth judging (see
// WindowQuery): windows are sliding, one per bucket, each summing the key's
// buckets (over every writer) within Window; windows at or before the key's
// rule mark are skipped.
func WindowCandidates(ctx context.Context, tx pgx.Tx, q WindowQuery) ([]WindowCount, error) {
	span := q.Window - BucketWidth
	rows, err := tx.Query(ctx, `
		WITH k AS (
			SELECT namespace, mount, role, principal, remote_address, bucket, sum(count) AS n,
			       min(first_at) AS first_at, max(last_at) AS last_at,
			       min(sample_request_id) AS sample, min(display_name) AS dn
			FROM audit_counts
			WHERE kind = $1 AND bucket >= $2::timestamptz - $3::interval
			GROUP BY namespace, mount, role, principal, remote_address, bucket
		), w AS (
			SELECT k.*,
			       sum(n) OVER kw AS wn,
			       min(first_at) OVER kw AS wfirst,
			       max(last_at) OVER kw AS wlast,
			       min(sample) OVER kw AS wsample
			FROM k
			WINDOW kw AS (PARTITION BY namespace, mount, role, principal, remote_address ORDER BY bucket
			              RANGE BETWEEN $3::interval PRECEDING AND CURRENT ROW)
		), c AS (
			SELECT DISTINCT ON (w.namespace, w.mount, w.role, w.principal, w.remote_address) w.*
			FROM w
			LEFT JOIN rule_marks m ON m.rule = $4
			     AND m.key = concat_ws(E'\x1f', w.namespace, w.mount, w.role, w.principal, w.remote_address)
			WHERE w.bucket >= $2 AND w.wn > $5 AND (m.until IS NULL OR w.bucket > m.until)
			ORDER BY w.namespace, w.mount, w.role, w.principal, w.remote_address,
			         (w.wn > $6) DESC, CASE WHEN w.wn > $6 THEN 0 ELSE -w.wn END, w.bucket
		)
		SELECT c.namespace, c.mount, c.role, c.principal, c.remote_address, c.bucket, c.wn, c.wfirst, c.wlast,
		       COALESCE(c.wsample, ''), COALESCE(c.dn, ''), COALESCE(b.total, 0), b.since
		FROM c
		LEFT JOIN LATERAL (
			SELECT sum(a.count) AS total, min(a.bucket) AS since
			FROM audit_counts a
			WHERE $7::interval > interval '0' AND a.kind = $1
			  AND a.namespace = c.namespace AND a.mount = c.mount AND a.role = c.role
			  AND a.principal = c.principal AND a.remote_address = c.remote_address
			  AND a.bucket >= c.bucket - $3::interval - $7::interval AND a.bucket < c.bucket - $3::interval
		) b ON true
		ORDER BY c.bucket, c.namespace, c.mount, c.role, c.principal, c.remote_address
		LIMIT $8`,
		string(q.Kind), q.From, span, q.Rule, q.Min, q.Threshold, q.BaselinePeriod, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("%s windows: %w", q.Kind, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WindowCount, error) {
		var w WindowCount
		var since *time.Time
		err := r.Scan(&w.Namespace, &w.Mount, &w.Role, &w.Principal, &w.RemoteAddress, &w.End, &w.Count,
			&w.FirstAt, &w.LastAt, &w.SampleRequestID, &w.DisplayName, &w.BaselineSum, &since)
		w.End, w.FirstAt, w.LastAt = w.End.UTC(), w.FirstAt.UTC(), w.LastAt.UTC()
		if since != nil {
			w.BaselineFrom = since.UTC()
		}
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s windows: %w", q.Kind, err)
	}
	return out, nil
}

// MarkRule records that rule reported key up to the window ending at until.
func MarkRule(ctx context.Context, tx pgx.Tx, rule, key string, until time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO rule_marks AS m (rule, key, until) VALUES ($1, $2, $3)
		ON CONFLICT (rule, key) DO UPDATE SET until = GREATEST(m.until, EXCLUDED.until)`, rule, key, until)
	if err != nil {
		return fmt.Errorf("mark %s reported: %w", rule, err)
	}
	return nil
}

// PruneAuditSignals deletes counts of buckets before cutoff, marks that
// suppress nothing after it, and liveness rows older than it but the latest.
func PruneAuditSignals(ctx context.Context, tx pgx.Tx, cutoff time.Time) error {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM audit_counts WHERE kind IN ('issue', 'denied_creds', 'root_use') AND bucket < $1`, cutoff)
	b.Queue(`DELETE FROM rule_marks WHERE until < $1`, cutoff)
	b.Queue(`DELETE FROM audit_heartbeats WHERE received_at < $1
		AND received_at < (SELECT max(received_at) FROM audit_heartbeats)`, cutoff)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("prune audit signals: %w", err)
	}
	return nil
}

// DeviceChange is an audit-device change to report.
type DeviceChange struct {
	AuditDeviceChange
	// Answered: a response entry of the same request is recorded.
	Answered bool
}

// ClaimAuditDeviceChanges locks up to limit unreported audit-device change
// entries, oldest first: every response entry, and request entries that
// are answered or were logged before cutoff (a request whose response this
// stream never gets). The caller marks them reported in tx.
func ClaimAuditDeviceChanges(ctx context.Context, tx pgx.Tx, cutoff time.Time, limit int) ([]DeviceChange, error) {
	rows, err := tx.Query(ctx, `
		SELECT d.request_id, d.entry = 'response', d.device_path, d.operation, d.at, d.error,
		       COALESCE(d.namespace, ''), COALESCE(d.entity_id, ''), COALESCE(d.token_accessor, ''),
		       COALESCE(d.display_name, ''), COALESCE(d.remote_address, ''),
		       EXISTS (SELECT 1 FROM audit_device_changes r WHERE r.request_id = d.request_id AND r.entry = 'response')
		FROM audit_device_changes d
		WHERE d.reported_at IS NULL
		  AND (d.entry = 'response' OR d.at < $1
		       OR EXISTS (SELECT 1 FROM audit_device_changes r WHERE r.request_id = d.request_id AND r.entry = 'response'))
		ORDER BY d.at, d.request_id, d.entry
		LIMIT $2
		FOR UPDATE OF d SKIP LOCKED`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("claim audit device changes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeviceChange, error) {
		var d DeviceChange
		err := r.Scan(&d.RequestID, &d.Response, &d.DevicePath, &d.Operation, &d.Time, &d.Error, &d.Namespace,
			&d.EntityID, &d.TokenAccessor, &d.DisplayName, &d.RemoteAddress, &d.Answered)
		d.Time = d.Time.UTC()
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim audit device changes: %w", err)
	}
	return out, nil
}

// MarkAuditDeviceChangesReported marks claimed entries reported.
func MarkAuditDeviceChangesReported(ctx context.Context, tx pgx.Tx, ds []DeviceChange, at time.Time) error {
	if len(ds) == 0 {
		return nil
	}
	ids, entries := make([]string, len(ds)), make([]string, len(ds))
	for i, d := range ds {
		ids[i], entries[i] = d.RequestID, "request"
		if d.Response {
			entries[i] = "response"
		}
	}
	_, err := tx.Exec(ctx, `UPDATE audit_device_changes d SET reported_at = $3
		FROM unnest($1::text[], $2::text[]) AS x(id, entry)
		WHERE d.request_id = x.id AND d.entry = x.entry AND d.reported_at IS NULL`, ids, entries, at)
	if err != nil {
		return fmt.Errorf("mark audit device changes reported: %w", err)
	}
	return nil
}

// AuditLiveness is what the state store knows of the audit stream.
type AuditLiveness struct {
	// LastEntryAt is the latest audit entry time (Vault's clock);
	// ReceivedAt when it was last committed (the state store's clock).
	// Both zero when no entry was ever recorded.
	LastEntryAt, ReceivedAt time.Time
	// Coverage is the ledger's watermark (zero when unset).
	Coverage time.Time
}

// ReadAuditLiveness reads the liveness rows and the coverage watermark.
func ReadAuditLiveness(ctx context.Context, q Querier) (AuditLiveness, error) {
	var l AuditLiveness
	var last, recv, cov *time.Time
	err := q.QueryRow(ctx, `SELECT (SELECT max(last_entry_at) FROM audit_heartbeats),
		(SELECT max(received_at) FROM audit_heartbeats), (SELECT since FROM coverage WHERE id = 1)`).Scan(&last, &recv, &cov)
	if err != nil {
		return l, fmt.Errorf("audit liveness: %w", err)
	}
	for _, p := range []struct {
		dst *time.Time
		src *time.Time
	}{{&l.LastEntryAt, last}, {&l.ReceivedAt, recv}, {&l.Coverage, cov}} {
		if p.src != nil {
			*p.dst = p.src.UTC()
		}
	}
	return l, nil
}

// LeaseAddresses returns, per lease id, every client address its Vault
// requests came from: the issue (the lease's and its creds request's
// remote address) and each renewal.
func LeaseAddresses(ctx context.Context, q Querier, leaseIDs []string) (map[string][]string, error) {
	out := map[string][]string{}
	if len(leaseIDs) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `
		SELECT lease_id, address FROM lease_addresses WHERE lease_id = ANY($1)
		UNION
		SELECT lease_id, remote_address FROM leases WHERE lease_id = ANY($1) AND remote_address IS NOT NULL
		UNION
		SELECT lease_id, remote_address FROM creds_requests WHERE lease_id = ANY($1) AND remote_address IS NOT NULL
		ORDER BY 1, 2`, leaseIDs)
	if err != nil {
		return nil, fmt.Errorf("lease addresses: %w", err)
	}
	var id, addr string
	_, err = pgx.ForEachRow(rows, []any{&id, &addr}, func() error { out[id] = append(out[id], addr); return nil })
	if err != nil {
		return nil, fmt.Errorf("lease addresses: %w", err)
	}
	return out, nil
}

// RenewedLeasesPast returns active renewed leases whose expiry, read from
// an event or the database (not a role default), is more than minExcess
// after their issue, oldest issue first, skipping those rule marked (key
// the lease id) at that expiry or a later one.
func RenewedLeasesPast(ctx context.Context, q Querier, rule string, minExcess time.Duration, limit int) ([]Lease, error) {
	rows, err := q.Query(ctx, "SELECT "+leaseSelect+` FROM leases l
		WHERE state = 'active' AND renewed_at IS NOT NULL AND issued_at IS NOT NULL
		  AND expire_source IN ('event', 'pg_valid_until') AND expire_at > issued_at + $1::interval
		  AND NOT EXISTS (SELECT 1 FROM rule_marks m WHERE m.rule = $3 AND m.key = l.lease_id AND m.until >= l.expire_at)
		ORDER BY issued_at, lease_id
		LIMIT $2`, minExcess, limit, rule)
	if err != nil {
		return nil, fmt.Errorf("renewed leases: %w", err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, fmt.Errorf("renewed leases: %w", err)
	}
	return ls, nil
}
