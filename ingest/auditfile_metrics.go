package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// directMetrics are the direct audit sources' (file and socket) own
// metrics: what an on-call engineer needs to notice an audit gap, a socket
// device that disconnected or a source that went quiet.
type directMetrics struct {
	// entries counts lines stored from each source (dead letters included).
	entries *prometheus.CounterVec
	// lastEntry is the unix time the source last stored a line.
	lastEntry *prometheus.GaugeVec
	// clients is the number of socket audit devices connected now.
	clients prometheus.Gauge
	// connections and disconnects count socket device connections opened
	// and closed; disconnects by reason.
	connections prometheus.Counter
	disconnects *prometheus.CounterVec
	// refused counts TCP connections closed unread because the peer is
	// outside the allowed networks.
	refused prometheus.Counter
}

func newDirectMetrics() *directMetrics {
	return &directMetrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_ingest_audit_source_entries_total",
			Help: "Lines a direct audit source (file or socket) stored in JetStream, dead letters included, by transport.",
		}, []string{"transport"}),
		lastEntry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "leaseguard_ingest_audit_source_last_entry_timestamp_seconds",
			Help: "Unix time a direct audit source (file or socket) last stored a line, by transport.",
		}, []string{"transport"}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leaseguard_ingest_audit_socket_clients",
			Help: "Vault socket audit devices connected now.",
		}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_ingest_audit_socket_connections_total",
			Help: "Connections accepted from Vault socket audit devices.",
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_ingest_audit_socket_disconnects_total",
			Help: "Socket audit device connections that ended, by reason: closed (by Vault), error, idle, store_failed, shutdown.",
		}, []string{"reason"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_ingest_audit_socket_refused_total",
			Help: "Connections to the socket audit source closed before anything was read, because the peer's address is outside the allowed networks.",
		}),
	}
}

func (d *directMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{d.entries, d.lastEntry, d.clients, d.connections, d.disconnects, d.refused}
}

// Disconnect reasons (leaseguard_ingest_audit_socket_disconnects_total).
const (
	disconnectClosed      = "closed"
	disconnectError       = "error"
	disconnectIdle        = "idle"
	disconnectStoreFailed = "store_failed"
	disconnectShutdown    = "shutdown"
)

// stored records n lines stored by the source of transport.
func (m *Metrics) stored(transport string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.direct.entries.WithLabelValues(transport).Add(float64(n))
	m.direct.lastEntry.WithLabelValues(transport).Set(float64(time.Now().UnixNano()) / 1e9)
}

// socketConnected records a socket audit device connecting.
func (m *Metrics) socketConnected() {
	if m == nil {
		return
	}
	m.direct.connections.Inc()
	m.direct.clients.Inc()
}

// socketDisconnected records a socket audit device connection ending.
func (m *Metrics) socketDisconnected(reason string) {
	if m == nil {
		return
	}
	m.direct.disconnects.WithLabelValues(reason).Inc()
	m.direct.clients.Dec()
}

// socketRefused records a connection refused for its peer's address.
func (m *Metrics) socketRefused() {
	if m == nil {
		return
	}
	m.direct.refused.Inc()
}
