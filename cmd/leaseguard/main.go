// Command leaseguard tracks Vault dynamic database credentials from Vault's
// audit stream, detects leases that outlive their lease, drops their
// database users, and emits evidence. See the README.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain(os.Stdin, os.Stdout, os.Stderr)
	os.Exit(m.Run(ctx, os.Args[1:]))
}
