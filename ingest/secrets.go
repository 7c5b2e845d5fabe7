package ingest

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/schemas"
)

// Plaintext secrets in the audit stream. A Vault mount tuned with
// audit_non_hmac_response_keys=password (or a device with log_raw) writes
// passwords and tokens in clear. ingest keeps them out of everything it
// stores: the ledger reads the entry redacted (Processor), dead letters
// are redacted (redactDeadLetter), the direct sources redact before they
// publish, and an entry a shipper published straight onto the audit
// subject is erased from the stream once ingest is done with it
// (NATSSource.erase). Kafka records cannot be deleted one by one: the
// topic must not receive plaintext (see docs/sources.md).

// secretMetrics count the plaintext secrets ingest met.
type secretMetrics struct {
	entries     *prometheus.CounterVec
	erased      prometheus.Counter
	eraseErrors prometheus.Counter
}

func newSecretMetrics() *secretMetrics {
	return &secretMetrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_ingest_plaintext_secret_entries_total",
			Help: "Audit entries that arrived carrying a plaintext secret (redacted before anything was stored), by transport.",
		}, []string{"transport"}),
		erased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_ingest_secret_messages_erased_total",
			Help: "Audit stream messages carrying a plaintext secret erased once ingest had committed them.",
		}),
		eraseErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_ingest_secret_erase_failures_total",
			Help: "Audit stream messages carrying a plaintext secret that could not be erased (kept until the stream's max age).",
		}),
	}
}

func (m *secretMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.entries, m.erased, m.eraseErrors}
}

// redactDeadLetter returns a dead letter's body and reason with every
// secret redacted: a dead letter keeps what went wrong, never a password.
func redactDeadLetter(body []byte, reason string) ([]byte, string) {
	b, _ := schemas.Redact(body)
	r, _ := schemas.RedactText(reason)
	return b, r
}

// erase removes a message whose entry carried a plaintext secret from the
// audit stream, once ingest is done with it: the ledger has the entry
// (redacted) or its dead letter is stored (redacted). SecureDeleteMsg
// overwrites the stored bytes. A failure is logged and counted, never the
// value; the message then stays until the stream's max age.
func (s *NATSSource) erase(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err == nil && s.stream == nil {
		err = errors.New("audit stream not ensured")
	}
	if err == nil {
		err = s.stream.SecureDeleteMsg(ctx, md.Sequence.Stream)
	}
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return // erased on an earlier delivery
	case err != nil:
		s.logger.Warn("could not erase an audit message that carried a plaintext secret; it stays until the stream's max age",
			"subject", m.Subject(), "err", err)
		if s.metrics != nil {
			s.metrics.secrets.eraseErrors.Inc()
		}
		return
	}
	s.logger.Info("audit message that carried a plaintext secret erased after ingest", "subject", m.Subject(), "seq", md.Sequence.Stream)
	if s.metrics != nil {
		s.metrics.secrets.erased.Inc()
	}
}
