package main

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/store"
)

func gaugeOf(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestRelayMetricsBacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, "lg_relaymetrics")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := newRelayMetrics(reg, st.Pool())
	if v, _ := gaugeOf(t, reg, "leaseguard_evidence_outbox_pending"); v != 0 {
		t.Fatalf("pending %v in an empty outbox", v)
	}
	// Two events, the older created 90 s ago and still unpublished, the
	// newer published.
	for _, q := range []string{
		`INSERT INTO evidence_outbox (seq, id, type, prev_hash, hash, event, created_at) VALUES (1, 'a', 't', '', 'h1', '\x7b7d', now() - interval '90 seconds')`,
		`INSERT INTO evidence_outbox (seq, id, type, prev_hash, hash, event, published_at) VALUES (2, 'b', 't', 'h1', 'h2', '\x7b7d', now())`,
	} {
		if _, err := st.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := gaugeOf(t, reg, "leaseguard_evidence_outbox_pending"); v != 1 {
		t.Errorf("pending %v, want 1", v)
	}
	if v, _ := gaugeOf(t, reg, "leaseguard_evidence_outbox_oldest_pending_seconds"); v < 89 || v > 600 {
		t.Errorf("oldest pending %v s, want about 90", v)
	}
	if v, ok := gaugeOf(t, reg, "leaseguard_evidence_outbox_scrape_error"); !ok || v != 0 {
		t.Errorf("scrape error %v (present %v)", v, ok)
	}
	m.PublishFailed(evidence.Event{}, errors.New("bus down"))
	m.Published(evidence.Event{})
	m.Published(evidence.Event{})
	if v, _ := gaugeOf(t, reg, "leaseguard_evidence_relayed_total"); v != 2 {
		t.Errorf("relayed %v, want 2", v)
	}
	if v, _ := gaugeOf(t, reg, "leaseguard_evidence_relay_failures_total"); v != 1 {
		t.Errorf("failures %v, want 1", v)
	}
	// The outbox unreadable: the error gauge says so.
	st.Close()
	if v, _ := gaugeOf(t, reg, "leaseguard_evidence_outbox_scrape_error"); v != 1 {
		t.Errorf("scrape error %v after the pool closed, want 1", v)
	}
	if _, ok := gaugeOf(t, reg, "leaseguard_evidence_outbox_pending"); ok {
		t.Error("a pending value was reported though the outbox was unreadable")
	}
}
