package detectors

import (
	"context"
	"fmt"
	"time"

	"github.com/leaseguard/leaseguard/store"
)

// ExceptionHit is an object a configured exception spared from a rule (see
// the exception_hits table): the pilot report lists them, so an owner sees
// what the exceptions let through before enforcement widens.
type ExceptionHit struct {
	Rule     string
	Database string
	// ObjectKey identifies the object within its database (a session:
	// pid and backend start), so it is recorded once.
	ObjectKey string
	// Exception names the setting ("allowed_cidr") and Value the entry of
	// it that matched ("10.0.0.0/8").
	Exception  string
	Value      string
	DBUser     string
	Mount      string
	Role       string
	ClientAddr string
	SeenAt     time.Time
}

// Exception kinds.
const ExceptionAllowedCIDR = "allowed_cidr"

// RecordExceptionHits records hits not recorded yet (the first sighting of
// each object counts).
func RecordExceptionHits(ctx context.Context, q store.Querier, hits []ExceptionHit) error {
	for _, h := range hits {
		if _, err := q.Exec(ctx, `
			INSERT INTO exception_hits (rule, database, object_key, exception, value, db_user, mount, role, client_addr, seen_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (rule, database, object_key) DO NOTHING`,
			h.Rule, h.Database, h.ObjectKey, h.Exception, h.Value, h.DBUser, h.Mount, h.Role, h.ClientAddr, h.SeenAt); err != nil {
			return fmt.Errorf("record exception hit: %w", err)
		}
	}
	return nil
}

// PruneExceptionHits deletes hits seen before cutoff.
func PruneExceptionHits(ctx context.Context, q store.Querier, cutoff time.Time) error {
	if _, err := q.Exec(ctx, `DELETE FROM exception_hits WHERE seen_at < $1`, cutoff); err != nil {
		return fmt.Errorf("prune exception hits: %w", err)
	}
	return nil
}
