package main

import (
	"io"
	"os"

	"golang.org/x/term"
)

// showProgress says whether progress may be drawn on w: only on a terminal.
// A pipe, a file, /dev/null (a character device, but no terminal) or a
// buffer gets none, so a script's stderr stays clean.
func showProgress(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
