package observer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the observer's Prometheus metrics.
type Metrics struct {
	pass      prometheus.Histogram
	changes   *prometheus.CounterVec
	duty      *prometheus.GaugeVec
	failures  *prometheus.CounterVec
	published *prometheus.CounterVec
}

// NewMetrics creates and registers (when reg is not nil) the observer's
// metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "leaseguard_observer_pass_seconds",
			Help:    "Duration of one observer pass over a target (read, diff, rules, commit).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_observer_changes_total",
			Help: "Role and session changes observed in the targets, by database and kind.",
		}, []string{"database", "kind"}),
		duty: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "leaseguard_observer_duty",
			Help: "1 while this process holds the duty of observing the database.",
		}, []string{"database"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_observer_pass_failures_total",
			Help: "Observer passes that failed (target unreachable, state store error, duty lost).",
		}, []string{"database"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_observer_events_published_total",
			Help: "RoleEvent and SessionEvent documents published.",
		}, []string{"database"}),
	}
	if reg != nil {
		reg.MustRegister(m.pass, m.changes, m.duty, m.failures, m.published)
	}
	return m
}
