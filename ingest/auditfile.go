package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/backoff"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/store"
)

// AuditFileConfig configures the follower of a Vault file audit device's
// log (LEASEGUARD_AUDIT_FILE).
type AuditFileConfig struct {
	DirectConfig
	// Path of the log Vault writes (the device's file_path).
	Path string
	// PollInterval: how often the end of the file and the path are looked
	// at once everything is read (default 250ms).
	PollInterval time.Duration
	// Batch: lines per JetStream round trip and offset commit (default 500).
	Batch int
	// StoreTimeout bounds one read or write of the offset in the state
	// store (default 10s); a failed one is retried.
	StoreTimeout time.Duration
}

// Validate checks the configuration.
func (c AuditFileConfig) Validate() error {
	if c.Path == "" {
		return errors.New("audit file: path is required")
	}
	if c.Batch < 0 || c.PollInterval < 0 || c.StoreTimeout < 0 {
		return errors.New("audit file: batch, poll interval and store timeout must not be negative")
	}
	return c.DirectConfig.validate("file")
}

// OffsetStore keeps the follower's durable position; *store.Store is one.
type OffsetStore interface {
	AuditFileOffset(ctx context.Context, path string) (store.AuditFileOffset, error)
	SaveAuditFileOffset(ctx context.Context, o store.AuditFileOffset) error
}

var _ OffsetStore = (*store.Store)(nil)

// fileIdent identifies a file across renames (device and inode).
type fileIdent struct{ dev, ino uint64 }

// AuditFile follows a Vault audit log like tail -F and publishes each entry
// into the audit stream. It survives rotation by rename (it finishes the
// old file once Vault writes to the new one) and truncation (it starts
// again at the beginning). Its offset is stored in the state store only
// after JetStream acknowledged the entries before it; entries carry message
// ids derived from the file, offset and content, so entries republished
// after a crash between the two are JetStream duplicates. A last line
// without its newline is left until it is complete.
type AuditFile struct {
	cfg     AuditFileConfig
	pub     *directPublisher
	offsets OffsetStore
	logger  *slog.Logger

	f     *os.File
	fi    os.FileInfo
	ident fileIdent
	// off is the committed position: every line before it is stored.
	off int64
}

// NewAuditFile builds a follower; Run follows.
func NewAuditFile(cfg AuditFileConfig, js jetstream.JetStream, offsets OffsetStore, metrics *Metrics, logger *slog.Logger) (*AuditFile, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.Batch == 0 {
		cfg.Batch = 500
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 10 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("audit_file", cfg.Path)
	return &AuditFile{
		cfg: cfg, offsets: offsets, logger: logger,
		pub: &directPublisher{cfg: cfg.DirectConfig, js: js, transport: "file", metrics: metrics, logger: logger},
	}, nil
}

// Run follows the file until ctx ends. It waits for the file to appear.
func (a *AuditFile) Run(ctx context.Context) error {
	defer a.closeFile()
	if err := a.resume(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.logger.Info("following audit file", "offset", a.off)
	tick := time.NewTicker(a.cfg.PollInterval)
	defer tick.Stop()
	for {
		a.cfg.Progress.Start()
		n, err := a.pump(ctx, false)
		a.cfg.Progress.Finish(err)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n > 0 {
			continue
		}
		a.cfg.Progress.Start()
		err = a.checkPath(ctx)
		a.cfg.Progress.Finish(err)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// resume opens the file and restores the stored offset. When the file at
// Path is not the one the offset belongs to (rotated while leaseguard was
// stopped), the old file is looked for by inode next to it and finished
// first.
func (a *AuditFile) resume(ctx context.Context) error {
	cur, err := a.waitOpen(ctx)
	if err != nil {
		return err
	}
	stored, err := a.storedOffset(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		_ = cur.Close()
		return err
	}
	if errors.Is(err, store.ErrNotFound) {
		a.off = 0
		return a.setFile(cur)
	}
	if err := a.setFile(cur); err != nil {
		return err
	}
	storedIdent := fileIdent{dev: stored.Device, ino: stored.Inode}
	if storedIdent == a.ident {
		if a.fi.Size() < stored.Offset {
			a.logger.Warn("audit file truncated while stopped; reading it from the start", "stored_offset", stored.Offset, "size", a.fi.Size())
			a.off = 0
			return a.saveOffset(ctx)
		}
		a.off = stored.Offset
		return nil
	}
	// Rotated while stopped: finish the old file, then start the new one.
	a.f = nil // keep cur open while the old file is read
	defer func() {
		if a.f != cur {
			_ = cur.Close()
		}
	}()
	if old := findByIdent(filepath.Dir(a.cfg.Path), storedIdent); old != "" {
		f, err := os.Open(old)
		if err != nil {
			return fmt.Errorf("audit file: %w", err)
		}
		if err := a.setFile(f); err != nil {
			return err
		}
		a.off = stored.Offset
		if a.fi.Size() < a.off {
			a.off = 0
		}
		a.logger.Info("audit file rotated while stopped; finishing the old file first", "old", old, "offset", a.off)
		if err := a.drain(ctx); err != nil {
			return err
		}
	} else {
		a.logger.Warn("audit file rotated while stopped and the old file is gone; entries after the stored offset may be missing",
			"stored_offset", stored.Offset)
	}
	if err := a.setFile(cur); err != nil {
		return err
	}
	a.off = 0
	return a.saveOffset(ctx)
}

// waitOpen opens Path, waiting for it to appear.
func (a *AuditFile) waitOpen(ctx context.Context) (*os.File, error) {
	waiting := false
	for {
		f, err := os.Open(a.cfg.Path)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("audit file: %w", err)
		}
		if !waiting {
			a.logger.Info("waiting for the audit file to appear")
			waiting = true
		}
		if !pause.For(ctx, a.cfg.PollInterval, nil) {
			return nil, ctx.Err()
		}
	}
}

// findByIdent returns a file in dir with the given identity, or "".
func findByIdent(dir string, id fileIdent) string {
	if id == (fileIdent{}) {
		return ""
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err == nil && fileIdentOf(fi) == id {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

func (a *AuditFile) setFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit file: %w", err)
	}
	a.closeFile()
	a.f, a.fi, a.ident = f, fi, fileIdentOf(fi)
	return nil
}

func (a *AuditFile) closeFile() {
	if a.f != nil {
		_ = a.f.Close()
		a.f = nil
	}
}

// checkPath looks at what Path names now: the followed file grown or
// truncated, or a new file after a rotation.
func (a *AuditFile) checkPath(ctx context.Context) error {
	fi, err := os.Stat(a.cfg.Path)
	if err != nil {
		// Renamed away and not yet recreated: keep reading the old file.
		return nil
	}
	if !os.SameFile(fi, a.fi) {
		// Vault keeps writing to the renamed file until it reopens the
		// path (SIGHUP); once the new file has data the old one is final.
		if fi.Size() == 0 {
			return nil
		}
		if err := a.drain(ctx); err != nil {
			return err
		}
		f, err := os.Open(a.cfg.Path)
		if err != nil {
			return nil // gone again; retry at the next poll
		}
		if err := a.setFile(f); err != nil {
			return err
		}
		a.off = 0
		a.logger.Info("audit file rotated; following the new file")
		return a.saveOffset(ctx)
	}
	cur, err := a.f.Stat()
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	if cur.Size() < a.off {
		a.logger.Warn("audit file truncated; reading it from the start", "offset", a.off, "size", cur.Size())
		a.off = 0
		return a.saveOffset(ctx)
	}
	return nil
}

// drain publishes the rest of the followed file, a last line without its
// newline included.
func (a *AuditFile) drain(ctx context.Context) error {
	for {
		n, err := a.pump(ctx, true)
		if err != nil || n == 0 {
			return err
		}
	}
}

// pump publishes up to Batch complete lines from the committed offset and
// then commits the new offset. final also takes a last line that has no
// newline. It returns how many bytes the offset moved.
func (a *AuditFile) pump(ctx context.Context, final bool) (int64, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(a.f, a.off, 1<<62), 64<<10)
	pos := a.off
	var batch []line
	for len(batch) < a.cfg.Batch {
		data, size, n, complete, err := readLine(r, a.cfg.MaxLineBytes)
		if err != nil {
			return 0, fmt.Errorf("audit file: read: %w", err)
		}
		if !complete && (!final || n == 0) {
			break
		}
		start := pos
		pos += n
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		l := prepareLine(line{data: data, origin: fmt.Sprintf("%s@%d", a.cfg.Path, start)}, size, a.cfg.MaxLineBytes,
			"auditfile", fmt.Sprintf("%d:%d:%d", a.ident.dev, a.ident.ino, start))
		batch = append(batch, l)
		if !complete {
			break
		}
	}
	if pos == a.off {
		return 0, nil
	}
	if len(batch) > 0 {
		if err := a.pub.publish(ctx, batch); err != nil {
			return 0, err
		}
	}
	moved := pos - a.off
	a.off = pos
	if err := a.saveOffset(ctx); err != nil {
		return 0, err
	}
	return moved, nil
}

// saveOffset stores the committed offset, retrying until ctx ends.
func (a *AuditFile) saveOffset(ctx context.Context) error {
	o := store.AuditFileOffset{Path: a.cfg.Path, Device: a.ident.dev, Inode: a.ident.ino, Offset: a.off}
	return a.retryStore(ctx, "storing the audit file offset", func(ctx context.Context) error {
		return a.offsets.SaveAuditFileOffset(ctx, o)
	})
}

// storedOffset reads the stored offset (or store.ErrNotFound), retrying
// until ctx ends.
func (a *AuditFile) storedOffset(ctx context.Context) (store.AuditFileOffset, error) {
	var o store.AuditFileOffset
	var lookup error
	err := a.retryStore(ctx, "reading the audit file offset", func(ctx context.Context) error {
		o, lookup = a.offsets.AuditFileOffset(ctx, a.cfg.Path)
		if errors.Is(lookup, store.ErrNotFound) {
			return nil
		}
		return lookup
	})
	if err != nil {
		return o, err
	}
	return o, lookup
}

// localRetry is the wait between attempts of the audit-file source's
// retry loops (publishing to JetStream, the state store).
var localRetry = backoff.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// retryStore runs call, each attempt within StoreTimeout, until it
// succeeds or ctx ends: a state store down or silent holds the source up,
// never stops it.
func (a *AuditFile) retryStore(ctx context.Context, what string, call func(context.Context) error) error {
	for failures := 1; ; failures++ {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
		err := call(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.cfg.Progress.Retry()
		a.logger.Warn(what+" failed; retrying", "err", err)
		if !pause.For(ctx, localRetry.Wait(failures), nil) {
			return ctx.Err()
		}
	}
}

// readLine reads one line. data is the line without its newline, cut to
// max+1 bytes; size its full length; n the bytes consumed, newline
// included. complete is false when the input ended before a newline.
func readLine(r *bufio.Reader, max int) (data []byte, size, n int64, complete bool, err error) {
	for {
		frag, err := r.ReadSlice('\n')
		n += int64(len(frag))
		body := frag
		if err == nil {
			body = bytes.TrimSuffix(bytes.TrimSuffix(frag, []byte{'\n'}), []byte{'\r'})
		}
		size += int64(len(body))
		if room := max + 1 - len(data); room > 0 {
			data = append(data, body[:min(len(body), room)]...)
		}
		switch {
		case err == nil:
			return data, size, n, true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return data, size, n, false, nil
		default:
			return data, size, n, false, err
		}
	}
}
