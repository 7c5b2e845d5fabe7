package vaultlink

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the Vault link. Never a token in a label.
type Metrics struct {
	requests *prometheus.CounterVec
	// tokenExpiry: unix time the token expires (0: it never does).
	tokenExpiry    prometheus.Gauge
	tokenRenewable prometheus.Gauge
	tokenNearEnd   prometheus.Gauge
	renewals       *prometheus.CounterVec
	revocations    *prometheus.CounterVec
	pending        prometheus.Gauge
	hmacLinks      prometheus.Counter
	hashed         *prometheus.CounterVec
	leaseHashed    *prometheus.CounterVec
	revokeLinks    prometheus.Counter
	revokePending  prometheus.Gauge
}

// NewMetrics registers the metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leaseguard_vault_requests_total",
			Help: "Vault API calls by operation and result (HTTP status, or unreachable)."}, []string{"op", "result"}),
		tokenExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "leaseguard_vault_token_expiry_timestamp_seconds",
			Help: "When leaseguard's Vault token expires (unix time; 0: never, or unknown)."}),
		tokenRenewable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "leaseguard_vault_token_renewable",
			Help: "1 while renewing leaseguard's Vault token still extends it (renewable, below its max TTL)."}),
		tokenNearEnd: prometheus.NewGauge(prometheus.GaugeOpts{Name: "leaseguard_vault_token_near_expiry",
			Help: "1 while leaseguard's Vault token expires within LEASEGUARD_VAULT_TOKEN_EXPIRY_WARNING and cannot be renewed past it: alert on it."}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leaseguard_vault_token_renewals_total",
			Help: "renew-self calls by result."}, []string{"result"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leaseguard_vault_lease_revocations_total",
			Help: "Leases revoked in Vault after their users were dropped, by method, and failed attempts."}, []string{"result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "leaseguard_vault_revocations_pending",
			Help: "Leases whose users were dropped and that Vault still has to let go of."}),
		hmacLinks: prometheus.NewCounter(prometheus.CounterOpts{Name: "leaseguard_vault_hmac_links_total",
			Help: "HMAC'd leases linked to their users through sys/audit-hash."}),
		hashed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leaseguard_vault_audit_hashes_total",
			Help: "Role names hashed through sys/audit-hash, by result."}, []string{"result"}),
		leaseHashed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leaseguard_vault_lease_id_hashes_total",
			Help: "Lease ids hashed through sys/audit-hash (each at most once per audit device), by reason (ahead: newly issued; wanted: a hashed revocation waits) and result."}, []string{"reason", "result"}),
		revokeLinks: prometheus.NewCounter(prometheus.CounterOpts{Name: "leaseguard_vault_revocation_links_total",
			Help: "Revocations through the API body (lease id logged as an HMAC) linked to their leases and applied to the ledger."}),
		revokePending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "leaseguard_vault_hashed_revocations_unlinked",
			Help: "Recent revocations through the API body not linked to a lease yet (a lease the ledger does not know, or not hashed yet)."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.tokenExpiry, m.tokenRenewable, m.tokenNearEnd, m.renewals, m.revocations,
			m.pending, m.hmacLinks, m.hashed, m.leaseHashed, m.revokeLinks, m.revokePending)
	}
	return m
}
