package ingest_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/ops/progress"
)

func startSocket(t *testing.T, js jetstream.JetStream, metrics *ingest.Metrics) string {
	t.Helper()
	return startSocketWith(t, js, metrics, ingest.AuditSocketConfig{DirectConfig: directConfig("vault.audit.socket"), Addr: "127.0.0.1:0"})
}

func startSocketWith(t *testing.T, js jetstream.JetStream, metrics *ingest.Metrics, cfg ingest.AuditSocketConfig) string {
	t.Helper()
	s, err := ingest.NewAuditSocket(cfg, js, metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("socket: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("socket source did not stop")
		}
	})
	return s.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Error(err)
	}
}

func TestAuditSocketConnectionsAndReconnects(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	addr := startSocket(t, js, nil)

	// Several devices (or one reconnecting) at once, each line stored once.
	var want []string
	var wg sync.WaitGroup
	for i := range 4 {
		es := entries("conn", 30)
		want = append(want, es...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, addr)
			w := bufio.NewWriter(c)
			for j, e := range es {
				_, _ = w.WriteString(e + "\n")
				if j%7 == i {
					_ = w.Flush()
				}
			}
			_ = w.Flush()
		}()
	}
	wg.Wait()
	waitUntil(t, "every entry stored", 30*time.Second, func() bool {
		return len(streamMessages(t, js, directStream, "vault.audit.socket")) >= len(want)
	})

	// A reconnection after the peer closed, and the same entry sent
	// again (a retried write) is stored once.
	again := entries("again", 2)
	c := dial(t, addr)
	send(t, c, lines(again[0]))
	_ = c.Close()
	c = dial(t, addr)
	send(t, c, lines(again[0], again[1]))
	want = append(want, again...)
	waitUntil(t, "the reconnection's entries", 30*time.Second, func() bool {
		return len(streamMessages(t, js, directStream, "vault.audit.socket")) >= len(want)
	})
	got := dataOf(streamMessages(t, js, directStream, "vault.audit.socket"))
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stored %d entries, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}

func TestAuditSocketOversizeAndInvalidLines(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	addr := startSocket(t, js, nil)
	e := entries("sock-bad", 2)
	long := `{"type":"response","pad":"` + strings.Repeat("y", 70000) + `"}`
	c := dial(t, addr)
	send(t, c, lines(e[0], long, "[1,2]", e[1])+`{"type":"req`)
	waitLines(t, js, "vault.audit.socket", e)
	_ = c.Close() // the partial line is dead-lettered
	waitUntil(t, "three dead letters", 10*time.Second, func() bool {
		return len(streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit")) == 3
	})
	dl := streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit")
	if !strings.HasPrefix(dl[0].reason, fmt.Sprintf("line of %d bytes is over", len(long))) || len(dl[0].data) != 2048 {
		t.Errorf("oversize: %q, %d bytes", dl[0].reason, len(dl[0].data))
	}
	if dl[1].data != "[1,2]" || dl[1].reason != "line is not a JSON object" {
		t.Errorf("invalid: %+v", dl[1])
	}
	if dl[2].data != `{"type":"req` || dl[2].reason != "connection closed in the middle of a line" {
		t.Errorf("partial: %+v", dl[2])
	}
}

// An entry counts as received only once JetStream stored it: while the
// stream is missing, nothing after the first line is read, and once it
// exists every line arrives, in order.
func TestAuditSocketStoresBeforeReadingOn(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	if err := bus.EnsureDeadLetterStream(context.Background(), js, "", directDL, 0, 1); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics := ingest.NewMetrics(reg)
	addr := startSocket(t, js, metrics)
	e := entries("wait", 3)
	c := dial(t, addr)
	send(t, c, lines(e...))
	retries := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "leaseguard_ingest_retries_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	waitUntil(t, "publish retries while the stream is missing", 20*time.Second, func() bool { return retries() >= 2 })
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: directStream, Subjects: []string{"vault.audit.>"}, Duplicates: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	waitLines(t, js, "vault.audit.socket", e)
}

// A line whose publish is retried (JetStream has no stream for it) keeps
// the socket source busy without progress, so it stalls; but each retry
// shows it is not blocked, so it never counts as wedged. Stored, the
// lines are progress and the source is idle again.
func TestAuditSocketReportsProgress(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	if err := bus.EnsureDeadLetterStream(context.Background(), js, "", directDL, 0, 1); err != nil {
		t.Fatal(err)
	}
	tracker := progress.NewTracker(nil)
	cfg := ingest.AuditSocketConfig{DirectConfig: directConfig("vault.audit.socket"), Addr: "127.0.0.1:0"}
	cfg.Progress = tracker.Worker("ingest.audit_socket")
	addr := startSocketWith(t, js, ingest.NewMetrics(nil), cfg)
	e := entries("progress", 3)
	send(t, dial(t, addr), lines(e...))
	var s progress.Status
	waitUntil(t, "the socket source stalled on its first line", 20*time.Second, func() bool {
		s = tracker.Status()[0]
		return s.Stalled >= 2*time.Second
	})
	if !s.Busy || s.Held >= s.Stalled-300*time.Millisecond {
		t.Errorf("retrying a publish: %+v, want a unit held for less than the stall (retries)", s)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: directStream, Subjects: []string{"vault.audit.>"}, Duplicates: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	waitLines(t, js, "vault.audit.socket", e)
	waitUntil(t, "the socket source idle again", 20*time.Second, func() bool {
		s = tracker.Status()[0]
		return !s.Busy && s.Units == 3
	})
}
