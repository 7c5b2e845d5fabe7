package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// replayReport is the JSON document replay prints on stdout.
type replayReport struct {
	Entries    int64            `json:"entries"`
	Rejected   int64            `json:"rejected"`
	ByKind     map[string]int64 `json:"by_kind"`
	Leases     replayLeases     `json:"leases"`
	Rejections []replayReject   `json:"rejections"`
	// RejectionsOmitted counts rejections past the listed maximum.
	RejectionsOmitted int64 `json:"rejections_omitted,omitempty"`
	ExpiryResolved    int   `json:"expiry_resolved,omitempty"`
	DryRun            bool  `json:"dry_run"`
}

type replayLeases struct {
	Issued  int64 `json:"issued"`
	Renewed int64 `json:"renewed"`
	Revoked int64 `json:"revoked"`
}

type replayReject struct {
	File   string `json:"file,omitempty"`
	Line   int64  `json:"line"`
	Reason string `json:"reason"`
}

const maxListedRejections = 10000

// discardLedger is the dry-run ledger: it accepts everything and keeps
// nothing.
type discardLedger struct{}

func (discardLedger) Apply(context.Context, store.Batch) (store.ApplyStats, error) {
	return store.ApplyStats{}, nil
}

// replayOptions are replay's flags.
type replayOptions struct {
	dryRun bool
	batch  int
	output outputFormat
}

func (m *Main) replayCommand() *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay FILE...",
		Short: "feed Vault file-audit logs through the decoder into the ledger",
		Long: "Replay reads Vault file-audit logs (- reads stdin), one JSON entry per line, through the same\n" +
			"decoder as run, and applies them to the lease ledger (back-fill). It prints a summary: entries\n" +
			"by kind, leases issued, renewed and revoked, and each rejected line with its reason.\n\n" +
			"With --dry-run it only decodes and counts: no database is opened, nothing is written.",
		Example: "  leaseguard replay /var/log/vault/audit.log\n" +
			"  leaseguard replay audit.log --dry-run -o json",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{"needs at least one FILE (- for stdin)"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, files []string) error { return replayCmd(cmd.Context(), m, o, files) },
	}
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "decode and count only: open no database, write nothing")
	cmd.Flags().IntVar(&o.batch, "batch", 500, "entries per ledger transaction")
	outputFlag(cmd, &o.output, "table, or json: the summary as one JSON document")
	return cmd
}

func replayCmd(ctx context.Context, m *Main, o replayOptions, files []string) error {
	if o.batch < 1 {
		return usageError{"--batch must be positive"}
	}
	storeFor := "replay" // a dry run writes nothing and needs no state store
	if o.dryRun {
		storeFor = ""
	}
	cfg, err := loadConfigFrom(os.Environ(), storeFor)
	if err != nil {
		return err
	}
	logger := newLevelLogger(m.Stderr, cfg.parsed().logLevel, "text")
	dst, err := openReplayLedger(ctx, cfg, o.dryRun, logger)
	if err != nil {
		return err
	}
	defer dst.close()
	proc, err := ingest.NewProcessor(ingest.ProcessorConfig{
		Ledger: dst.ledger, Router: dst.router, MaxEntryBytes: cfg.MaxEntryBytes, Logger: logger,
	})
	if err != nil {
		return err
	}

	rep := &replayReport{ByKind: map[string]int64{}, Rejections: []replayReject{}, DryRun: o.dryRun}
	var read atomic.Int64
	var rejected atomic.Int64
	stopProgress := m.progress(&read, &rejected)
	defer stopProgress()
	for _, name := range files {
		if err := replayFile(ctx, m, proc, name, cfg.MaxEntryBytes, o.batch, rep, &read, &rejected); err != nil {
			return err
		}
	}
	if dst.resolver != nil {
		n, err := dst.resolver.ResolveAll(ctx)
		rep.ExpiryResolved = n
		if err != nil {
			logger.Warn("expiry not resolved for every lease; run resolves the rest", "err", err)
		}
	}
	stopProgress()
	if o.output == outputJSON {
		return writeJSON(m.Stdout, rep)
	}
	return rep.writeTable(m.Stdout)
}

// replayLedger is where replay writes: the state store and the targets, or,
// for a dry run, nowhere (nothing is opened).
type replayLedger struct {
	ledger   ingest.Ledger
	router   ingest.Router
	resolver *ingest.ExpiryResolver
	closers  []func()
}

func (r replayLedger) close() {
	for _, c := range r.closers {
		c()
	}
}

func openReplayLedger(ctx context.Context, cfg Config, dryRun bool, logger *slog.Logger) (replayLedger, error) {
	if dryRun {
		return replayLedger{ledger: discardLedger{}}, nil
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return replayLedger{}, err
	}
	tc := cfg.parsed().targets
	targets, err := target.Open(ctx, tc)
	if err != nil {
		st.Close()
		return replayLedger{}, err
	}
	ttls := cfg.parsed().roleTTLs
	return replayLedger{ledger: st, router: targets, resolver: ingest.NewExpiryResolver(st, targets, ttls, logger),
		closers: []func(){targets.Close, st.Close}}, nil
}

// shownRejections is how many rejected lines the table lists; -o json
// lists them all (up to maxListedRejections).
const shownRejections = 20

func (rep *replayReport) writeTable(w io.Writer) error {
	mode := "written to the ledger"
	if rep.DryRun {
		mode = "dry run: nothing written"
	}
	fmt.Fprintf(w, "%d entries, %d rejected (%s)\n", rep.Entries, rep.Rejected, mode)
	fmt.Fprintf(w, "leases: %d issued, %d renewed, %d revoked\n", rep.Leases.Issued, rep.Leases.Renewed, rep.Leases.Revoked)
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(rep.ByKind)) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, rep.ByKind[k]))
	}
	fmt.Fprintf(w, "by kind: %s\n", strings.Join(kinds, ", "))
	if rep.ExpiryResolved > 0 {
		fmt.Fprintf(w, "expiry resolved for %d lease(s)\n", rep.ExpiryResolved)
	}
	if len(rep.Rejections) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nFILE\tLINE\tREASON")
	for i, r := range rep.Rejections {
		if i == shownRejections {
			fmt.Fprintf(tw, "… and %d more (-o json lists them)\t\t\n", rep.Rejected-shownRejections)
			break
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", r.File, r.Line, r.Reason)
	}
	return tw.Flush()
}

func replayFile(ctx context.Context, m *Main, proc *ingest.Processor, name string, maxBytes, batchSize int,
	rep *replayReport, read, rejected *atomic.Int64) error {
	var r io.Reader
	display := name
	if name == "-" {
		r, display = m.Stdin, "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	lr := newLineReader(r, maxBytes)
	batch := make([]ingest.Message, 0, batchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		results, err := proc.Process(ctx, batch)
		if err != nil {
			return fmt.Errorf("%s: %w", display, err)
		}
		for i, res := range results {
			rep.Entries++
			rep.ByKind[string(res.Kind)]++
			switch res.Kind {
			case ingest.KindIssue:
				rep.Leases.Issued++
			case ingest.KindRenew:
				rep.Leases.Renewed++
			case ingest.KindRevoke, ingest.KindRevokePrefix, ingest.KindRevokeHashed:
				rep.Leases.Revoked++
			}
			if res.Disposition == ingest.DeadLetter {
				rep.Rejected++
				rejected.Add(1)
				if len(rep.Rejections) < maxListedRejections {
					// A reason may quote the input: never a secret of it.
					reason, _ := schemas.RedactText(res.Reason)
					rep.Rejections = append(rep.Rejections, replayReject{File: display, Line: batch[i].Source.Offset, Reason: reason})
				} else {
					rep.RejectionsOmitted++
				}
			}
		}
		batch = batch[:0]
		return nil
	}
	for {
		line, lineNo, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", display, err)
		}
		if len(line) == 0 {
			continue
		}
		read.Add(1)
		batch = append(batch, ingest.Message{
			Data:   line,
			Source: schemas.SourceRef{Transport: "file", Stream: display, Offset: lineNo},
		})
		if len(batch) == batchSize {
			if err := flush(); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return flush()
}

// lineReader reads lines of at most max bytes; a longer line is returned
// cut to max+1 bytes (so the decoder rejects it as oversized) and the rest
// of it is skipped, keeping memory bounded.
type lineReader struct {
	r    *bufio.Reader
	max  int
	line int64
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

func (l *lineReader) next() ([]byte, int64, error) {
	var buf []byte
	for {
		chunk, err := l.r.ReadSlice('\n')
		if len(buf) <= l.max {
			room := l.max + 1 - len(buf)
			if len(chunk) < room {
				room = len(chunk)
			}
			buf = append(buf, chunk[:room]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !(errors.Is(err, io.EOF) && len(buf) > 0) {
			return nil, 0, err
		}
		l.line++
		return trimLine(buf), l.line, nil
	}
}

func trimLine(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// progress prints entries read, rate and rejections to stderr once a second
// when stderr is a terminal; the returned func stops it (safe twice).
func (m *Main) progress(read, rejected *atomic.Int64) func() {
	if !showProgress(m.Stderr) {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(m.Stderr, "\r\033[K")
				return
			case <-t.C:
				n := read.Load()
				rate := float64(n) / time.Since(start).Seconds()
				fmt.Fprintf(m.Stderr, "\r\033[Kread %d entries, %.0f/s, %d rejected", n, rate, rejected.Load())
			}
		}
	}()
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			close(done)
			<-stopped
		}
	}
}
