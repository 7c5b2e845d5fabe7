//go:build !linux

package dbpool

import (
	"net"
	"testing"
	"time"
)

func checkSocketOptions(*testing.T, *net.TCPConn, time.Duration) {}
