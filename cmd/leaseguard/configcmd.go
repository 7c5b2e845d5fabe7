package main

import "github.com/spf13/cobra"

// configOptions are config's flags.
type configOptions struct {
	markdown bool
	output   outputFormat
}

func (m *Main) configCommand() *cobra.Command {
	var o configOptions
	cmd := &cobra.Command{
		Use:   "config",
		Short: "print the effective configuration (secrets redacted) and exit",
		Long: "Config reads the LEASEGUARD_* environment as run would, checks it, and prints the effective\n" +
			"setting with its source (env, default or unset) and secrets redacted (exit 3 on an invalid setting). --markdown prints the table of\n" +
			"every variable, its default and meaning instead.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return configCmd(cmd.Context(), m, o) },
	}
	cmd.Flags().BoolVar(&o.markdown, "markdown", false, "print the table of every variable, its default and meaning (as in docs/configuration.md)")
	outputFlag(cmd, &o.output, "table, or json: [{name, value, source}]")
	return cmd
}
