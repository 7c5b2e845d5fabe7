package export

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/leaseguard/leaseguard/evidence"
)

// Format is the file format of an export.
type Format string

// The formats.
const (
	JSONL   Format = "jsonl"
	Parquet Format = "parquet"
)

// Options say where an export goes.
type Options struct {
	// Dir is the directory the files are written to (it must exist). Empty
	// writes JSONL to Stdout.
	Dir string
	// SplitByClass writes one file per OCSF class, named after the class
	// (account_change.jsonl); else one file, evidence.jsonl.
	SplitByClass bool
	Format       Format
	Stdout       io.Writer
}

func (o Options) check() error {
	switch {
	case o.Format != JSONL && o.Format != Parquet:
		return fmt.Errorf("format %q: want jsonl or parquet", o.Format)
	case o.Dir == "" && o.Format == Parquet:
		return errors.New("parquet is written to files: name a directory")
	case o.Dir == "" && o.SplitByClass:
		return errors.New("a split by class is written to files: name a directory")
	case o.Dir == "" && o.Stdout == nil:
		return errors.New("no directory and no standard output")
	}
	if o.Dir != "" {
		st, err := os.Stat(o.Dir)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", o.Dir)
		}
	}
	return nil
}

// File is one file an export wrote.
type File struct {
	Path   string `json:"path"`
	Events int    `json:"events"`
}

// Writer writes exported events. Files are written under a temporary name
// and take their own name only when Close succeeds, so a failed export
// leaves no file that looks complete.
type Writer struct {
	o     Options
	sinks map[string]*sink
}

// sink is one output stream.
type sink struct {
	path, tmp string
	f         *os.File
	enc       encoder
	events    int
}

// encoder writes events in one format.
type encoder interface {
	write(x evidence.Exported) error
	close() error
}

// New checks o and returns a Writer. Without a split, the one file is
// created at once, so an export of nothing still leaves an (empty) file.
func New(o Options) (*Writer, error) {
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	w := &Writer{o: o, sinks: map[string]*sink{}}
	if o.Dir == "" {
		w.sinks[""] = &sink{enc: &jsonlEncoder{w: bufio.NewWriter(o.Stdout)}}
		return w, nil
	}
	if !o.SplitByClass {
		if _, err := w.open("evidence"); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Write adds one event: to its class's file with a split, else to the one
// stream.
func (w *Writer) Write(x evidence.Exported) error {
	key := ""
	if w.o.Dir != "" {
		key = "evidence"
		if w.o.SplitByClass {
			key = ClassFileName(x.Summary)
		}
	}
	s, ok := w.sinks[key]
	if !ok {
		var err error
		if s, err = w.open(key); err != nil {
			return err
		}
	}
	if err := s.enc.write(x); err != nil {
		return fmt.Errorf("export to %s: %w", displayPath(s), err)
	}
	s.events++
	return nil
}

func (w *Writer) open(name string) (*sink, error) {
	path := filepath.Join(w.o.Dir, name+"."+string(w.o.Format))
	f, err := os.CreateTemp(w.o.Dir, name+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	s := &sink{path: path, tmp: f.Name(), f: f}
	if w.o.Format == Parquet {
		s.enc = newParquetEncoder(f)
	} else {
		s.enc = &jsonlEncoder{w: bufio.NewWriter(f)}
	}
	w.sinks[name] = s
	return s, nil
}

// Close finishes every file and gives it its name. It returns the files
// written, by name.
func (w *Writer) Close() ([]File, error) {
	var files []File
	var errs []error
	for _, s := range w.sinks {
		if err := s.finish(); err != nil {
			errs = append(errs, err)
			continue
		}
		if s.path != "" {
			files = append(files, File{Path: s.path, Events: s.events})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	if err := errors.Join(errs...); err != nil {
		w.Abort()
		return nil, err
	}
	return files, nil
}

func (s *sink) finish() error {
	if err := s.enc.close(); err != nil {
		return fmt.Errorf("export to %s: %w", displayPath(s), err)
	}
	if s.f == nil {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("export to %s: %w", s.path, err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("export to %s: %w", s.path, err)
	}
	if err := os.Rename(s.tmp, s.path); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	s.tmp = ""
	return nil
}

// Abort removes the temporary files of an export that failed.
func (w *Writer) Abort() {
	for _, s := range w.sinks {
		if s.f != nil {
			_ = s.f.Close()
		}
		if s.tmp != "" {
			_ = os.Remove(s.tmp)
		}
	}
}

func displayPath(s *sink) string {
	if s.path == "" {
		return "standard output"
	}
	return s.path
}

// ClassFileName names a class's file: its OCSF class name in lower case
// with "_" between words, as the OCSF schema names its class files
// (account_change); class_<uid> if the event names none.
func ClassFileName(s evidence.OCSFSummary) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(s.ClassName)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	name := strings.TrimSuffix(b.String(), "_")
	if name == "" {
		return fmt.Sprintf("class_%d", s.ClassUID)
	}
	return name
}

// jsonlEncoder writes one OCSF event per line.
type jsonlEncoder struct{ w *bufio.Writer }

func (e *jsonlEncoder) write(x evidence.Exported) error {
	if _, err := e.w.Write(x.OCSF); err != nil {
		return err
	}
	return e.w.WriteByte('\n')
}

func (e *jsonlEncoder) close() error { return e.w.Flush() }
