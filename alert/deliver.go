package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
)

// worker delivers the pending notifications of one sink.
type worker struct {
	x    *Dispatcher
	sink sink
	// wake is signalled when intake raised or resolved an alert.
	wake chan struct{}
	// progress hears of each delivery pass.
	progress *progress.Worker
}

// run delivers until ctx is done. A pass that failed transiently (the sink
// is down or slow) is followed by a backoff during which wake-ups are
// ignored; otherwise the worker waits Interval or until woken.
func (w *worker) run(ctx context.Context, ready <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-ready:
	}
	cfg := w.x.cfg
	log := w.x.log.With("sink", w.sink.Name())
	failures := 0
	for {
		w.progress.Start()
		n, err := w.pass(ctx)
		w.progress.Finish(err)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		var wake <-chan struct{}
		switch {
		case err != nil:
			failures++
			ceiling := cfg.MaxBackoff
			if !isSinkFailure(err) {
				ceiling = min(ceiling, StoreBackoff) // the state store failed: retry soon
			}
			wait = retryWait(cfg.Interval, ceiling, failures)
			log.Warn("alert delivery failed, will retry", "err", err, "failures", failures, "retry_in", wait)
		case n >= cfg.Batch:
			failures = 0 // more may be due
		default:
			if failures > 0 {
				log.Info("alert delivery working again", "after_failures", failures)
			}
			failures = 0
			wait, wake = cfg.Interval, w.wake
		}
		if wait > 0 && !pause.For(ctx, wait, wake) {
			return
		}
	}
}

// due is one pending delivery with its alert.
type due struct {
	alert     Alert
	delivered string
	attempts  int
}

// pass makes one delivery pass for the sink: it takes the sink's lock row
// (returning 0, nil if another dispatcher holds it; FOR NO KEY UPDATE, so
// that intake can still add deliveries that reference the row), sends up
// to Batch due notifications and records each outcome. It stops at the first transient
// failure and returns it; permanent failures are recorded and the pass goes
// on. It returns how many deliveries it completed.
func (w *worker) pass(ctx context.Context) (int, error) {
	x := w.x
	name := w.sink.Name()
	bctx, cancel := context.WithTimeout(ctx, x.cfg.StoreTimeout)
	defer cancel()
	tx, err := x.db.Begin(bctx)
	if err != nil {
		return 0, fmt.Errorf("alert delivery: begin: %w", err)
	}
	defer rollback(ctx, tx)
	var got string
	err = tx.QueryRow(bctx, `SELECT sink FROM alert_sinks WHERE sink = $1 FOR NO KEY UPDATE SKIP LOCKED`, name).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil // another dispatcher is delivering to this sink
	}
	if err != nil {
		return 0, fmt.Errorf("alert delivery: take sink lock: %w", err)
	}
	now := x.now()
	resend := w.sink.Resend()
	rows, err := tx.Query(bctx, `
		SELECT d.delivered, d.attempts, a.id, a.dedup_key, a.rule, a.severity, coalesce(a.database, ''),
		       coalesce(a.db_user, ''), a.finding, a.last_finding_id, a.findings, a.first_detected_at,
		       a.last_detected_at, a.opened_at, a.resolved_at, coalesce(a.resolve_reason, '')
		FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
		WHERE d.sink = $1 AND d.delivered <> 'resolve' AND d.next_attempt_at <= $2
		  AND (d.delivered = 'none' OR a.resolved_at IS NOT NULL OR ($3::boolean AND d.last_sent_at <= $4))
		ORDER BY d.next_attempt_at, d.alert_id
		LIMIT $5`, name, now, resend > 0, now.Add(-resend), x.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("alert delivery: read deliveries: %w", err)
	}
	batch, err := pgx.CollectRows(rows, scanDue)
	if err != nil {
		return 0, fmt.Errorf("alert delivery: read deliveries: %w", err)
	}
	n, sendErr := w.deliver(ctx, tx, batch)
	// Record what was delivered even if ctx is done: the marks save sending
	// again after a shutdown.
	cctx, ccancel := x.storeCtx(ctx)
	defer ccancel()
	if err := tx.Commit(cctx); err != nil {
		return 0, errors.Join(sendErr, fmt.Errorf("alert delivery: commit: %w", err))
	}
	return n, sendErr
}

func scanDue(r pgx.CollectableRow) (due, error) {
	var d due
	var sev string
	var doc []byte
	var resolved pgtype.Timestamptz
	a := &d.alert
	err := r.Scan(&d.delivered, &d.attempts, &a.ID, &a.DedupKey, &a.Rule, &sev, &a.Database, &a.DBUser, &doc,
		&a.LastFindingID, &a.Findings, &a.FirstDetectedAt, &a.LastDetectedAt, &a.OpenedAt, &resolved, &a.ResolveReason)
	if err != nil {
		return d, err
	}
	a.Severity = schemas.Severity(sev)
	if err := json.Unmarshal(doc, &a.Finding); err != nil {
		return d, fmt.Errorf("alert %d: decode finding: %w", a.ID, err)
	}
	if resolved.Valid {
		t := resolved.Time
		a.ResolvedAt = &t
	}
	return d, nil
}

// deliver sends the notifications each due delivery needs, in order: the
// trigger if the sink never got one (even for an alert already resolved:
// the record of it is kept), then the resolve, or the trigger again for a
// firing alert the sink wants re-sent.
func (w *worker) deliver(ctx context.Context, tx pgx.Tx, batch []due) (int, error) {
	x := w.x
	name := w.sink.Name()
	n := 0
	refused := []int64{} // not nil: "<> ALL(NULL)" is never true
	for _, d := range batch {
		var steps []Action
		if d.delivered == "none" {
			steps = append(steps, ActionTrigger)
		}
		if d.alert.ResolvedAt != nil {
			steps = append(steps, ActionResolve)
		} else if d.delivered == "trigger" {
			steps = append(steps, ActionTrigger)
		}
		var permanent error
		for _, step := range steps {
			if ctx.Err() != nil {
				return n, nil
			}
			at := x.now()
			sctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
			err := w.sink.Send(sctx, notification{Action: step, Alert: d.alert, At: at})
			cancel()
			if err != nil && ctx.Err() != nil {
				// Shutting down: the delivery stays pending and is sent
				// (again) by the next dispatcher.
				return n, nil
			}
			if err != nil {
				x.m.failed.WithLabelValues(name).Inc()
				d.attempts++
				next := at.Add(retryWait(x.cfg.Interval, x.cfg.MaxBackoff, d.attempts))
				uerr := x.mark(ctx, tx, `
					UPDATE alert_deliveries SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4
					WHERE alert_id = $1 AND sink = $2`, d.alert.ID, name, truncate(err.Error(), 1000), next)
				if uerr != nil {
					return n, errors.Join(err, fmt.Errorf("alert delivery: record failure of alert %d: %w", d.alert.ID, uerr))
				}
				if !isPermanent(err) {
					return n, sinkFailure{fmt.Errorf("alert %d (%s): %w", d.alert.ID, step, err)}
				}
				permanent = err
				break
			}
			uerr := x.mark(ctx, tx, `
				UPDATE alert_deliveries SET delivered = $3, attempts = 0, last_error = NULL,
				       last_sent_at = $4, next_attempt_at = $4
				WHERE alert_id = $1 AND sink = $2`, d.alert.ID, name, string(step), at)
			if uerr != nil {
				return n, fmt.Errorf("alert delivery: record delivery of alert %d: %w", d.alert.ID, uerr)
			}
			x.m.sent.WithLabelValues(name, string(step)).Inc()
			w.progress.Advance() // a slow sink that answers is not stuck
			d.attempts = 0
		}
		if permanent != nil {
			refused = append(refused, d.alert.ID)
			x.log.Error("alert delivery refused by the sink; will retry", "sink", name, "alert_id", d.alert.ID,
				"dedup_key", d.alert.DedupKey, "err", permanent, "attempts", d.attempts)
			continue
		}
		n++
	}
	if n > 0 {
		// The sink takes deliveries again: what waits in a backoff from
		// earlier failures is due now, not up to MaxBackoff later.
		err := x.mark(ctx, tx, `
			UPDATE alert_deliveries SET next_attempt_at = $2
			WHERE sink = $1 AND delivered <> 'resolve' AND attempts > 0 AND next_attempt_at > $2
			  AND alert_id <> ALL($3)`, name, x.now(), refused)
		if err != nil {
			return n, fmt.Errorf("alert delivery: reschedule backed-off deliveries: %w", err)
		}
	}
	return n, nil
}

// mark runs one recording statement of a delivery pass in tx, written even
// if ctx ended, within StoreTimeout.
func (x *Dispatcher) mark(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	mctx, cancel := x.storeCtx(ctx)
	defer cancel()
	_, err := tx.Exec(mctx, sql, args...)
	return err
}

// sinkFailure marks a transient failure of a sink, as opposed to one of
// the state store.
type sinkFailure struct{ err error }

func (e sinkFailure) Error() string { return e.err.Error() }
func (e sinkFailure) Unwrap() error { return e.err }

func isSinkFailure(err error) bool {
	var sf sinkFailure
	return errors.As(err, &sf)
}
