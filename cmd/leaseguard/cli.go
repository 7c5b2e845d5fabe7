package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitConfig   = 3
	exitNotClean = 4 // a command ran but its result is not what was asked (e.g. a user not gone)
)

// usageError marks bad arguments (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, m *Main, args []string) error
}

// Main is the leaseguard program with its standard streams and environment
// injected, so tests can run it in-process.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	cmds   map[string]command
}

// NewMain builds the program.
func NewMain(stdin io.Reader, stdout, stderr io.Writer) *Main {
	m := &Main{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	m.cmds = map[string]command{
		"run":      {"run the pipeline: ingest, detectors, revoker, evidence relay", runCmd},
		"migrate":  {"apply the state-store migrations and exit", migrateCmd},
		"replay":   {"feed Vault file-audit logs through the decoder into the ledger", replayCmd},
		"config":   {"print the effective configuration (secrets redacted) and exit", configCmd},
		"version":  {"print the version", versionCmd},
		"evidence": {"evidence tools: verify", evidenceCmd},
		"demo":     {"play a small Vault workload on local PostgreSQL and embedded NATS", demoCmd},
		"revoke":   {"drop the database users of a lease, user, prefix, entity or token now (operator, break-glass)", revokeCmd},
		"approve":  {"approve a pending revocation (rule mode approve) and drop its user; --list shows them", approveCmd},
		"reject":   {"reject a pending revocation (rule mode approve): nothing is dropped", rejectCmd},
		"keys":     {"show the command signing key's id and public key; --generate makes a new one (rotation)", keysCmd},
		"scope":    {"show or change the enforcement policy (scope and rule modes): show, expand, rollback", scopeCmd},
		"pilot":    {"pilot report: what the rules would have dropped or terminated outside the scope", pilotCmd},
	}
	return m
}

// Run executes the subcommand in args and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		m.usage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := m.cmds[args[0]]
	if !ok {
		fmt.Fprintf(m.Stderr, "leaseguard: unknown command %q\n\n", args[0])
		m.usage()
		return exitUsage
	}
	err := c.run(ctx, m, args[1:])
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(m.Stderr, "leaseguard %s: %v\n", args[0], err)
	var ue usageError
	var ce configError
	var ee exitError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ce):
		return exitConfig
	case errors.As(err, &ee):
		return ee.code
	}
	return exitFailure
}

func (m *Main) usage() {
	names := make([]string, 0, len(m.cmds))
	for n := range m.cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: leaseguard <command> [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-9s %s\n", n, m.cmds[n].summary)
	}
	b.WriteString("\nConfiguration is read from LEASEGUARD_* environment variables; see the README.\n")
	fmt.Fprint(m.Stderr, b.String())
}

// flags returns a FlagSet that writes its usage to stderr.
func (m *Main) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "usage: leaseguard %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

func versionCmd(_ context.Context, m *Main, _ []string) error {
	fmt.Fprintln(m.Stdout, "leaseguard", version)
	return nil
}
