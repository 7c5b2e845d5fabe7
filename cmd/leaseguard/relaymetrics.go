package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/evidence"
)

// relayMetrics counts what the evidence relay publishes and, when scraped,
// reads the outbox's backlog: the events not yet published and the age of
// the oldest, so a relay that stopped moving is seen before the SIEM
// misses evidence.
type relayMetrics struct {
	pool      *pgxpool.Pool
	published prometheus.Counter
	failed    prometheus.Counter
	pending   *prometheus.Desc
	oldest    *prometheus.Desc
	scrapeErr *prometheus.Desc
}

func newRelayMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *relayMetrics {
	m := &relayMetrics{
		pool: pool,
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "leaseguard_evidence_relayed_total",
			Help: "Evidence events the relay published (the bus acknowledged them)."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "leaseguard_evidence_relay_failures_total",
			Help: "Attempts to publish an evidence event that failed; the event is retried."}),
		pending: prometheus.NewDesc("leaseguard_evidence_outbox_pending",
			"Evidence events in the outbox not yet published, read when scraped.", nil, nil),
		oldest: prometheus.NewDesc("leaseguard_evidence_outbox_oldest_pending_seconds",
			"Age of the oldest unpublished evidence event (0: none), read when scraped.", nil, nil),
		scrapeErr: prometheus.NewDesc("leaseguard_evidence_outbox_scrape_error",
			"1 when the outbox backlog could not be read at this scrape.", nil, nil),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.failed, m)
	}
	return m
}

var _ evidence.RelayMetrics = (*relayMetrics)(nil)

func (m *relayMetrics) Published(evidence.Event)            { m.published.Inc() }
func (m *relayMetrics) PublishFailed(evidence.Event, error) { m.failed.Inc() }

// Describe implements prometheus.Collector for the backlog.
func (m *relayMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.pending
	ch <- m.oldest
	ch <- m.scrapeErr
}

// Collect reads the backlog (bounded by 2s; the unpublished rows have
// their own partial index).
func (m *relayMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n int64
	var age float64
	err := m.pool.QueryRow(ctx, `
		SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM evidence_outbox WHERE published_at IS NULL`).Scan(&n, &age)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(m.scrapeErr, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(m.scrapeErr, prometheus.GaugeValue, 0)
	ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, age)
}
