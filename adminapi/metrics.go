package adminapi

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a request is denied, the values of the reason label of
// leaseguard_admin_denied_total.
const (
	DeniedMissingCredentials = "missing_credentials"
	DeniedInvalidToken       = "invalid_token"
	DeniedUnknownClientCert  = "unknown_client_certificate"
	DeniedInsufficientScope  = "insufficient_scope"
	DeniedRateLimited        = "rate_limited"
	// DeniedAuthFailures: the client address failed authentication too
	// often; its credentials were not examined.
	DeniedAuthFailures = "too_many_auth_failures"
)

// metrics are the admin API's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	denied   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_admin_requests_total",
			Help: "Admin API requests by route (method and pattern; \"unmatched\" for none) and status code.",
		}, []string{"route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "leaseguard_admin_request_duration_seconds",
			Help:    "Time to answer an admin API request, by route.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_admin_denied_total",
			Help: "Admin API requests refused before reaching a handler, by reason: " +
				"missing_credentials, invalid_token, unknown_client_certificate (401), insufficient_scope (403), rate_limited (429, per principal), " +
				"too_many_auth_failures (429, per client address, credentials not examined).",
		}, []string{"reason"}),
	}
	for _, r := range []string{DeniedMissingCredentials, DeniedInvalidToken, DeniedUnknownClientCert, DeniedInsufficientScope, DeniedRateLimited, DeniedAuthFailures} {
		m.denied.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.requests, m.seconds, m.denied} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("admin api: metrics are already registered (one server per registry)")
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(route string, code int, seconds float64) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.seconds.WithLabelValues(route).Observe(seconds)
}
