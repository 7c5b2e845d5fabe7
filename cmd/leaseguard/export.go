package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/evidence/export"
	"github.com/leaseguard/leaseguard/rollout"
)

// exportOptions are evidence export's flags.
type exportOptions struct {
	file, since, until string
	fromSeq            int64
	class, noVerify    bool
	out, format        string
}

func (m *Main) evidenceExportCommand() *cobra.Command {
	var o exportOptions
	cmd := &cobra.Command{
		Use:   "export [--file FILE|-] [--class --out DIR] [flags]",
		Short: "export the evidence as plain OCSF (JSONL or Parquet), for a SIEM or AWS Security Lake",
		Long: "Export writes the evidence as plain OCSF 1.8.0: each event's data without its CloudEvents envelope, the\n" +
			"envelope and the chain kept under unmapped.chain (docs/siem/README.md). It reads the outbox of the state\n" +
			"store, or with --file a file of CloudEvents (one per line, - for stdin), and verifies the chain first:\n" +
			"a broken chain exports nothing and exits 4 (--no-verify exports anyway). Without --out, JSONL goes to\n" +
			"stdout; with --out DIR, to DIR/evidence.jsonl, or with --class to one file per OCSF class\n" +
			"(account_change, detection_finding, entity_management); --format parquet writes Parquet files instead.",
		Example: "  leaseguard evidence export --since 24h > evidence.ocsf.jsonl\n" +
			"  leaseguard evidence export --file siem-export.jsonl --class --out ./lake --format parquet",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return evidenceExport(cmd.Context(), m, o, cmd.Flags().Changed("from-seq"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.file, "file", "", "export a file of CloudEvents (one JSON event per line, - for stdin) instead of the outbox")
	f.StringVar(&o.since, "since", "", "only events at or after: a duration back from --until or now (24h, 7d), or an RFC 3339 time")
	f.StringVar(&o.until, "until", "", "only events before this RFC 3339 time")
	f.Int64Var(&o.fromSeq, "from-seq", 0, "only events from this chain position on")
	f.BoolVar(&o.class, "class", false, "one file per OCSF class (needs --out)")
	f.StringVar(&o.out, "out", "", "write files to this directory (created if missing) instead of JSONL to stdout")
	f.StringVar(&o.format, "format", "jsonl", "jsonl, or parquet (needs --out)")
	f.BoolVar(&o.noVerify, "no-verify", false, "export even if the chain does not verify")
	return cmd
}

func evidenceExport(ctx context.Context, m *Main, o exportOptions, seqSet bool) error {
	filter, err := exportFilter(o, seqSet, time.Now())
	if err != nil {
		return err
	}
	opts, err := exportWriterOptions(o, m.Stdout)
	if err != nil {
		return err
	}
	w, err := export.New(opts)
	if err != nil {
		return err
	}
	n := 0
	emit := func(x evidence.Exported) error { n++; return w.Write(x) }
	rep, err := runExport(ctx, m.Stdin, o, filter, emit)
	if err == nil && !o.noVerify && !rep.OK() {
		err = exitError{code: exitNotClean, err: fmt.Errorf("evidence chain broken, nothing exported: %s", rep.FirstBreak)}
	}
	if err != nil {
		w.Abort()
		return err
	}
	files, err := w.Close()
	if err != nil {
		return err
	}
	summary := m.Stderr
	if o.out != "" {
		summary = m.Stdout
	}
	return printExport(summary, rep, o.noVerify, n, files)
}

func exportFilter(o exportOptions, seqSet bool, now time.Time) (evidence.ExportFilter, error) {
	var f evidence.ExportFilter
	if seqSet && o.fromSeq < 1 {
		return f, usageError{fmt.Sprintf("--from-seq %d: want a chain position, 1 or more", o.fromSeq)}
	}
	f.FromSeq = o.fromSeq
	end := now
	if o.until != "" {
		t, err := time.Parse(time.RFC3339, o.until)
		if err != nil {
			return f, usageError{fmt.Sprintf("--until %q: want an RFC 3339 time", o.until)}
		}
		f.Until, end = t, t
	}
	if o.since != "" {
		t, err := rollout.ParseSince(o.since, end)
		if err != nil {
			return f, usageError{"--" + err.Error()}
		}
		f.Since = t
	}
	return f, nil
}

func exportWriterOptions(o exportOptions, stdout io.Writer) (export.Options, error) {
	opts := export.Options{Dir: o.out, SplitByClass: o.class, Format: export.Format(o.format), Stdout: stdout}
	switch {
	case opts.Format != export.JSONL && opts.Format != export.Parquet:
		return opts, usageError{fmt.Sprintf("--format %q: want jsonl or parquet", o.format)}
	case o.out == "" && opts.Format == export.Parquet:
		return opts, usageError{"--format parquet needs --out DIR"}
	case o.out == "" && o.class:
		return opts, usageError{"--class needs --out DIR"}
	}
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o750); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// runExport exports from the outbox, stdin or a file.
func runExport(ctx context.Context, stdin io.Reader, o exportOptions, f evidence.ExportFilter, emit func(evidence.Exported) error) (evidence.VerifyReport, error) {
	switch o.file {
	case "":
		cfg, err := loadStoreConfig("evidence export")
		if err != nil {
			return evidence.VerifyReport{}, err
		}
		st, err := openStore(ctx, cfg)
		if err != nil {
			return evidence.VerifyReport{}, err
		}
		defer st.Close()
		return evidence.ExportOutbox(ctx, st.Pool(), f, !o.noVerify, emit)
	case "-":
		// Verifying first and exporting after reads the input twice.
		tmp, err := spool(stdin)
		if err != nil {
			return evidence.VerifyReport{}, err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		return evidence.ExportFile(tmp, f, !o.noVerify, emit)
	}
	in, err := os.Open(o.file)
	if err != nil {
		return evidence.VerifyReport{}, err
	}
	defer in.Close()
	return evidence.ExportFile(in, f, !o.noVerify, emit)
}

// spool copies r to a temporary file and rewinds it.
func spool(r io.Reader) (*os.File, error) {
	tmp, err := os.CreateTemp("", "leaseguard-export-*.jsonl")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	return tmp, nil
}

// printExport says what was verified and written: the verified end of the
// chain is what a SIEM should compare its newest event with.
func printExport(w io.Writer, rep evidence.VerifyReport, noVerify bool, n int, files []export.File) error {
	state := fmt.Sprintf("chain intact: %d event(s) verified, last seq %d, hash %s", rep.Checked, rep.LastSeq, dash(rep.LastHash))
	if noVerify {
		state = "chain not verified (--no-verify)"
	}
	if _, err := fmt.Fprintf(w, "%s\nexported %d event(s)\n", state, n); err != nil {
		return err
	}
	for _, f := range files {
		if _, err := fmt.Fprintf(w, "  %s  %d\n", f.Path, f.Events); err != nil {
			return err
		}
	}
	return nil
}
