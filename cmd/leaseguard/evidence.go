package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/revoker"
)

func (m *Main) evidenceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "evidence tools: verify, export",
	}
	asGroup(cmd, "verify or export")
	cmd.AddCommand(m.evidenceVerifyCommand(), m.evidenceExportCommand())
	return cmd
}

// verifyOptions are evidence verify's flags.
type verifyOptions struct {
	file              string
	output            outputFormat
	evidenceKeys      []string
	requireCheckpoint bool
	interval          time.Duration
}

func (m *Main) evidenceVerifyCommand() *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify [--file FILE|-]",
		Short: "verify the evidence hash chain and its signed checkpoints, in the outbox or in a file",
		Long: "Verify checks that the evidence forms one intact hash chain from genesis: the outbox of the state\n" +
			"store, or with --file a file of CloudEvents as a SIEM stored them (one JSON event per line, - for\n" +
			"stdin). It checks each checkpoint's Ed25519 signature with the evidence public keys (the evidence\n" +
			"signing key's, LEASEGUARD_EVIDENCE_VERIFY_KEYS and --evidence-key; with --file the key file in\n" +
			"DATA_DIR is not read) and that it covers the event just before it, and reports the unconfirmed\n" +
			"tail: the events after the last checkpoint, and whether the last checkpoint is overdue (the newest\n" +
			"event is later than it by more than the checkpoint interval plus 1m: events cut off, or the relay\n" +
			"stopped). Exit 4 when the chain is broken or a checkpoint is forged or misplaced; an unconfirmed\n" +
			"tail is a warning, and with --require-checkpoint exit 4 too.",
		Example: "  leaseguard evidence verify\n" +
			"  leaseguard evidence verify --file siem-export.jsonl --evidence-key BASE64 -o json\n" +
			"  leaseguard evidence verify --file siem-export.jsonl --evidence-key BASE64 --require-checkpoint",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return evidenceVerify(cmd.Context(), m, o) },
	}
	cmd.Flags().StringVar(&o.file, "file", "", "verify a file of CloudEvents (one JSON event per line, - for stdin) instead of the outbox")
	cmd.Flags().StringArrayVar(&o.evidenceKeys, "evidence-key", nil, "an evidence public key (standard base64, as leaseguard keys prints it) checkpoints may be signed with; repeatable")
	cmd.Flags().BoolVar(&o.requireCheckpoint, "require-checkpoint", false, "exit 4 unless every event is confirmed by a checkpoint whose signature was checked")
	cmd.Flags().DurationVar(&o.interval, "checkpoint-interval", 0, "the checkpoint cadence the overdue check assumes (default LEASEGUARD_EVIDENCE_CHECKPOINT_INTERVAL)")
	outputFlag(cmd, &o.output, "table, or json: {source, ok, confirmed, report}")
	return cmd
}

func evidenceVerify(ctx context.Context, m *Main, o verifyOptions) error {
	opts, err := verifyKeyOptions(o)
	if err != nil {
		return err
	}
	source, rep, err := verifyEvidence(ctx, m.Stdin, o.file, opts)
	if err != nil {
		return err
	}
	if err := printVerify(m.Stdout, source, rep, o.output); err != nil {
		return err
	}
	switch {
	case !rep.OK():
		return exitError{code: exitNotClean, err: fmt.Errorf("evidence chain broken: %s", rep.FirstBreak)}
	case o.requireCheckpoint && !rep.Confirmed():
		return exitError{code: exitNotClean, err: fmt.Errorf("evidence not confirmed by a checked checkpoint: %s", strings.Join(rep.Warnings, "; "))}
	}
	return nil
}

// verifyKeyOptions are the evidence keys and cadence verify checks
// checkpoints with.
func verifyKeyOptions(o verifyOptions) (evidence.VerifyOptions, error) {
	cfg, err := loadConfig()
	if err != nil {
		return evidence.VerifyOptions{}, err
	}
	keys, err := evidenceVerifyKeys(cfg, o.file == "")
	if err != nil {
		return evidence.VerifyOptions{}, err
	}
	flagKeys, err := revoker.ParsePublicKeys(strings.Join(o.evidenceKeys, ","))
	if err != nil {
		return evidence.VerifyOptions{}, usageError{"--evidence-key: " + err.Error()}
	}
	opts := evidence.VerifyOptions{Keys: append(keys, flagKeys...), Interval: cfg.CheckpointInterval}
	if o.interval != 0 {
		opts.Interval = o.interval
	}
	return opts, nil
}

// verifyEvidence verifies the outbox (file empty), stdin (-) or a file.
func verifyEvidence(ctx context.Context, stdin io.Reader, file string, opts evidence.VerifyOptions) (string, evidence.VerifyReport, error) {
	switch file {
	case "":
		cfg, err := loadStoreConfig("evidence verify")
		if err != nil {
			return "", evidence.VerifyReport{}, err
		}
		st, err := openStore(ctx, cfg)
		if err != nil {
			return "", evidence.VerifyReport{}, err
		}
		defer st.Close()
		rep, err := evidence.VerifyOutbox(ctx, st.Pool(), opts)
		return "outbox", rep, err
	case "-":
		rep, err := evidence.VerifyFile(stdin, opts)
		return "stdin", rep, err
	}
	f, err := os.Open(file)
	if err != nil {
		return "", evidence.VerifyReport{}, err
	}
	defer f.Close()
	rep, err := evidence.VerifyFile(f, opts)
	return file, rep, err
}

func printVerify(w io.Writer, source string, rep evidence.VerifyReport, format outputFormat) error {
	if format == outputJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"source": source, "ok": rep.OK(), "confirmed": rep.Confirmed(), "report": rep})
	}
	state := "intact"
	if !rep.OK() {
		state = "BROKEN: " + rep.FirstBreak.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: chain %s\n%d event(s) verified, %d duplicate(s) skipped; last seq %d, hash %s\n",
		source, state, rep.Checked, rep.Duplicates, rep.LastSeq, dash(rep.LastHash))
	checked := "signatures checked"
	if !rep.SignaturesChecked {
		checked = "signatures NOT checked"
	}
	if cp := rep.LastCheckpoint; cp != nil {
		fmt.Fprintf(&b, "%d checkpoint(s), %s; the last at seq %d covers seq %d, signed %s by evidence key %s\n",
			rep.Checkpoints, checked, cp.Seq, cp.CoversSeq, cp.SignedAt, cp.KeyID)
	}
	if rep.Confirmed() {
		// A cut exactly after a checkpoint looks the same: only its time,
		// against when the chain was read, can tell (docs/evidence.md).
		fmt.Fprintf(&b, "every event up to the last checkpoint (signed %s) is confirmed; later ones would not be\n",
			rep.LastCheckpoint.SignedAt)
	}
	for _, warning := range rep.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", warning)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
