package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: what the test writes to slave, a person
// would see; master reads it.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestProgressOnlyOnATerminal: progress is drawn on a terminal, never on a
// pipe, a file, /dev/null or a buffer.
func TestProgressOnlyOnATerminal(t *testing.T) {
	_, slave := openPTY(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	file, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tt := range []struct {
		name string
		w    io.Writer
		want bool
	}{
		{"terminal", slave, true}, {"pipe", pw, false}, {"/dev/null", devNull, false}, {"file", file, false}, {"buffer", &syncBuffer{}, false},
	} {
		if got := showProgress(tt.w); got != tt.want {
			t.Errorf("progress on a %s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestReplayProgressOnATerminal: a replay that is still reading shows how
// far it got on the terminal, and clears the line when it is done.
func TestReplayProgressOnATerminal(t *testing.T) {
	master, slave := openPTY(t)
	var screen syncBuffer
	go func() { _, _ = io.Copy(&screen, master) }()
	fix, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	in, feed := io.Pipe()
	var out syncBuffer
	m := NewMain(in, &out, slave)
	done := make(chan int, 1)
	go func() { done <- m.Run(context.Background(), []string{"replay", "-", "--dry-run"}) }()
	if _, err := feed.Write(fix); err != nil {
		t.Fatal(err)
	}
	// stdin stays open: the replay is still running when progress shows.
	ctx := context.Background()
	waitFor(t, ctx, 20*time.Second, "progress on the terminal", func() bool { return strings.Contains(screen.String(), "read 28 entries") })
	feed.Close()
	if code := <-done; code != exitOK {
		t.Fatalf("replay: exit %d", code)
	}
	waitFor(t, ctx, 10*time.Second, "the progress line cleared", func() bool { return strings.HasSuffix(screen.String(), "\r\033[K") })
	if !strings.Contains(out.String(), "28 entries") {
		t.Errorf("summary: %s", out.String())
	}
}
