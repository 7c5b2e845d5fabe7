package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pause"
)

// The Kafka group case: a cluster of three brokers, a six-partition audit
// topic, three leaseguard processes in one consumer group.
const (
	groupBrokers    = 3
	groupPartitions = 6
	groupProcs      = 3
	// groupSession is LEASEGUARD_KAFKA_SESSION_TIMEOUT of the case: the
	// brokers' smallest (group.min.session.timeout.ms).
	groupSession = 6 * time.Second
	// groupChunks is how many parts the load is produced in; the kill
	// comes after the part in which every process has ingested.
	groupChunks = 10
)

// runKafkaGroup: three leaseguard processes consume the audit topic of a
// three-broker cluster as one group; once each has ingested entries, one
// is killed (SIGKILL, no goodbye to the group) while entries keep coming.
// Its partitions must go to the others once its session times out, every
// entry must be applied once (counted by a trigger on the ledger), every
// lease be in the ledger, and every user dropped once, within a kill -9's
// goal of the kill.
func runKafkaGroup(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
	goal := restartGoal(killGoal)
	b, err := newBroker(e, groupBrokers, groupPartitions)
	if err != nil {
		return Observation{}, goal, err
	}
	if err := b.start(); err != nil {
		return Observation{}, goal, err
	}
	e.closers = append(e.closers, func() { b.proc.kill() })
	e.extraEnv["LEASEGUARD_KAFKA_BROKERS"] = b.addrs()
	e.extraEnv["LEASEGUARD_KAFKA_SESSION_TIMEOUT"] = groupSession.String()
	if err := e.start(); err != nil {
		return Observation{}, goal, err
	}
	if err := e.installApplyLog(ctx); err != nil {
		return Observation{}, goal, err
	}
	for i := 1; i < groupProcs; i++ {
		if _, err := e.startLeaseguard(i); err != nil {
			return Observation{}, goal, err
		}
	}
	killedAt, err := e.groupLoadAndKill(ctx, b, 1)
	if err != nil {
		return Observation{}, goal, err
	}
	if err := e.waitApplied(ctx, len(e.users), settleTimeout); err != nil {
		e.extra = append(e.extra, err.Error())
	}
	e.checkGroupLedger(ctx, killedAt)
	return e.settleAndObserve(ctx, time.Time{}, killedAt, goal)
}

// groupLoadAndKill produces the users' entries in parts; after the first
// part in which every process has ingested from Kafka it kills leaseguard
// victim, and it produces the rest. It returns the time of the kill.
func (e *caseEnv) groupLoadAndKill(ctx context.Context, b *broker, victim int) (time.Time, error) {
	per := max(1, e.h.opt.users/groupChunks)
	var killedAt time.Time
	for c := range groupChunks {
		now := time.Now()
		lines, err := e.issue(ctx, per, now.Add(time.Second), now.Add(3*time.Second))
		if err != nil {
			return killedAt, err
		}
		if err := b.produce(ctx, lines); err != nil {
			return killedAt, err
		}
		if !killedAt.IsZero() {
			continue
		}
		if c == groupChunks-1 {
			return killedAt, errors.New("the load ended before every process had ingested from Kafka: the group never spread")
		}
		// The group spreads once all three members have joined and a
		// rebalance assigned them partitions, which may take a session
		// timeout; a small load is produced faster than that, so each
		// part before the kill waits a while for every process to ingest.
		counts, _ := pause.Until(ctx, groupSession/2, func() ([]int, bool, error) {
			c, ok := e.ingestedPerProcess(ctx)
			return c, ok, nil
		})
		if ok := spread(counts); ok {
			e.procs[victim].kill()
			killedAt = time.Now()
			e.note = fmt.Sprintf("leaseguard %d killed after part %d of %d of the load (ingested per process: %v)", victim, c+1, groupChunks, counts)
		}
	}
	return killedAt, nil
}

// spread: every process took some entries from Kafka.
func spread(counts []int) bool {
	for _, n := range counts {
		if n == 0 {
			return false
		}
	}
	return len(counts) > 0
}

// ingestedPerProcess returns how many entries each leaseguard took from
// Kafka, and whether each took some: the group gave each partitions.
func (e *caseEnv) ingestedPerProcess(ctx context.Context) ([]int, bool) {
	counts := make([]int, groupProcs)
	ok := true
	for i := range groupProcs {
		n, err := scrapeSum(ctx, e.metricsURL(i)+"/metrics", "leaseguard_ingest_entries_total", `transport="kafka"`)
		counts[i] = int(n)
		ok = ok && err == nil && n > 0
	}
	return counts, ok
}

// applyLog is the table the trigger logs each lease event insert to.
func (e *caseEnv) applyLog() string { return pgx.Identifier{e.schema, "chaos_apply_log"}.Sanitize() }

// installApplyLog adds a trigger on the ledger's lease_events that logs
// every row inserted: each application of an entry, counted by the
// database rather than by leaseguard.
func (e *caseEnv) installApplyLog(ctx context.Context) error {
	fn := pgx.Identifier{e.schema, "chaos_log_apply"}.Sanitize()
	q := `CREATE TABLE ` + e.applyLog() + ` (lease_id text, kind text NOT NULL);
CREATE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO ` + e.applyLog() + ` VALUES (NEW.lease_id, NEW.kind);
	RETURN NEW;
END $$;
CREATE TRIGGER chaos_log_apply AFTER INSERT ON ` + pgx.Identifier{e.schema, "lease_events"}.Sanitize() +
		` FOR EACH ROW EXECUTE FUNCTION ` + fn + `();`
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := e.h.admin.Exec(ctx, q)
	return err
}

// waitApplied waits until the trigger logged n applications.
func (e *caseEnv) waitApplied(ctx context.Context, n int, timeout time.Duration) error {
	return poll(ctx, fmt.Sprintf("%d issues applied", n), timeout, func(ctx context.Context) (bool, string, error) {
		var got int
		err := e.h.admin.QueryRow(ctx, "SELECT count(*) FROM "+e.applyLog()).Scan(&got)
		return got >= n, fmt.Sprintf("%d applied", got), err
	})
}

// checkGroupLedger adds a failure for each entry applied twice or not at
// all, and for a partition no survivor took after the kill; the note gets
// how long the takeover took.
func (e *caseEnv) checkGroupLedger(ctx context.Context, killedAt time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var logged, distinct, leases int
	q := "SELECT (SELECT count(*) FROM " + e.applyLog() + "), (SELECT count(DISTINCT (lease_id, kind)) FROM " + e.applyLog() + "), " +
		"(SELECT count(*) FROM " + pgx.Identifier{e.schema, "leases"}.Sanitize() + ")"
	if err := e.h.admin.QueryRow(ctx, q).Scan(&logged, &distinct, &leases); err != nil {
		e.extra = append(e.extra, "read the ledger: "+err.Error())
		return
	}
	if n := len(e.users); logged != n || distinct != n || leases != n {
		e.extra = append(e.extra, fmt.Sprintf("ledger: %d applications (%d distinct), %d leases; want %d each (one issue per user)",
			logged, distinct, leases, n))
	}
	firsts, err := e.partitionsAfter(ctx, killedAt)
	if err != nil {
		e.extra = append(e.extra, "read the partitions: "+err.Error())
		return
	}
	var took time.Duration
	var missing []string
	for p := range groupPartitions {
		at, ok := firsts[p]
		if !ok {
			missing = append(missing, fmt.Sprint(p))
			continue
		}
		took = max(took, at.Sub(killedAt))
	}
	if len(missing) > 0 {
		e.extra = append(e.extra, "no entry of partitions "+strings.Join(missing, ",")+" applied after the kill: not taken over")
	}
	if limit := groupSession + 10*time.Second; took > limit {
		e.extra = append(e.extra, fmt.Sprintf("the killed process's partitions were taken over %s after the kill; want within %s", took.Round(100*time.Millisecond), limit))
	}
	e.note += fmt.Sprintf("; every partition applied from again %s after the kill (session timeout %s); %d entries applied once each",
		took.Round(100*time.Millisecond), groupSession, logged)
}

// partitionsAfter returns, per audit partition, when the first lease event
// from it was applied after t (the transaction's start).
func (e *caseEnv) partitionsAfter(ctx context.Context, t time.Time) (map[int]time.Time, error) {
	rows, err := e.h.admin.Query(ctx, "SELECT coalesce((source->>'partition')::int, 0), min(received_at) FROM "+
		pgx.Identifier{e.schema, "lease_events"}.Sanitize()+" WHERE received_at > $1 GROUP BY 1", t)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]time.Time{}
	for rows.Next() {
		var p int
		var at time.Time
		if err := rows.Scan(&p, &at); err != nil {
			return nil, err
		}
		out[p] = at
	}
	return out, rows.Err()
}
