package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// memoryScenario: RSS of `leaseguard run` (embedded JetStream, as a
// single-node install runs) while its ledger holds a small and a large
// number of leases, bulk-loaded with COPY. Most leases are not due; at
// both sizes the same few are due (users already gone: the revoker records
// already_absent) and the same few have no expiry (HMAC'd users: the
// resolver retries them); some are history (revoked).
func (b *Bench) memoryScenario(ctx context.Context) error {
	small, large := b.opt.rssLeases[0], b.opt.rssLeases[1]
	schema := b.schemaName("mem")
	defer b.dropSchema(context.WithoutCancel(ctx), schema)
	st, err := store.Open(ctx, store.Config{URL: b.opt.dbURL, Schema: schema})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	var rss, hwm [2]float64
	for i, size := range []int{small, large} {
		from := 0
		if i == 1 {
			from = small
		}
		t0 := time.Now()
		if err := b.loadLeases(ctx, st, from, size); err != nil {
			return err
		}
		b.logf("memory: ledger holds %s leases (loaded in %s)", thousands(int64(size)), time.Since(t0).Round(100*time.Millisecond))
		if rss[i], hwm[i], err = b.measureRSS(ctx, schema, size); err != nil {
			return err
		}
	}
	b.results.add(row{figure: "RSS, " + thousands(int64(small)) + " leases", value: rss[0], baseline: nanF, unit: "MB"})
	b.results.add(row{figure: "RSS, " + thousands(int64(large)) + " leases", value: rss[1], baseline: rss[0], unit: "MB",
		target: "≤1.25× the small ledger's", verdict: verdict(rss[1] <= 1.25*rss[0])})
	b.results.set("rss_mb_10k_leases", rss[0])
	b.results.set("rss_mb_1m_leases", rss[1])
	b.results.set("rss_hwm_mb_10k_leases", hwm[0])
	b.results.set("rss_hwm_mb_1m_leases", hwm[1])
	b.results.set("rss_small_ledger_leases", float64(small))
	b.results.set("rss_large_ledger_leases", float64(large))
	b.results.note("memory: VmRSS of `leaseguard run` (roles ingest,detectors,revoker,relay; embedded JetStream; defaults otherwise), median of the samples taken in the last third of %s, "+
		"after several detector passes and at least two resolver passes; peak (VmHWM) %.1f MB and %.1f MB; ledger at both sizes: %d leases due (users already gone), "+
		"%d without expiry (HMAC'd users), then 30%% revoked and the rest due in 1 h–30 d",
		b.opt.rssWindow, hwm[0], hwm[1], memoryDue, memoryUnresolved)
	return nil
}

// Leases of the memory scenario's ledger that give leaseguard work: the
// same number at every ledger size, so that only the size differs. Each
// load adds memoryDue due leases; the first adds memoryUnresolved leases
// whose expiry stays unknown.
const (
	memoryDue        = 100
	memoryUnresolved = 100
)

// loadLeases COPYs leases [from, to) into the ledger.
func (b *Bench) loadLeases(ctx context.Context, st *store.Store, from, to int) error {
	now := time.Now().UTC()
	db := target.DefaultName(b.opt.dbURL)
	prefix := b.rolePrefix()
	cols := []string{"lease_id", "state", "mount", "role", "database", "db_user", "db_user_hmac", "issued_at", "first_seen_at",
		"expire_at", "expire_source", "expire_checked_at", "expire_attempt_at", "revoked_at", "revoke_method",
		"last_event", "last_event_at", "last_request_id", "entity_id", "display_name", "remote_address"}
	i := from
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= to {
			return nil, nil
		}
		n := i
		i++
		role := []string{"readonly", "reporting", "app-rw", "etl"}[n%4]
		issued := now.Add(-time.Duration(n%86400) * time.Second)
		var (
			state                       = "active"
			user                    any = fmt.Sprintf("%s%s-%010d", prefix, role, n)
			hmac                        = false
			expire                  any = now.Add(time.Hour + time.Duration(n%(30*24*3600))*time.Second)
			source                  any = "pg_valid_until"
			checked                 any = now
			revoked, method, lastAt any
			last                    = "issued"
		)
		lastAt = issued
		switch {
		case n-from < memoryDue:
			// Due (each load adds its own: the previous ones are
			// expired by now); the user is already gone from the database.
			expire = now.Add(-time.Hour)
		case n < memoryDue+memoryUnresolved:
			// An untuned mount: the username is an HMAC and no role TTL is
			// configured, so the expiry stays unknown.
			user, hmac, expire, source, checked = fmt.Sprintf("hmac-sha256:%064x", n), true, nil, nil, nil
		case n%10 < 3:
			state, revoked, method, last = "revoked", issued.Add(30*time.Minute), "path", "revoked"
			lastAt = revoked
			expire = issued.Add(time.Hour)
		}
		return []any{
			fmt.Sprintf("postgres/creds/%s/%024d", role, n), state, "postgres", role, db, user, hmac, issued, issued,
			expire, source, checked, now, revoked, method,
			last, lastAt, fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n), "2f6e0c1a-bench", "approle", "10.20.30.40",
		}, nil
	})
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Conn().CopyFrom(ctx, pgx.Identifier{"leases"}, cols, src); err != nil {
		return fmt.Errorf("copy leases: %w", err)
	}
	_, err = conn.Exec(ctx, "ANALYZE leases")
	return err
}

// measureRSS runs leaseguard on the ledger for the window and returns the
// median VmRSS of the last third of the samples and the final VmHWM, in MB.
func (b *Bench) measureRSS(ctx context.Context, schema string, size int) (rss, hwm float64, err error) {
	dir, err := os.MkdirTemp("", "leaseguard-bench-memory-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	lg, err := b.startLeaseguard(ctx, map[string]string{
		"LEASEGUARD_DATABASE_SCHEMA": schema,
		"LEASEGUARD_NATS_URL":        "",
		"LEASEGUARD_DATA_DIR":        filepath.Join(dir, "data"),
	})
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if serr := lg.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	var samples []float64
	start := time.Now()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for time.Since(start) < b.opt.rssWindow {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-t.C:
		}
		r, _, err := lg.rss()
		if err != nil {
			return 0, 0, fmt.Errorf("read RSS: %w (leaseguard log: %s)", err, lg.lastLines())
		}
		samples = append(samples, r)
	}
	_, hwm, err = lg.rss()
	if err != nil {
		return 0, 0, err
	}
	rss = median(samples[len(samples)*2/3:])
	passes, _ := lg.metric(ctx, "leaseguard_detector_pass_seconds_count")
	revs, _ := lg.metric(ctx, "leaseguard_revocations_total")
	b.logf("memory: %s leases: RSS %.1f MB (peak %.1f MB) after %.0f detector passes and %.0f revocations in %s",
		thousands(int64(size)), rss, hwm, passes, revs, b.opt.rssWindow)
	return rss, hwm, nil
}
