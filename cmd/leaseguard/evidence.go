package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/leaseguard/leaseguard/evidence"
)

func evidenceCmd(ctx context.Context, m *Main, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return usageError{"usage: leaseguard evidence verify [--file FILE]"}
	}
	fs := m.flags("evidence verify", "[--file FILE|-]")
	file := fs.String("file", "", "verify a file of CloudEvents (one JSON event per line, - for stdin) instead of the outbox")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	var rep evidence.VerifyReport
	var err error
	source := "outbox"
	switch *file {
	case "":
		cfg, cerr := loadStoreConfig("evidence verify")
		if cerr != nil {
			return cerr
		}
		st, serr := openStore(ctx, cfg)
		if serr != nil {
			return serr
		}
		defer st.Close()
		rep, err = evidence.VerifyOutbox(ctx, st.Pool())
	case "-":
		source = "stdin"
		rep, err = evidence.VerifyFile(m.Stdin)
	default:
		source = *file
		f, ferr := os.Open(*file)
		if ferr != nil {
			return ferr
		}
		defer f.Close()
		rep, err = evidence.VerifyFile(f)
	}
	if err != nil {
		return err
	}
	out := map[string]any{"source": source, "ok": rep.OK(), "report": rep}
	enc := json.NewEncoder(m.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if !rep.OK() {
		return exitError{code: exitNotClean, err: fmt.Errorf("evidence chain broken: %s", rep.FirstBreak)}
	}
	return nil
}
