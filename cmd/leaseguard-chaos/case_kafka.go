package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/pause"
)

// kfakeSubcommand runs this program as a Kafka broker (kfake with its data
// on disk), so that the suite can kill it and start it again.
const kfakeSubcommand = "kfake-broker"

const kafkaAuditTopic = "vault.audit"

// runKfakeBroker is the broker process: it serves until killed. With
// several ports it is a cluster of that many brokers.
func runKfakeBroker(args []string) int {
	fs := flag.NewFlagSet(kfakeSubcommand, flag.ContinueOnError)
	ports := fs.String("ports", "", "listen ports (loopback), one per broker, comma-separated")
	partitions := fs.Int("partitions", 4, "partitions of the audit topic")
	dir := fs.String("dir", "", "data directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var ps []int
	for _, p := range strings.Split(*ports, ",") {
		n, err := strconv.Atoi(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kfake: port:", err)
			return 2
		}
		ps = append(ps, n)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(len(ps)), kfake.Ports(ps...), kfake.DataDir(*dir), kfake.SyncWrites(),
		kfake.SeedTopics(int32(*partitions), kafkaAuditTopic), kfake.SeedTopics(1, "vault.leases", "leaseguard.deadletter"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "kfake broker ready on", c.ListenAddrs())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	c.Close()
	return 0
}

// broker is the Kafka broker process of a Kafka case: one broker or a
// cluster of several.
type broker struct {
	e          *caseEnv
	ports      []int
	partitions int
	proc       *proc
}

// newBroker picks n free ports for a broker process with partitions audit
// partitions; start starts it.
func newBroker(e *caseEnv, n, partitions int) (*broker, error) {
	b := &broker{e: e, partitions: partitions}
	for range n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		b.ports = append(b.ports, p)
	}
	return b, nil
}

// addr is the first broker's address; addrs every broker's, as
// LEASEGUARD_KAFKA_BROKERS takes them.
func (b *broker) addr() string { return loopback(b.ports[0]) }

func (b *broker) addrs() string {
	out := make([]string, len(b.ports))
	for i, p := range b.ports {
		out[i] = loopback(p)
	}
	return strings.Join(out, ",")
}

// start starts (or restarts) the broker on its ports and data directory.
func (b *broker) start() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports := make([]string, len(b.ports))
	for i, p := range b.ports {
		ports[i] = strconv.Itoa(p)
	}
	args := []string{kfakeSubcommand, "-ports", strings.Join(ports, ","), "-partitions", strconv.Itoa(b.partitions),
		"-dir", filepath.Join(b.e.dir, "kafka")}
	b.proc, err = startProc("kafka broker", self, args, nil, filepath.Join(b.e.dir, "kafka.log"), "kfake broker ready", 30*time.Second)
	return err
}

// produce writes audit entries to the audit topic as a shipper would,
// keyed by entry so that they spread over the partitions.
func (b *broker) produce(ctx context.Context, lines [][]byte) error {
	w := &kafka.Writer{Addr: kafka.TCP(strings.Split(b.addrs(), ",")...), Topic: kafkaAuditTopic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond, WriteTimeout: 10 * time.Second}
	defer w.Close()
	msgs := make([]kafka.Message, len(lines))
	for i, l := range lines {
		msgs[i] = kafka.Message{Key: []byte(strconv.Itoa(i)), Value: l}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return w.WriteMessages(ctx, msgs...)
}

// runKafka: the audit entries come from Kafka. The broker is killed once
// the first user is dropped; entries issued meanwhile wait at the shipper
// and are produced once the broker is back. Then a second leaseguard joins
// the consumer group and leaves it (two rebalances), entries arriving
// after each. Every user must be dropped within 10 s of the restore or
// rebalance that preceded its entries (or of its due time, if later).
func runKafka(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
	goal := resumeGoal
	b, err := newBroker(e, 1, 4)
	if err != nil {
		return Observation{}, goal, err
	}
	if err := b.start(); err != nil {
		return Observation{}, goal, err
	}
	e.closers = append(e.closers, func() { b.proc.kill() })
	e.extraEnv["LEASEGUARD_KAFKA_BROKERS"] = b.addr()
	if err := e.start(); err != nil {
		return Observation{}, goal, err
	}
	restores := map[string]time.Time{}
	faultAt, restored, err := e.kafkaBrokerKill(ctx, b, restores)
	if err != nil {
		return Observation{}, goal, err
	}
	if err := e.kafkaRebalance(ctx, b, restores); err != nil {
		return Observation{}, goal, err
	}
	obs, goal, err := e.settleAndObserve(ctx, faultAt, restored, goal)
	obs.Restores = restores
	return obs, goal, err
}

// kafkaBrokerKill runs the broker kill; restores gets the restart time of
// the users issued before and during it.
func (e *caseEnv) kafkaBrokerKill(ctx context.Context, b *broker, restores map[string]time.Time) (time.Time, time.Time, error) {
	n, d := e.h.opt.users, e.h.opt.fault
	first := time.Now().Add(2 * time.Second)
	lines, err := e.issue(ctx, n/2, first, first.Add(d))
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if err := b.produce(ctx, lines); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if err := e.waitFirstDrop(ctx, time.Minute); err != nil {
		return time.Time{}, time.Time{}, err
	}
	b.proc.kill()
	faultAt := time.Now()
	held, err := e.issue(ctx, n/4, time.Now(), time.Now().Add(d/2))
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if err := hold(ctx, time.Until(faultAt.Add(d))); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if err := b.start(); err != nil {
		return time.Time{}, time.Time{}, err
	}
	restored := time.Now()
	for u := range e.users {
		restores[u] = restored
	}
	return faultAt, restored, b.produce(ctx, held)
}

// kafkaRebalance starts a second leaseguard in the same consumer group,
// produces a batch, stops it (SIGTERM) and produces another.
func (e *caseEnv) kafkaRebalance(ctx context.Context, b *broker, restores map[string]time.Time) error {
	batch := max(1, e.h.opt.users/8)
	if _, err := e.startLeaseguard(1); err != nil {
		return err
	}
	if err := e.kafkaBatch(ctx, b, batch, restores, e.secondIngested); err != nil {
		return err
	}
	e.checkSecondConsumed(ctx)
	if err := e.procs[1].term(60 * time.Second); err != nil {
		return err
	}
	return e.kafkaBatch(ctx, b, batch, restores, nil)
}

// kafkaBatch issues n users, produces their entries in rebalanceParts
// parts and waits until every user is dropped. Until joined reports true
// (nil: at once), each part waits up to the group's session timeout for
// it: the group gives a newcomer partitions only once the member already
// in it heartbeats and joins again, seconds after the newcomer asked, and
// a batch produced at once is all read by the member already there.
func (e *caseEnv) kafkaBatch(ctx context.Context, b *broker, n int, restores map[string]time.Time, joined func(context.Context) bool) error {
	known := len(e.users)
	for left := n; left > 0; {
		part := min(left, max(1, n/rebalanceParts))
		left -= part
		at := time.Now()
		lines, err := e.issue(ctx, part, at.Add(time.Second), at.Add(3*time.Second))
		if err != nil {
			return err
		}
		for u := range e.users {
			if _, ok := restores[u]; !ok {
				restores[u] = at
			}
		}
		if err := b.produce(ctx, lines); err != nil {
			return err
		}
		if joined != nil && left > 0 {
			if in, _ := pause.Until(ctx, ingest.DefaultKafkaSessionTimeout, func() (bool, bool, error) {
				in := joined(ctx)
				return in, in, nil
			}); in {
				joined = nil
			}
		}
	}
	if err := e.waitDropped(ctx, known+n, settleTimeout); err != nil {
		return fmt.Errorf("after the rebalance: %w", err)
	}
	return nil
}

// rebalanceParts is how many parts a batch produced while the group
// spreads is cut into.
const rebalanceParts = 4

// secondIngested: the second leaseguard has taken entries from Kafka.
func (e *caseEnv) secondIngested(ctx context.Context) bool {
	n, err := e.secondKafkaEntries(ctx)
	return err == nil && n > 0
}

// secondKafkaEntries is how many entries the second leaseguard took from
// Kafka.
func (e *caseEnv) secondKafkaEntries(ctx context.Context) (int, error) {
	return scrapeSum(ctx, e.metricsURL(1)+"/metrics", "leaseguard_ingest_entries_total", `transport="kafka"`)
}

// checkSecondConsumed fails the case if the second leaseguard took no
// entry from Kafka while it was in the group: the rebalance gave it no
// partition, so it was not exercised.
func (e *caseEnv) checkSecondConsumed(ctx context.Context) {
	n, err := e.secondKafkaEntries(ctx)
	switch {
	case err != nil:
		e.extra = append(e.extra, "read the second leaseguard's metrics: "+err.Error())
	case n == 0:
		e.extra = append(e.extra, "the second leaseguard ingested nothing from Kafka: no partition came to it")
	default:
		e.note = fmt.Sprintf("the second leaseguard ingested %d entries from Kafka while in the group", n)
	}
}
