package ingest

import "github.com/prometheus/client_golang/prometheus"

// Kinds the processor adds to the normaliser's.
const (
	// KindRejected: malformed input, dead-lettered.
	KindRejected Kind = "rejected"
	// KindLeaseEvent: a LeaseEvent document from another producer.
	KindLeaseEvent Kind = "lease_event"
)

// Metrics are ingest's Prometheus metrics, registered on the Registerer
// given to NewMetrics.
type Metrics struct {
	entries      *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	retries      *prometheus.CounterVec
	commitErrors *prometheus.CounterVec
	applyErrors  prometheus.Counter
	applySeconds prometheus.Histogram
	lag          prometheus.Histogram
	unrouted     prometheus.Counter
	direct       *directMetrics
	secrets      *secretMetrics
}

// NewMetrics creates and registers ingest metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_ingest_entries_total",
			Help: "Audit entries and lease events processed, by transport and kind.",
		}, []string{"transport", "kind"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_ingest_dead_letters_total",
			Help: "Malformed messages stored in the dead-letter destination, by transport.",
		}, []string{"transport"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_ingest_retries_total",
			Help: "Messages handed back for redelivery after a transient failure, by transport.",
		}, []string{"transport"}),
		commitErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_ingest_commit_errors_total",
			Help: "Offset commits that failed after the ledger write; the messages may be redelivered (harmless), by transport.",
		}, []string{"transport"}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_ingest_apply_errors_total",
			Help: "Ledger transactions that failed and were retried.",
		}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "leaseguard_ingest_apply_seconds",
			Help:    "Time to commit one batch to the ledger.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "leaseguard_ingest_lag_seconds",
			Help:    "From a lease event's time in Vault to its ledger commit.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_ingest_unrouted_leases_total",
			Help: "Lease events whose mount and role match no route (no target database known).",
		}),
		direct:  newDirectMetrics(),
		secrets: newSecretMetrics(),
	}
	if reg != nil {
		reg.MustRegister(m.entries, m.deadLetters, m.retries, m.commitErrors, m.applyErrors, m.applySeconds, m.lag, m.unrouted)
		reg.MustRegister(m.direct.collectors()...)
		reg.MustRegister(m.secrets.collectors()...)
	}
	return m
}
