package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// outputFormat is the value of --output/-o: table (for people) or json
// (for scripts). A bad value fails flag parsing, so it is a usage error
// naming the allowed values.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "table|json" }

func (o *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case outputTable, outputJSON:
		*o = outputFormat(s)
		return nil
	}
	return fmt.Errorf("want table or json")
}

// outputFlag adds --output/-o (default table) to cmd; usage says what json
// prints when that is more than the table as JSON.
func outputFlag(cmd *cobra.Command, o *outputFormat, usage string) {
	*o = outputTable
	if usage == "" {
		usage = "table, or json"
	}
	cmd.Flags().VarP(o, "output", "o", usage)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]cobra.Completion{string(outputTable), string(outputJSON)}, cobra.ShellCompDirectiveNoFileComp))
}

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
