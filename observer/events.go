package observer

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leaseguard/leaseguard/store"
)

// DBEvent is a RoleEvent or SessionEvent waiting in the outbox.
type DBEvent struct {
	Seq  int64
	ID   string
	Kind string // "role" or "session"
	// Event is the document as JSON.
	Event []byte
}

// unpublishedEvents returns up to limit events of database not yet
// published, in the order they were recorded.
func unpublishedEvents(ctx context.Context, q store.Querier, database string, limit int) ([]DBEvent, error) {
	rows, err := q.Query(ctx, `
		SELECT seq, id, kind, event::text FROM db_events
		WHERE database = $1 AND published_at IS NULL
		ORDER BY seq LIMIT $2`, database, limit)
	if err != nil {
		return nil, fmt.Errorf("unpublished events of %s: %w", database, err)
	}
	var out []DBEvent
	var e DBEvent
	var doc string
	_, err = pgx.ForEachRow(rows, []any{&e.Seq, &e.ID, &e.Kind, &doc}, func() error {
		c := e
		c.Event = []byte(doc)
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unpublished events of %s: %w", database, err)
	}
	return out, nil
}

// markEventsPublished records that the events were published.
func markEventsPublished(ctx context.Context, q store.Querier, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := q.Exec(ctx, `UPDATE db_events SET published_at = $2 WHERE id = ANY($1) AND published_at IS NULL`, ids, dbTime(at)); err != nil {
		return fmt.Errorf("mark events published: %w", err)
	}
	return nil
}

// pruneHistory deletes, for database, sessions that ended before cutoff,
// published events observed before it (and unpublished ones too when
// unpublished is set: nothing will publish them), and roles gone before it
// that no open session names. History is only needed to name the former
// user of a ghost session, and every ghost session is tracked: its role's
// history stays as long as it lives.
func pruneHistory(ctx context.Context, q store.Querier, database string, cutoff time.Time, unpublished bool) error {
	if _, err := q.Exec(ctx, `DELETE FROM db_sessions WHERE database = $1 AND ended_at < $2`, database, dbTime(cutoff)); err != nil {
		return fmt.Errorf("prune sessions of %s: %w", database, err)
	}
	_, err := q.Exec(ctx, `
		DELETE FROM db_roles r WHERE r.database = $1 AND r.gone_at < $2
		AND NOT EXISTS (SELECT 1 FROM db_sessions s WHERE s.database = r.database AND s.user_oid = r.oid AND s.ended_at IS NULL)`,
		database, dbTime(cutoff))
	if err != nil {
		return fmt.Errorf("prune role history of %s: %w", database, err)
	}
	_, err = q.Exec(ctx, `DELETE FROM db_events WHERE database = $1 AND observed_at < $2 AND (published_at IS NOT NULL OR $3)`,
		database, dbTime(cutoff), unpublished)
	if err != nil {
		return fmt.Errorf("prune events of %s: %w", database, err)
	}
	return nil
}
