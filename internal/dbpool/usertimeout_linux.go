package dbpool

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type rawConn = syscall.RawConn

// setUserTimeout sets TCP_USER_TIMEOUT: the kernel closes the connection
// when data it sent stays unacknowledged for d.
func setUserTimeout(c rawConn, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("set TCP_USER_TIMEOUT: %w", err)
	}
	return nil
}
