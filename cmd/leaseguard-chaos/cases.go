package main

import (
	"context"
	"time"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
)

// Case is one fault scenario.
type Case struct {
	Name string
	What string
	// FullOnly cases run only in the full form.
	FullOnly bool
	// Cluster cases run on a three-node JetStream cluster, not one
	// nats-server behind a proxy.
	Cluster bool
	Run     func(ctx context.Context, e *caseEnv) (Observation, Goal, error)
}

// cases is every case, in the order they run.
func cases() []Case {
	return []Case{
		{Name: "store-blackhole-ingest", What: "state store blackholed while audit entries arrive, then restored",
			Run: func(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
				return e.runDuringIngest(ctx, proxyFault(e.state, faultproxy.Blackhole), resumeGoal)
			}},
		{Name: "store-blackhole-drops", What: "state store blackholed while users are being dropped, then restored",
			Run: func(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
				return e.runDuringDrops(ctx, proxyFault(e.state, faultproxy.Blackhole), resumeGoal)
			}},
		{Name: "store-reset", What: "state store connections reset (and refused) while users are being dropped",
			Run: func(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
				return e.runDuringDrops(ctx, proxyFault(e.state, faultproxy.Reset), resumeGoal)
			}},
		{Name: "nats-kill", What: "the NATS server killed (SIGKILL) while users are being dropped, started again",
			Run: func(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
				return e.runDuringDrops(ctx, e.natsKill(), resumeGoal)
			}},
		{Name: "nats-blackhole", What: "NATS blackholed while users are being dropped, then restored", FullOnly: true,
			Run: func(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
				return e.runDuringDrops(ctx, proxyFault(e.natsProxy, faultproxy.Blackhole), resumeGoal)
			}},
		{Name: "target-blackhole", What: "the target database blackholed while users are being dropped, then restored",
			Run: func(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
				return e.runDuringDrops(ctx, proxyFault(e.target, faultproxy.Blackhole), resumeGoal)
			}},
		{Name: "sigterm", What: "SIGTERM during a burst of drops, restarted at once", Run: runSigterm},
		{Name: "kill9", What: "kill -9 during a burst of drops, restarted at once", Run: runKill9},
		{Name: "two-nodes", What: "two processes sharing one JetStream and state store (same signing key), one killed", Run: runTwoNodes},
		{Name: "cluster", What: "three processes on a three-node JetStream cluster (3 replicas); a node and a process killed mid-burst, the node restarted",
			Cluster: true, Run: runCluster},
		{Name: "kafka", What: "Kafka audit source: broker killed and restarted, consumer group rebalanced", Run: runKafka},
		{Name: "kafka-group", What: "Kafka audit source: three brokers, six partitions, three leaseguard processes in one group, one killed (SIGKILL) mid-load",
			Run: runKafkaGroup},
		{Name: "socket", What: "socket audit source: the Vault side disconnects and reconnects", Run: runSocket},
		{Name: "observer", What: "observer: target blackholed while ghost sessions appear, then back", Run: runObserver},
		{Name: "alerts", What: "Alertmanager blackholed while alerts are raised, then back", Run: runAlerts},
	}
}

// selectCases picks the cases of the form and the -run pattern.
func selectCases(o options) []Case {
	var out []Case
	for _, c := range cases() {
		if (c.FullOnly && o.short) || !o.run.MatchString(c.Name) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// restartGoal: every due user dropped within d of the restart.
func restartGoal(d time.Duration) Goal { return Goal{Recovery: d, HeldBack: true} }
