package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// leaseguardApps are the application_names of the connections of a
// leaseguard child: its state store (the harness names it) and its target
// pools (leaseguard names them).
var leaseguardApps = []string{"leaseguard-bench-child", "leaseguard"}

// cpuReading is the CPU seconds, so far, of a leaseguard child and of each
// PostgreSQL backend serving it.
type cpuReading struct {
	at    time.Time
	child float64
	pg    map[int]float64
}

// cpuUse is the CPU used over a phase: by the leaseguard process, and by
// the PostgreSQL backends of its connections (state store and target: the
// same server here).
type cpuUse struct {
	child, pg, wall float64
}

func (u cpuUse) String() string {
	return fmt.Sprintf("leaseguard %.2f CPU-s, its PostgreSQL backends %.2f CPU-s, over %.1f s", u.child, u.pg, u.wall)
}

// expiryCPU is what one expiry run used: ingest of its audit entries
// (through the expiry resolver) and the revocations, with the lock waits
// seen meanwhile.
type expiryCPU struct {
	ingest      cpuUse
	entries     int
	revoke      cpuUse
	revocations int
	waits       waitStats
}

// readLeaseguardCPU reads the child's CPU and that of its backends.
func (b *Bench) readLeaseguardCPU(pid int) cpuReading {
	r := cpuReading{at: time.Now(), pg: map[int]float64{}}
	r.child, _ = procCPU(fmt.Sprintf("/proc/%d/stat", pid))
	for _, p := range b.backendsOf(leaseguardApps) {
		r.pg[p], _ = procCPU(fmt.Sprintf("/proc/%d/stat", p))
	}
	return r
}

// leaseguardCPUSince is the CPU used since r. A backend that appeared
// meanwhile counts from its start; one that ended meanwhile is lost (the
// pools keep theirs open).
func (b *Bench) leaseguardCPUSince(pid int, r cpuReading) cpuUse {
	now := b.readLeaseguardCPU(pid)
	u := cpuUse{child: now.child - r.child, wall: now.at.Sub(r.at).Seconds()}
	for p, cpu := range now.pg {
		u.pg += cpu - r.pg[p]
	}
	return u
}

// backendsOf returns the pids of the backends of these application names.
func (b *Bench) backendsOf(apps []string) []int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := b.admin.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1)", apps)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	return out
}

// waitStats sums pg_stat_activity samples of leaseguard's backends: how
// many were running a statement, and how many of those were waiting on a
// heavyweight lock or on an LWLock (where a shared state store saturates).
type waitStats struct {
	samples             int
	active, lock, light int
}

func (w waitStats) String() string {
	if w.samples == 0 {
		return "no pg_stat_activity samples"
	}
	s := float64(w.samples)
	return fmt.Sprintf("pg_stat_activity, %d samples: %.2f of leaseguard's backends active, %.2f waiting on a lock, %.2f on an LWLock (means)",
		w.samples, float64(w.active)/s, float64(w.lock)/s, float64(w.light)/s)
}

// waitSampler samples until stopped.
type waitSampler struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stats  waitStats
}

func (s *waitSampler) stop() waitStats {
	s.cancel()
	s.wg.Wait()
	return s.stats
}

// sampleWaits samples leaseguard's backends every interval on a
// connection of its own until stop.
func (b *Bench) sampleWaits(ctx context.Context, every time.Duration) *waitSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &waitSampler{cancel: cancel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			var a, l, lw int
			qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
			err := b.admin.QueryRow(qctx, `SELECT count(*) FILTER (WHERE state = 'active'),
				count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'),
				count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'LWLock')
				FROM pg_stat_activity WHERE application_name = ANY($1)`, leaseguardApps).Scan(&a, &l, &lw)
			qcancel()
			if err == nil {
				s.stats.samples++
				s.stats.active, s.stats.lock, s.stats.light = s.stats.active+a, s.stats.lock+l, s.stats.light+lw
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// recordCPU records a case's CPU figures: CPU-seconds per 1,000 audit
// entries ingested and per 100 revocations, of the leaseguard process and
// of its PostgreSQL backends, medians over the runs.
func (b *Bench) recordCPU(c expiryCase, runs []expiryCPU) {
	var perK, perKPG, per100, per100PG, waitLock, active []float64
	for _, u := range runs {
		if u.entries > 0 {
			perK = append(perK, u.ingest.child/float64(u.entries)*1000)
			perKPG = append(perKPG, u.ingest.pg/float64(u.entries)*1000)
		}
		if u.revocations > 0 {
			per100 = append(per100, u.revoke.child/float64(u.revocations)*100)
			per100PG = append(per100PG, u.revoke.pg/float64(u.revocations)*100)
		}
		if u.waits.samples > 0 {
			waitLock = append(waitLock, float64(u.waits.lock+u.waits.light)/float64(u.waits.samples))
			active = append(active, float64(u.waits.active)/float64(u.waits.samples))
		}
	}
	b.results.add(row{figure: fmt.Sprintf("  CPU-s per 1,000 entries / per 100 revocations (%d leases, %s)", c.n, c.mode),
		value: median(perK), baseline: nanF, unit: fmt.Sprintf("/ %.3f CPU-s (PostgreSQL: %.3f / %.3f)", median(per100), median(perKPG), median(per100PG))})
	b.results.set("cpu_seconds_per_1k_entries"+c.key, median(perK))
	b.results.set("cpu_seconds_per_100_revocations"+c.key, median(per100))
	b.results.set("pg_cpu_seconds_per_1k_entries"+c.key, median(perKPG))
	b.results.set("pg_cpu_seconds_per_100_revocations"+c.key, median(per100PG))
	b.results.set("revoke_backends_active"+c.key, median(active))
	b.results.set("revoke_backends_waiting_on_locks"+c.key, median(waitLock))
}
