package alert

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the dispatcher's Prometheus metrics.
type metrics struct {
	sent         *prometheus.CounterVec
	failed       *prometheus.CounterVec
	pending      *prometheus.GaugeVec
	opened       *prometheus.CounterVec
	deduplicated *prometheus.CounterVec
	resolved     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, sinks []string) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_alerts_sent_total",
			Help: "Alert notifications a sink accepted, by sink and action (trigger, resolve; re-sends of firing alerts count as trigger).",
		}, []string{"sink", "action"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_alerts_failed_total",
			Help: "Alert notifications a sink did not accept, by sink; each is retried with backoff.",
		}, []string{"sink"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "leaseguard_alerts_pending",
			Help: "Alert notifications waiting for delivery, by sink (a trigger or resolve the sink has not acknowledged yet).",
		}, []string{"sink"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_alerts_opened_total",
			Help: "Alerts raised from findings at or above the alert threshold, by rule and severity.",
		}, []string{"rule", "severity"}),
		deduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_alerts_deduplicated_total",
			Help: "Findings that joined an existing alert (same rule, database and user) instead of raising one, by rule.",
		}, []string{"rule"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_alerts_resolved_total",
			Help: "Alerts resolved, by rule and how: revocation (the user was dropped) or timeout (no finding for the auto-resolve time).",
		}, []string{"rule", "by"}),
	}
	for _, s := range sinks {
		m.sent.WithLabelValues(s, string(ActionTrigger))
		m.sent.WithLabelValues(s, string(ActionResolve))
		m.failed.WithLabelValues(s)
		m.pending.WithLabelValues(s)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.failed, m.pending, m.opened, m.deduplicated, m.resolved} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("alert: metrics are already registered (one dispatcher per registry)")
			}
			return nil, err
		}
	}
	return m, nil
}
