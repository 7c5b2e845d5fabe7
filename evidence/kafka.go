package evidence

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/leaseguard/leaseguard/bus"
)

// Kafka publisher defaults.
const (
	DefaultKafkaTopic = "leaseguard.evidence"
	// KafkaContentType is the content-type header of an event in the
	// CloudEvents Kafka binding's structured mode.
	KafkaContentType = ContentType + "; charset=UTF-8"
)

// KafkaConfig configures a KafkaPublisher.
type KafkaConfig struct {
	// Brokers are bootstrap addresses, host:port.
	Brokers []string
	// Topic receives the events (DefaultKafkaTopic when empty). It must
	// exist, or the brokers must create topics on first use.
	Topic string
	// ClientID names this client to the brokers ("leaseguard" when empty).
	ClientID string
	// TLS, when set, encrypts connections to the brokers.
	TLS *tls.Config
	// SASL, when set, authenticates to the brokers.
	SASL sasl.Mechanism
	// MaxAttempts bounds the attempts at one write within a Publish
	// (3 when zero); the relay retries after that.
	MaxAttempts int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c KafkaConfig) WithDefaults() KafkaConfig {
	if c.Topic == "" {
		c.Topic = DefaultKafkaTopic
	}
	if c.ClientID == "" {
		c.ClientID = "leaseguard"
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	return c
}

// Validate checks a configuration after WithDefaults.
func (c KafkaConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("evidence kafka: no brokers")
	}
	for _, b := range c.Brokers {
		if host, port, err := net.SplitHostPort(b); err != nil || host == "" || port == "" {
			return fmt.Errorf("evidence kafka: broker %q is not host:port", b)
		}
	}
	if err := bus.ValidKafkaTopic(c.Topic); err != nil {
		return fmt.Errorf("evidence kafka: topic: %w", err)
	}
	if c.MaxAttempts < 1 {
		return fmt.Errorf("evidence kafka: max attempts %d must be at least 1", c.MaxAttempts)
	}
	return nil
}

// KafkaPublisher publishes events to a Kafka topic in the CloudEvents Kafka
// binding's structured mode: the record value is the event exactly as
// stored in the outbox and the content-type header is KafkaContentType.
// The record key is the event's subject (<database>/<user>), so the events
// of one user share a partition and stay in order.
//
// Publish returns once every in-sync replica has the record (acks=all).
// Kafka does not de-duplicate on the event id: an event the relay publishes
// again (a lost ack, a crash before it recorded the publish) is stored
// again. Consumers de-duplicate on the CloudEvents id; VerifyFile skips an
// adjacent repeat.
type KafkaPublisher struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

var _ Publisher = (*KafkaPublisher)(nil)

// NewKafkaPublisher makes a publisher; Close releases its connections.
func NewKafkaPublisher(cfg KafkaConfig) (*KafkaPublisher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	transport := &kafka.Transport{
		DialTimeout: 5 * time.Second,
		ClientID:    cfg.ClientID,
		TLS:         cfg.TLS,
		SASL:        cfg.SASL,
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll,
		MaxAttempts:  cfg.MaxAttempts,
		// The relay publishes one event at a time and waits for it.
		BatchSize:    1,
		BatchTimeout: time.Millisecond,
		Transport:    transport,
	}
	return &KafkaPublisher{w: w, transport: transport}, nil
}

// Publish writes one event and waits for the brokers' acknowledgement.
func (p *KafkaPublisher) Publish(ctx context.Context, ev Event, body []byte) error {
	key := ev.Subject
	if key == "" {
		key = ev.Source
	}
	err := p.w.WriteMessages(ctx, kafka.Message{
		Key:     []byte(key),
		Value:   body,
		Headers: []kafka.Header{{Key: "content-type", Value: []byte(KafkaContentType)}},
	})
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == 1 && werrs[0] != nil {
		err = werrs[0]
	}
	if err != nil {
		return fmt.Errorf("kafka publish %s: %w", ev.ID, err)
	}
	return nil
}

// Close waits for writes in progress and closes the connections. It is
// safe to call more than once.
func (p *KafkaPublisher) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections()
	return err
}
