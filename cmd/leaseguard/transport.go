package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/ingest"
)

// TransportConfig holds the NATS and Kafka connection settings. It is
// embedded in Config.
type TransportConfig struct {
	NATSListen      string `env:"LEASEGUARD_NATS_LISTEN" desc:"host:port where the embedded JetStream (NATS_URL empty) accepts a shipper and SIEM readers, each with an nkey generated in DATA_DIR/nats (deploy/nats/README.md); empty: no listener at all, leaseguard connects in-process"`
	NATSCredsFile   string `env:"LEASEGUARD_NATS_CREDS_FILE" desc:"NATS user credentials file (JWT + nkey seed)"`
	NATSNkeyFile    string `env:"LEASEGUARD_NATS_NKEY_FILE" desc:"NATS nkey seed file"`
	NATSTLSCAFile   string `env:"LEASEGUARD_NATS_TLS_CA_FILE" desc:"CA bundle to verify the NATS servers (turns TLS on)"`
	NATSTLSCertFile string `env:"LEASEGUARD_NATS_TLS_CERT_FILE" desc:"client certificate for NATS mutual TLS"`
	NATSTLSKeyFile  string `env:"LEASEGUARD_NATS_TLS_KEY_FILE" desc:"client key for NATS mutual TLS"`

	KafkaBrokers          string        `env:"LEASEGUARD_KAFKA_BROKERS" desc:"Kafka bootstrap brokers host:port,…; empty: no Kafka"`
	KafkaGroup            string        `env:"LEASEGUARD_KAFKA_GROUP" envDefault:"leaseguard" desc:"consumer group of the audit and lease topics"`
	KafkaAuditTopic       string        `env:"LEASEGUARD_KAFKA_AUDIT_TOPIC" envDefault:"vault.audit" desc:"topic of Vault audit entries (one per record, or newline-separated)"`
	KafkaLeaseTopic       string        `env:"LEASEGUARD_KAFKA_LEASE_TOPIC" envDefault:"vault.leases" desc:"topic of LeaseEvent documents (empty: off)"`
	KafkaDeadletterTopic  string        `env:"LEASEGUARD_KAFKA_DEADLETTER_TOPIC" envDefault:"leaseguard.deadletter" desc:"topic receiving malformed records, reason in headers"`
	KafkaEnvelopeField    string        `env:"LEASEGUARD_KAFKA_ENVELOPE_FIELD" desc:"the audit entry is under this field of a shipper's JSON envelope (Vector, Filebeat: message)"`
	KafkaSessionTimeout   time.Duration `env:"LEASEGUARD_KAFKA_SESSION_TIMEOUT" envDefault:"10s" desc:"how long the group waits for a silent consumer before its partitions go to the others: a killed leaseguard's partitions stand still this long (1s to 30m, and within the brokers' group.min/max.session.timeout.ms: Kafka's 6s to 30m)"`
	KafkaTLS              bool          `env:"LEASEGUARD_KAFKA_TLS" envDefault:"false" desc:"connect to Kafka over TLS"`
	KafkaTLSCAFile        string        `env:"LEASEGUARD_KAFKA_TLS_CA_FILE" desc:"CA bundle to verify the brokers (implies TLS)"`
	KafkaTLSCertFile      string        `env:"LEASEGUARD_KAFKA_TLS_CERT_FILE" desc:"client certificate for Kafka mutual TLS"`
	KafkaTLSKeyFile       string        `env:"LEASEGUARD_KAFKA_TLS_KEY_FILE" desc:"client key for Kafka mutual TLS"`
	KafkaSASLMechanism    string        `env:"LEASEGUARD_KAFKA_SASL_MECHANISM" desc:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: none"`
	KafkaSASLUsername     string        `env:"LEASEGUARD_KAFKA_SASL_USERNAME" desc:"SASL user name"`
	KafkaSASLPasswordFile string        `env:"LEASEGUARD_KAFKA_SASL_PASSWORD_FILE" desc:"file holding the SASL password (never the password itself in the environment)"`

	EvidenceSinks      string `env:"LEASEGUARD_EVIDENCE_SINKS" envDefault:"nats" desc:"where the relay publishes evidence: nats, kafka, or nats,kafka"`
	EvidenceKafkaTopic string `env:"LEASEGUARD_EVIDENCE_KAFKA_TOPIC" envDefault:"leaseguard.evidence" desc:"Kafka topic of evidence (key <database>/<user>, CloudEvents structured mode)"`
}

func (t TransportConfig) validate(typed *typedSettings, bad func(name, format string, args ...any)) {
	if (t.NATSTLSCertFile == "") != (t.NATSTLSKeyFile == "") {
		bad("NATS_TLS_CERT_FILE", "certificate and key (NATS_TLS_KEY_FILE) go together")
	}
	if (t.KafkaTLSCertFile == "") != (t.KafkaTLSKeyFile == "") {
		bad("KAFKA_TLS_CERT_FILE", "certificate and key (KAFKA_TLS_KEY_FILE) go together")
	}
	sinks, err := parseSinks(t.EvidenceSinks)
	if err != nil {
		bad("EVIDENCE_SINKS", "%v", err)
	}
	typed.sinks = sinks
	if sinks["kafka"] && t.KafkaBrokers == "" {
		bad("EVIDENCE_SINKS", "kafka needs LEASEGUARD_KAFKA_BROKERS")
	}
	if t.KafkaBrokers != "" {
		// Zero would mean the library's default: refused, as a typo.
		if t.KafkaSessionTimeout < time.Second || t.KafkaSessionTimeout > 30*time.Minute {
			bad("KAFKA_SESSION_TIMEOUT", "outside 1s..30m")
		} else if err := t.kafkaSourceConfig(ingest.DefaultKafkaConfig().Batch, nil, nil).Validate(); err != nil {
			bad("KAFKA_BROKERS", "%v", err)
		}
	}
	if t.KafkaSASLMechanism != "" {
		if _, err := ingest.NewKafkaSASL(t.KafkaSASLMechanism, "user", "password"); err != nil {
			bad("KAFKA_SASL_MECHANISM", "%v", err)
		}
		if t.KafkaSASLUsername == "" || t.KafkaSASLPasswordFile == "" {
			bad("KAFKA_SASL_USERNAME", "SASL needs a user name and LEASEGUARD_KAFKA_SASL_PASSWORD_FILE")
		}
	}
}

func parseSinks(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		switch p = strings.TrimSpace(p); p {
		case "":
		case "nats", "kafka":
			out[p] = true
		default:
			return nil, fmt.Errorf("unknown sink %q (nats, kafka)", p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no evidence sink")
	}
	return out, nil
}

// natsOptions are the security options for connecting to a NATS cluster.
func (t TransportConfig) natsOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if t.NATSCredsFile != "" {
		opts = append(opts, nats.UserCredentials(t.NATSCredsFile))
	}
	if t.NATSNkeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(t.NATSNkeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", env("NATS_NKEY_FILE"), err)
		}
		opts = append(opts, o)
	}
	if t.NATSTLSCAFile != "" {
		opts = append(opts, nats.RootCAs(t.NATSTLSCAFile))
	}
	if t.NATSTLSCertFile != "" {
		opts = append(opts, nats.ClientCert(t.NATSTLSCertFile, t.NATSTLSKeyFile))
	}
	return opts, nil
}

// kafkaSecurity builds the TLS configuration and SASL mechanism.
func (t TransportConfig) kafkaSecurity() (*tls.Config, sasl.Mechanism, error) {
	var tc *tls.Config
	if t.KafkaTLS || t.KafkaTLSCAFile != "" || t.KafkaTLSCertFile != "" {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
		if t.KafkaTLSCAFile != "" {
			pem, err := os.ReadFile(t.KafkaTLSCAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", env("KAFKA_TLS_CA_FILE"), err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("%s: no certificate in the file", env("KAFKA_TLS_CA_FILE"))
			}
			tc.RootCAs = pool
		}
		if t.KafkaTLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.KafkaTLSCertFile, t.KafkaTLSKeyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", env("KAFKA_TLS_CERT_FILE"), err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	if t.KafkaSASLMechanism == "" {
		return tc, nil, nil
	}
	pw, err := os.ReadFile(t.KafkaSASLPasswordFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", env("KAFKA_SASL_PASSWORD_FILE"), err)
	}
	mech, err := ingest.NewKafkaSASL(t.KafkaSASLMechanism, t.KafkaSASLUsername, strings.TrimRight(string(pw), "\r\n"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", env("KAFKA_SASL_MECHANISM"), err)
	}
	return tc, mech, nil
}

func (t TransportConfig) brokers() []string {
	var out []string
	for _, b := range strings.Split(t.KafkaBrokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func (t TransportConfig) kafkaSourceConfig(batch int, tc *tls.Config, mech sasl.Mechanism) ingest.KafkaConfig {
	kc := ingest.DefaultKafkaConfig()
	kc.Brokers = t.brokers()
	kc.Group = t.KafkaGroup
	kc.AuditTopic = t.KafkaAuditTopic
	kc.LeaseTopic = t.KafkaLeaseTopic
	kc.DeadLetterTopic = t.KafkaDeadletterTopic
	kc.EnvelopeField = t.KafkaEnvelopeField
	kc.SessionTimeout = t.KafkaSessionTimeout
	kc.Batch = batch
	kc.TLS = tc
	kc.SASL = mech
	return kc
}

func (t TransportConfig) evidenceKafkaConfig(tc *tls.Config, mech sasl.Mechanism) evidence.KafkaConfig {
	return evidence.KafkaConfig{Brokers: t.brokers(), Topic: t.EvidenceKafkaTopic, TLS: tc, SASL: mech}.WithDefaults()
}
