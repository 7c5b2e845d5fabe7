package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
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

// errUsageShown: the usage was printed instead of an error message (exit 2).
var errUsageShown = errors.New("usage shown")

// Main is the leaseguard program with its standard streams and environment
// injected, so tests can run it in-process.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// NewMain builds the program.
func NewMain(stdin io.Reader, stdout, stderr io.Writer) *Main {
	return &Main{Stdin: stdin, Stdout: stdout, Stderr: stderr}
}

// Run executes the command in args and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if args == nil {
		args = []string{} // nil makes cobra read os.Args
	}
	root := m.root()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return m.report(cmd, err)
}

// root builds the command tree, afresh for every run: each command binds
// its flags to variables of its own.
func (m *Main) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "leaseguard",
		Short: "revoke Vault database credentials that outlive their lease",
		Long: "leaseguard tracks Vault dynamic database credentials from Vault's audit stream, drops the\n" +
			"database users of leases that outlive their lease, and records evidence.\n\n" +
			"Configuration is read from LEASEGUARD_* environment variables (leaseguard config --markdown\n" +
			"lists them). Flags may come before or after arguments.",
		Version:       currentBuild().Version,
		Args:          unknownCommand(""),
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return m.showUsage(cmd)
		},
	}
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	root.SuggestionsMinimumDistance = 1 // 2 suggests "scope" for "nope"
	root.SetVersionTemplate(versionText(currentBuild()))
	root.SetFlagErrorFunc(flagError)
	root.SetHelpCommand(helpCommand())
	root.Flags().BoolP("version", "v", false, "print the version, commit and build date")
	// A group (root, evidence, pilot, completion) runs only to say what is
	// missing: its usage shows its commands, not a bare "[flags]" line.
	root.Annotations = map[string]string{groupAnnotation: "true"}
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}",
		`{{if and .Runnable (not (index .Annotations "`+groupAnnotation+`"))}}`, 1))
	root.AddCommand(m.runCommand(), m.migrateCommand(), m.replayCommand(), m.configCommand(), m.versionCommand(),
		m.evidenceCommand(), m.demoCommand(), m.revokeCommand(), m.approveCommand(), m.rejectCommand(),
		m.keysCommand(), m.scopeCommand(), m.pilotCommand())
	root.InitDefaultCompletionCmd()
	completion, _, _ := root.Find([]string{"completion"})
	completion.Short = "print the shell completion script: bash, zsh, fish or powershell"
	asGroup(completion, "bash, zsh, fish or powershell")
	return root
}

// report prints err as one line naming the command (and, for a usage
// error, where help is) and returns the exit code.
func (m *Main) report(cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errUsageShown) {
		return exitUsage
	}
	fmt.Fprintf(m.Stderr, "%s: %v\n", cmd.CommandPath(), err)
	code := exitCode(err)
	if code == exitUsage {
		if cmd.Name() == "help" && cmd.Parent() == cmd.Root() {
			cmd = cmd.Root()
		}
		fmt.Fprintf(m.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

func exitCode(err error) int {
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

// showUsage prints cmd's help on stderr: it was called without what it
// needs (exit 2).
func (m *Main) showUsage(cmd *cobra.Command) error {
	cmd.SetOut(m.Stderr)
	if err := cmd.Help(); err != nil {
		return err
	}
	return errUsageShown
}

// helpCommand is `help [command]`: that command's help, or a usage error
// for a command that does not exist (cobra's own prints the top-level
// usage and exits 0).
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usageError{fmt.Sprintf("unknown command %q", strings.Join(args, " "))}
			}
			// As cobra's own help: show the flags cobra adds at execution.
			target.InitDefaultHelpFlag()
			target.InitDefaultVersionFlag()
			return target.Help()
		},
		ValidArgsFunction: func(c *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
			target, _, _ := c.Root().Find(args)
			var names []cobra.Completion
			for _, sub := range target.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), prefix) {
					names = append(names, sub.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
}

const groupAnnotation = "group"

// asGroup makes cmd a group of subcommands: run alone it is a usage error
// naming them (want), as is an unknown subcommand.
func asGroup(cmd *cobra.Command, want string) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[groupAnnotation] = "true"
	cmd.Args = unknownCommand(want)
	cmd.RunE = func(*cobra.Command, []string) error {
		return usageError{"missing command: want " + want}
	}
}

// unknownCommand is the Args check of a command with subcommands: any
// argument left is a command that does not exist. want lists the
// subcommands; empty suggests the closest names instead.
func unknownCommand(want string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q", args[0])
		if want != "" {
			return usageError{msg + ": want " + want}
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf("; did you mean %q?", s[0])
		}
		return usageError{msg}
	}
}

// flagError makes a flag parsing error a usage error. A long flag written
// with one dash (the old CLI's -dry-run) gets the spelling that works.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if _, arg, ok := strings.Cut(msg, "unknown shorthand flag: "); ok {
		if _, word, ok := strings.Cut(arg, " in -"); ok {
			name, _, _ := strings.Cut(word, "=")
			if cmd.Flags().Lookup(name) != nil {
				msg += fmt.Sprintf(" (did you mean --%s?)", word)
			}
		}
	}
	return usageError{msg}
}

// noArgs is the Args check of a command that takes only flags.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", args[0])}
	}
	return nil
}

// maxOneArg is the Args check of a command that takes at most one argument.
func maxOneArg(_ *cobra.Command, args []string) error {
	if len(args) > 1 {
		return usageError{fmt.Sprintf("unexpected argument %q", args[1])}
	}
	return nil
}
