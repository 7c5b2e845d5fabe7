package ingest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/ingest"
)

// metricValue is the value of the series name{labels} in reg, and whether
// it exists.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func waitMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string, want float64) {
	t.Helper()
	waitUntil(t, name+" to reach the expected value", 20*time.Second, func() bool {
		v, ok := metricValue(t, reg, name, labels)
		return ok && v == want
	})
}

func TestAuditSocketMetrics(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	reg := prometheus.NewRegistry()
	addr := startSocket(t, js, ingest.NewMetrics(reg))
	socket := map[string]string{"transport": "socket"}

	if v, _ := metricValue(t, reg, "leaseguard_ingest_audit_socket_clients", nil); v != 0 {
		t.Fatalf("clients before any connection: %v", v)
	}
	before := time.Now()
	c := dial(t, addr)
	send(t, c, lines(entries("m1", 2)...))
	waitMetric(t, reg, "leaseguard_ingest_audit_socket_clients", nil, 1)
	waitMetric(t, reg, "leaseguard_ingest_audit_source_entries_total", socket, 2)
	last, ok := metricValue(t, reg, "leaseguard_ingest_audit_source_last_entry_timestamp_seconds", socket)
	if !ok || last < float64(before.Unix()) || last > float64(time.Now().Unix()+1) {
		t.Errorf("last entry time %v (present %v), want between %d and now", last, ok, before.Unix())
	}
	if v, _ := metricValue(t, reg, "leaseguard_ingest_audit_socket_connections_total", nil); v != 1 {
		t.Errorf("connections %v, want 1", v)
	}

	// The device goes away: counted, and the gauge drops to 0.
	_ = c.Close()
	waitMetric(t, reg, "leaseguard_ingest_audit_socket_disconnects_total", map[string]string{"reason": "closed"}, 1)
	waitMetric(t, reg, "leaseguard_ingest_audit_socket_clients", nil, 0)

	// It comes back: a second connection, the gauge at 1 again.
	c = dial(t, addr)
	send(t, c, lines(entries("m2", 1)...))
	waitMetric(t, reg, "leaseguard_ingest_audit_source_entries_total", socket, 3)
	waitMetric(t, reg, "leaseguard_ingest_audit_socket_connections_total", nil, 2)
	waitMetric(t, reg, "leaseguard_ingest_audit_socket_clients", nil, 1)
	if _, ok := metricValue(t, reg, "leaseguard_ingest_audit_source_entries_total", map[string]string{"transport": "file"}); ok {
		t.Error("a file source series exists though no file is followed")
	}
}

func TestAuditFileMetrics(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	st := newLedger(t)
	reg := prometheus.NewRegistry()
	path := filepath.Join(t.TempDir(), "audit.log")
	appendFile(t, path, lines(append(entries("f", 5), "not json")...))
	cfg := ingest.AuditFileConfig{DirectConfig: directConfig("vault.audit.file"), Path: path, PollInterval: 20 * time.Millisecond, Batch: 4}
	before := time.Now()
	f, err := ingest.NewAuditFile(cfg, js, st, ingest.NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("follower: %v", err)
		}
	}()
	file := map[string]string{"transport": "file"}
	// Five entries and one dead letter: every line stored counts.
	waitMetric(t, reg, "leaseguard_ingest_audit_source_entries_total", file, 6)
	waitMetric(t, reg, "leaseguard_ingest_dead_letters_total", file, 1)
	last, ok := metricValue(t, reg, "leaseguard_ingest_audit_source_last_entry_timestamp_seconds", file)
	if !ok || last < float64(before.Unix()) || last > float64(time.Now().Unix()+1) {
		t.Errorf("last entry time %v (present %v), want between %d and now", last, ok, before.Unix())
	}
	appendFile(t, path, lines(entries("g", 1)...))
	waitMetric(t, reg, "leaseguard_ingest_audit_source_entries_total", file, 7)
}
