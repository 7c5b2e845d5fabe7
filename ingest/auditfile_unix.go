//go:build unix

package ingest

import (
	"os"
	"syscall"
)

// fileIdentOf returns the device and inode of a file.
func fileIdentOf(fi os.FileInfo) fileIdent {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileIdent{dev: uint64(st.Dev), ino: uint64(st.Ino)} //nolint:unconvert // widths differ by platform
	}
	return fileIdent{}
}
