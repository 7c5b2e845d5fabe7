package dbpool

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func checkSocketOptions(t *testing.T, c *net.TCPConn, userTimeout time.Duration) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ut, ka, idle, intvl, cnt int
	var serr error
	err = rc.Control(func(fd uintptr) {
		get := func(level, opt int) int {
			v, err := unix.GetsockoptInt(int(fd), level, opt)
			if err != nil && serr == nil {
				serr = err
			}
			return v
		}
		ut = get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		ka = get(unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle = get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		intvl = get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		cnt = get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	})
	if err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	probe := int((userTimeout / 3).Seconds())
	if ut != int(userTimeout.Milliseconds()) || ka != 1 || idle != probe || intvl != probe || cnt != 3 {
		t.Errorf("TCP_USER_TIMEOUT %d ms, keepalive %d (idle %d s, interval %d s, count %d); want %d ms, on, %d s, %d s, 3",
			ut, ka, idle, intvl, cnt, userTimeout.Milliseconds(), probe, probe)
	}
}
