package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// clusterProcs is the number of leaseguard processes of the cluster case.
const clusterProcs = 3

// clusterGoal bounds the recovery from the kills of a burst of n users:
// the killed leaseguard's commands come back after the revoker's AckWait,
// as in two-nodes (killGoal; the killed node's streams elect a new leader
// within a few seconds, inside that wait); and the survivors still have
// the rest of the burst to drop, which is throughput, not waiting: 10 s
// per 1000 users (the SIGTERM case measured 1000 users in 7.3 s on two
// loaded cores).
func clusterGoal(n int) time.Duration {
	return killGoal + time.Duration(n)*10*time.Millisecond
}

// clusterSettle bounds the wait for the burst to settle: past the goal,
// so that a slow recovery is measured rather than cut off.
func clusterSettle(n int) time.Duration {
	return settleTimeout + time.Duration(n)*40*time.Millisecond
}

// runCluster: a three-node JetStream cluster (streams at three replicas)
// and three leaseguard processes sharing it and the state store. A burst
// of users falls due within 4 s; once some but not all are dropped,
// the node leading the revocation stream and the busiest leaseguard are
// killed (SIGKILL); the node is started again once the survivors have
// dropped more users on the two nodes left (or the fault time passed), and
// the killed leaseguard is not. Beyond every case's goals, the survivors
// must each have dropped users (their /metrics), the killed node must
// catch up, and every user must be dropped within clusterGoal of the kills.
func runCluster(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
	n := e.h.opt.clusterUsers
	goal := restartGoal(clusterGoal(n))
	e.settle = clusterSettle(n)
	e.extraEnv["LEASEGUARD_STREAM_REPLICAS"] = fmt.Sprint(clusterSize)
	idx := make([]int, clusterProcs)
	for i := range idx {
		idx[i] = i
		if _, err := e.startLeaseguard(i); err != nil {
			return Observation{}, goal, err
		}
	}
	scr := e.scrapeDrops(idx)
	defer scr.stop()
	late, err := e.burstAt(ctx, n)
	if err != nil {
		return Observation{}, goal, err
	}
	published := time.Now()
	// The leader is looked up before the wait: on a busy cluster the
	// lookup can take seconds, in which a fast burst would nearly finish.
	leader, err := e.streamLeader(ctx, revocationStream)
	if err != nil {
		return Observation{}, goal, err
	}
	// Some but not all: a tenth of the burst dropped.
	if err := e.waitDropped(ctx, max(1, n/10), 3*time.Minute); err != nil {
		return Observation{}, goal, err
	}
	k, err := e.killMidBurst(ctx, scr, n, leader)
	if err != nil {
		return Observation{}, goal, err
	}
	obs, goal, err := e.settleAndObserve(ctx, time.Time{}, k.at, goal)
	if err != nil {
		return obs, goal, err
	}
	k.span = burstSpan(obs, published)
	final := e.finalDrops(ctx, scr, k.victim)
	note, failures := sharedWork(final, k.countsAtKill, k.victim)
	e.note = k.describe() + "; " + note
	if late > 0 {
		e.note += fmt.Sprintf("; the burst was still being published %s after its first user fell due (a slow machine)", late.Round(100*time.Millisecond))
	}
	obs.Extra = append(obs.Extra, failures...)
	caught := <-k.caughtUp
	if strings.HasPrefix(caught, "restarted node:") {
		obs.Extra = append(obs.Extra, caught)
	}
	e.note += "; " + caught
	return obs, goal, nil
}

// clusterKill is what the cluster case did mid-burst.
type clusterKill struct {
	at           time.Time
	node         string
	victim       int
	droppedAt    int
	countsAtKill map[int]int
	// progress: drops by the survivors with one node down, before it was
	// restarted; restarted is how long after the kill that was.
	progress  int
	restarted time.Duration
	// span: from the burst's due time (or its publication, if later) to
	// its last dropped evidence.
	span time.Duration
	// caughtUp says when the restarted node's replica was current again
	// (or why not): a sentence, or one starting "restarted node:" on
	// failure.
	caughtUp chan string
}

func (k clusterKill) describe() string {
	return fmt.Sprintf("killed node %s (revocation stream leader) and leaseguard %d at %d dropped; %d more dropped on two nodes, node restarted %s after the kill; the last drop reached the stream %s after the burst was due and published",
		k.node, k.victim, k.droppedAt, k.progress, k.restarted.Round(10*time.Millisecond), k.span.Round(100*time.Millisecond))
}

// killMidBurst kills leader, the node that led the revocation stream as
// the burst began, and the busiest leaseguard, waits for the survivors to
// drop more users on the two nodes left (at most the fault time) and
// restarts the node.
func (e *caseEnv) killMidBurst(ctx context.Context, scr *dropsScraper, n int, leader string) (clusterKill, error) {
	k := clusterKill{node: leader}
	var err error
	k.countsAtKill = scr.counts()
	k.victim = busiest(k.countsAtKill)
	node := e.cluster.node(k.node)
	node.proc.kill()
	e.procs[k.victim].kill()
	k.at = time.Now()
	if k.droppedAt, err = e.droppedInOutbox(ctx); err != nil {
		return k, err
	}
	if k.droppedAt >= n {
		return k, fmt.Errorf("all %d users dropped before the kill: the burst was too small to be cut", n)
	}
	// Progress on two nodes (another tenth of the burst dropped), or the
	// fault time; either way the node comes back (a restart that never
	// came would be another case).
	if err := e.waitDropped(ctx, min(n, k.droppedAt+max(1, n/10)), e.fault); err != nil && ctx.Err() != nil {
		return k, err
	}
	now, err := e.droppedInOutbox(ctx)
	if err != nil {
		return k, err
	}
	k.progress = now - k.droppedAt
	k.restarted = time.Since(k.at)
	if err := e.startNode(node); err != nil {
		return k, err
	}
	k.caughtUp = make(chan string, 1)
	go func() {
		took, err := e.replicasCurrent(ctx, revocationStream, 2*time.Minute)
		if err != nil {
			k.caughtUp <- "restarted node: " + err.Error()
			return
		}
		k.caughtUp <- fmt.Sprintf("revocation stream's 3 replicas current %s after the restart", took.Round(10*time.Millisecond))
	}()
	return k, nil
}

// busiest is the process with the most drops (the lowest index on a tie).
func busiest(counts map[int]int) int {
	best := 0
	for _, i := range sortedInts(counts) {
		if counts[i] > counts[best] {
			best = i
		}
	}
	return best
}

// finalDrops stops the scraper and reads the survivors' counts once more.
func (e *caseEnv) finalDrops(ctx context.Context, scr *dropsScraper, victim int) map[int]int {
	scr.stop()
	out := scr.counts()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range clusterProcs {
		if i == victim {
			continue
		}
		if c, err := scrapeDropped(ctx, client, e.metricsURL(i)); err == nil {
			out[i] = c
		}
	}
	return out
}

// sharedWork describes how the drops were spread (each process's
// leaseguard_revocations_total{outcome="dropped"}; the killed one's at its
// last scrape) and fails when a survivor dropped none: the work was not
// shared.
func sharedWork(final, atKill map[int]int, victim int) (string, []string) {
	var parts, failures []string
	for i := range clusterProcs {
		if _, scraped := final[i]; !scraped && i == victim {
			parts = append(parts, fmt.Sprintf("lg%d ? (killed; no scrape answered before the kill)", i))
			continue
		}
		if i == victim {
			parts = append(parts, fmt.Sprintf("lg%d %d (killed; last scrape)", i, final[i]))
			continue
		}
		parts = append(parts, fmt.Sprintf("lg%d %d (%d after the kill)", i, final[i], final[i]-atKill[i]))
		if final[i] == 0 {
			failures = append(failures, fmt.Sprintf("leaseguard %d survived and dropped no user: the work was not shared", i))
		}
	}
	return "drops by process: " + strings.Join(parts, ", "), failures
}

func sortedInts(m map[int]int) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// burstAt issues n users that fall due, once they are all issued and
// published, as burstPlan says. It returns how late the publishing ended,
// 0 when in time.
func (e *caseEnv) burstAt(ctx context.Context, n int) (time.Duration, error) {
	first, last := burstPlan(time.Now(), n)
	if err := e.issueAndPublish(ctx, n, first, last); err != nil {
		return 0, err
	}
	return max(0, time.Since(first)), nil
}

// burstPlan says when a burst of n users planned at now falls due: the
// first leaves burstSetupPerUser per user for the issue and 2 s more, and
// the rest follow evenly over burstWindow.
//
// The users are created one by one, each with its VALID UNTIL: at 5 ms a
// user the full form's 5,000 were still being created half a minute after
// they fell due, so most fell due one by one as they were made. And all at
// one instant is too sharp: on a fast machine three processes dropped all
// 300 of the short form between two polls of the harness, before the kill.
// Spread over the window, the drops cannot outrun the due times, so the
// kill at a tenth dropped finds most of the burst still to come.
func burstPlan(now time.Time, n int) (first, last time.Time) {
	first = now.Add(2*time.Second + time.Duration(n)*burstSetupPerUser)
	return first, first.Add(burstWindow)
}

// burstWindow is the time over which a burst falls due.
const burstWindow = 4 * time.Second

// burstSetupPerUser is the time allowed per user to create and publish a
// burst before it falls due (about 11 ms a user measured on 2 cores).
const burstSetupPerUser = 20 * time.Millisecond

// burstSpan is the time from when the burst was due and published (the
// latest of its users' due times and published: leaseguard learns of them
// from their audit entries) to the last of their dropped evidence in the
// stream.
func burstSpan(obs Observation, published time.Time) time.Duration {
	due, last := published, time.Time{}
	for _, d := range obs.Users {
		if d.After(due) {
			due = d
		}
	}
	for _, r := range obs.Relayed {
		u, ok := strings.CutPrefix(r.Subject, obs.Target+"/")
		if _, mine := obs.Users[u]; ok && mine && r.Type == RevocationType && r.Outcome == obs.outcome() && r.At.After(last) {
			last = r.At
		}
	}
	if last.IsZero() {
		return 0
	}
	return last.Sub(due)
}
