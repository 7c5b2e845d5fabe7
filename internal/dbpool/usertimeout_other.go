//go:build !linux

package dbpool

import (
	"syscall"
	"time"
)

type rawConn = syscall.RawConn

// setUserTimeout does nothing outside Linux: keepalive alone notices a
// vanished peer of an idle connection there.
func setUserTimeout(rawConn, time.Duration) error { return nil }
