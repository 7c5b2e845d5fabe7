// Command leaseguard-chaos puts real leaseguard processes through the faults
// of their dependencies and checks that no work is lost, doubled or stuck:
// the state store blackholed and reset, the NATS server killed, the target
// database blackholed, SIGTERM and kill -9 in the middle of a burst, two
// processes sharing one JetStream, three processes on a three-node
// JetStream cluster losing a server and a process, a Kafka broker killed and a consumer
// group rebalanced, the socket audit source's writer reconnecting, the
// observer's target down, and the Alertmanager sink down. Each case prints
// its figures; a table and the goals follow at the end, and the exit status
// is 1 if any goal was missed. See docs/reliability.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == kfakeSubcommand {
		os.Exit(runKfakeBroker(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Once interrupted, cleanup runs; a second interrupt ends the process.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// run parses the flags, runs the selected cases and prints the table.
func run(ctx context.Context, args []string) int {
	opt, err := parseOptions(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	h, err := newHarness(ctx, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leaseguard-chaos:", err)
		return 1
	}
	defer h.close()
	var all []Figures
	for _, c := range selectCases(opt) {
		if ctx.Err() != nil {
			break
		}
		all = append(all, h.runCase(ctx, c))
	}
	printTable(os.Stdout, all, opt)
	for _, f := range all {
		if !f.OK() {
			return 1
		}
	}
	if len(all) == 0 {
		return 1
	}
	return 0
}
