package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var updateCLIDoc = flag.Bool("update-cli-doc", false, "rewrite docs/cli.md from the commands' help")

const cliDocPath = "../../docs/cli.md"

// TestCLIReferenceIsCurrent keeps docs/cli.md, the operator's command
// reference, equal to what `leaseguard help <command>` prints (regenerate
// with: go test ./cmd/leaseguard -run TestCLIReferenceIsCurrent -update-cli-doc).
func TestCLIReferenceIsCurrent(t *testing.T) {
	want := cliReference(t)
	if *updateCLIDoc {
		if err := os.WriteFile(cliDocPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(cliDocPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Error("docs/cli.md is stale: go test ./cmd/leaseguard -run TestCLIReferenceIsCurrent -update-cli-doc")
	}
}

func cliReference(t *testing.T) string {
	t.Helper()
	root := NewMain(strings.NewReader(""), io.Discard, io.Discard).root()
	var b strings.Builder
	b.WriteString("# Command reference\n\n" +
		"Generated from `leaseguard help <command>` (regenerate: `go test ./cmd/leaseguard -run TestCLIReferenceIsCurrent -update-cli-doc`).\n" +
		"Flags may come before or after arguments; `-o json` prints JSON on every command that reads.\n" +
		"Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration, 4 not clean (the command ran, its result is not what was asked).\n")
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c != root && (!c.IsAvailableCommand() || c.Name() == "help") {
			return
		}
		var help bytes.Buffer
		c.SetOut(&help)
		c.InitDefaultHelpFlag()
		c.InitDefaultVersionFlag()
		if err := c.Help(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\n## %s\n\n```text\n%s```\n", c.CommandPath(), help.String())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return b.String()
}
