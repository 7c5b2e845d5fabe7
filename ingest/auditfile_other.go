//go:build !unix

package ingest

import "os"

// fileIdentOf has no inode to offer here: rotation is noticed through
// os.SameFile while running, but not across a restart.
func fileIdentOf(os.FileInfo) fileIdent { return fileIdent{} }
