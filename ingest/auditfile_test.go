package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/store"
)

const (
	directStream = "VAULT_AUDIT"
	directDL     = "leaseguard.deadletter"
)

// directStreams creates the audit stream (with the given duplicate window)
// and the dead-letter stream on a fresh embedded JetStream server.
func directStreams(t *testing.T, dupWindow time.Duration) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: directStream, Subjects: []string{"vault.audit.>"}, Storage: jetstream.FileStorage, Duplicates: dupWindow,
	}); err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureDeadLetterStream(ctx, js, "", directDL, 0, 1); err != nil {
		t.Fatal(err)
	}
	return js
}

func directConfig(subject string) ingest.DirectConfig {
	return ingest.DirectConfig{Subject: subject, AuditSubject: "vault.audit.>", DeadLetterSubject: directDL, MaxLineBytes: 2048, PublishTimeout: 2 * time.Second}
}

// stored is a message read back from a stream.
type stored struct {
	data   string
	reason string
}

// streamMessages returns the messages of stream on subject, in order.
func streamMessages(t *testing.T, js jetstream.JetStream, stream, subject string) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			t.Fatal(err)
		}
		if m.Subject == subject {
			out = append(out, stored{data: string(m.Data), reason: m.Header.Get(ingest.HeaderReason)})
		}
	}
	return out
}

func dataOf(ms []stored) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.data
	}
	return out
}

// waitLines waits until subject holds exactly want (in order); more, or a
// different order, fails at once.
func waitLines(t *testing.T, js jetstream.JetStream, subject string, want []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := dataOf(streamMessages(t, js, directStream, subject))
		n := min(len(got), len(want))
		if strings.Join(got[:n], "\n") != strings.Join(want[:n], "\n") || len(got) > len(want) {
			t.Fatalf("stream holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if len(got) == len(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: stream holds %d of %d entries:\n%s", len(got), len(want), strings.Join(got, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var entrySeq atomic.Int64

// entries returns n distinct audit-entry-like lines.
func entries(tag string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"type":"request","time":"2026-11-25T19:00:00.%09dZ","request":{"id":"%s-%d"}}`, entrySeq.Add(1), tag, i)
	}
	return out
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// offsetLog wraps the real state store; failSave makes the next save fail
// and cancel the follower, as a crash between publish and commit would.
type offsetLog struct {
	*store.Store
	mu       sync.Mutex
	failSave context.CancelFunc
}

func (o *offsetLog) SaveAuditFileOffset(ctx context.Context, off store.AuditFileOffset) error {
	o.mu.Lock()
	crash := o.failSave
	o.failSave = nil
	o.mu.Unlock()
	if crash != nil {
		crash()
		return errors.New("crash before the offset commit")
	}
	return o.Store.SaveAuditFileOffset(ctx, off)
}

type follower struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startFollower(t *testing.T, js jetstream.JetStream, offsets ingest.OffsetStore, path string, crash *offsetLog) *follower {
	t.Helper()
	cfg := ingest.AuditFileConfig{DirectConfig: directConfig("vault.audit.file"), Path: path, PollInterval: 20 * time.Millisecond, Batch: 4}
	f, err := ingest.NewAuditFile(cfg, js, offsets, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if crash != nil {
		crash.mu.Lock()
		crash.failSave = cancel
		crash.mu.Unlock()
	}
	fl := &follower{cancel: cancel, done: make(chan error, 1)}
	go func() { fl.done <- f.Run(ctx) }()
	t.Cleanup(func() { fl.stop(t) })
	return fl
}

func (f *follower) stop(t *testing.T) {
	t.Helper()
	f.once.Do(func() {
		f.cancel()
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("follower: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("follower did not stop")
		}
	})
}

func storedOffset(t *testing.T, st *store.Store, path string) store.AuditFileOffset {
	t.Helper()
	o, err := st.AuditFileOffset(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestAuditFileRotationTruncationPartialLine(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	st := newLedger(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	e := entries("rot", 12)

	// A partial last line is left until its newline arrives.
	appendFile(t, path, lines(e[0], e[1], e[2])+e[3][:20])
	startFollower(t, js, st, path, nil)
	waitLines(t, js, "vault.audit.file", e[:3])
	appendFile(t, path, e[3][20:]+"\n"+lines(e[4]))
	waitLines(t, js, "vault.audit.file", e[:5])

	// Rotation by rename: Vault writes to the renamed file until it
	// reopens the path; both are read, old first.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", lines(e[5]))
	appendFile(t, path, lines(e[6], e[7]))
	waitLines(t, js, "vault.audit.file", e[:8])

	// Truncation in place (copytruncate): read again from the start.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the offset to follow the truncation", 10*time.Second, func() bool { return storedOffset(t, st, path).Offset == 0 })
	appendFile(t, path, lines(e[8], e[9]))
	waitLines(t, js, "vault.audit.file", e[:10])
	waitUntil(t, "the offset to reach the end", 10*time.Second, func() bool { return storedOffset(t, st, path).Offset == fileSize(t, path) })
}

func TestAuditFileRestartNeitherSkipsNorRepeats(t *testing.T) {
	t.Parallel()
	// A short duplicate window, waited out before each restart: a line
	// published twice would be stored twice, so this checks the stored
	// offset itself, not JetStream's deduplication.
	js := directStreams(t, 100*time.Millisecond)
	pastDupWindow := func() { time.Sleep(300 * time.Millisecond) }
	st := newLedger(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	e := entries("restart", 14)

	appendFile(t, path, lines(e[:5]...))
	f := startFollower(t, js, st, path, nil)
	waitLines(t, js, "vault.audit.file", e[:5])
	f.stop(t)

	// Written while stopped, same file: resumed at the stored offset.
	appendFile(t, path, lines(e[5:7]...))
	pastDupWindow()
	f = startFollower(t, js, st, path, nil)
	waitLines(t, js, "vault.audit.file", e[:7])
	f.stop(t)

	// Written while stopped, then rotated, then the new file written: the
	// old file's tail is found by inode and read before the new file.
	appendFile(t, path, lines(e[7]))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines(e[8:10]...))
	pastDupWindow()
	f = startFollower(t, js, st, path, nil)
	waitLines(t, js, "vault.audit.file", e[:10])
	f.stop(t)

	// Truncated while stopped: read from the start.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines(e[10]))
	pastDupWindow()
	startFollower(t, js, st, path, nil)
	waitLines(t, js, "vault.audit.file", e[:11])
	if o := storedOffset(t, st, path); o.Offset != fileSize(t, path) {
		t.Errorf("stored offset %d, file size %d", o.Offset, fileSize(t, path))
	}
}

func TestAuditFileCrashBetweenPublishAndCommit(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	st := newLedger(t)
	crash := &offsetLog{Store: st}
	path := filepath.Join(t.TempDir(), "audit.log")
	e := entries("crash", 6)
	appendFile(t, path, lines(e[:3]...))

	// The first commit fails after JetStream stored the lines.
	f := startFollower(t, js, crash, path, crash)
	select {
	case err := <-f.done:
		f.done <- err
	case <-time.After(20 * time.Second):
		t.Fatal("follower did not stop after the crash")
	}
	if _, err := st.AuditFileOffset(context.Background(), path); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("offset after the crash: %v, want none stored", err)
	}
	waitLines(t, js, "vault.audit.file", e[:3])

	// The restart publishes the same lines again under the same message
	// ids: JetStream drops them, nothing is repeated or skipped.
	appendFile(t, path, lines(e[3:]...))
	startFollower(t, js, crash, path, nil)
	waitUntil(t, "the offset to reach the end", 10*time.Second, func() bool {
		o, err := st.AuditFileOffset(context.Background(), path)
		return err == nil && o.Offset == fileSize(t, path)
	})
	waitLines(t, js, "vault.audit.file", e)
}

func TestAuditFileDeadLettersBadLines(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	st := newLedger(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	e := entries("bad", 2)
	long := `{"type":"request","pad":"` + strings.Repeat("x", 5000) + `"}`
	appendFile(t, path, lines(e[0], long, "not json", "", e[1]))
	startFollower(t, js, st, path, nil)
	waitLines(t, js, "vault.audit.file", e)
	waitUntil(t, "two dead letters", 10*time.Second, func() bool {
		return len(streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit")) == 2
	})
	dl := streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit")
	if want := fmt.Sprintf("line of %d bytes is over the limit of 2048", len(long)); dl[0].reason != want || dl[0].data != long[:2048] {
		t.Errorf("oversize dead letter: reason %q, %d bytes", dl[0].reason, len(dl[0].data))
	}
	if dl[1].data != "not json" || dl[1].reason != "line is not a JSON object" {
		t.Errorf("invalid dead letter: %+v", dl[1])
	}
}
