package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnsureCoverage records at as the ledger's coverage watermark unless one is
// already recorded, and returns the watermark. The first ingest or observer
// to run calls it: from then on the ledger sees the audit stream, so a
// managed role created later with no lease is unaccounted for. A role that
// may predate the watermark is never judged "never issued", so a freshly
// installed leaseguard does not flag every existing user.
func EnsureCoverage(ctx context.Context, q Querier, at time.Time) (time.Time, error) {
	if _, err := q.Exec(ctx, `INSERT INTO coverage (id, since) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, dbTime(at)); err != nil {
		return time.Time{}, fmt.Errorf("ensure coverage watermark: %w", err)
	}
	// A separate statement: under READ COMMITTED it sees a row another
	// process inserted concurrently, which made the insert a no-op.
	return Coverage(ctx, q)
}

// Coverage returns the watermark, or ErrNotFound when none is recorded.
func Coverage(ctx context.Context, q Querier) (time.Time, error) {
	var since time.Time
	err := q.QueryRow(ctx, `SELECT since FROM coverage WHERE id = 1`).Scan(&since)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, fmt.Errorf("coverage watermark: %w", ErrNotFound)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("coverage watermark: %w", err)
	}
	return since.UTC(), nil
}
