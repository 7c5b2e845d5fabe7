package observed

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier runs the reads below: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ActiveSessions counts, per database, the open sessions of managed roles
// (ghosts excluded) in databases the observer passed over at or after
// since: sessions of a database it no longer watches are not known to be
// active.
func ActiveSessions(ctx context.Context, q Querier, since time.Time) (map[string]int, error) {
	rows, err := q.Query(ctx, `SELECT s.database, count(*) FROM db_sessions s
		JOIN observer_targets t ON t.database = s.database AND t.last_pass_at >= $1
		WHERE s.ended_at IS NULL AND s.ghost_since IS NULL AND s.user_name IS NOT NULL
		GROUP BY s.database ORDER BY s.database`, since)
	if err != nil {
		return nil, fmt.Errorf("active sessions: %w", err)
	}
	out := map[string]int{}
	var db string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&db, &n}, func() error { out[db] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("active sessions: %w", err)
	}
	return out, nil
}

// OpenSession is an open session of a managed role, as the observer
// recorded it.
type OpenSession struct {
	Database string
	DBSession
	FirstSeenAt time.Time
}

// OpenSessionsSeenBefore returns the open, non-ghost sessions of managed
// roles with a client address that the observer first saw before cutoff, in
// databases it passed over at or after since.
func OpenSessionsSeenBefore(ctx context.Context, q Querier, cutoff, since time.Time, limit int) ([]OpenSession, error) {
	rows, err := q.Query(ctx, `SELECT s.database, s.pid, s.backend_start, s.user_oid, s.user_name, s.client_addr,
			COALESCE(s.client_port, 0), COALESCE(s.application_name, ''), COALESCE(s.datname, ''),
			COALESCE(s.backend_type, ''), s.first_seen_at
		FROM db_sessions s
		JOIN observer_targets t ON t.database = s.database AND t.last_pass_at >= $2
		WHERE s.ended_at IS NULL AND s.ghost_since IS NULL AND s.user_name IS NOT NULL
		  AND COALESCE(s.client_addr, '') <> '' AND s.first_seen_at < $1
		ORDER BY s.first_seen_at, s.database, s.pid
		LIMIT $3`, cutoff, since, limit)
	if err != nil {
		return nil, fmt.Errorf("open sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OpenSession, error) {
		var s OpenSession
		var oid int64
		err := r.Scan(&s.Database, &s.PID, &s.BackendStart, &oid, &s.UserName, &s.ClientAddr, &s.ClientPort,
			&s.ApplicationName, &s.Datname, &s.BackendType, &s.FirstSeenAt)
		s.UserOID = uint32(oid)
		s.BackendStart, s.FirstSeenAt = s.BackendStart.UTC(), s.FirstSeenAt.UTC()
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("open sessions: %w", err)
	}
	return out, nil
}
