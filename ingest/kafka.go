package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
)

// Dead-letter record headers that only Kafka has (HeaderReason and
// HeaderSourceOffset are shared with JetStream).
const (
	HeaderSourceTopic     = "Leaseguard-Source-Topic"
	HeaderSourcePartition = "Leaseguard-Source-Partition"
	// HeaderSourceEntry is set on the dead letter of one entry of a record
	// that carries several: its position among them, from 1.
	HeaderSourceEntry = "Leaseguard-Source-Entry"
)

// SASL mechanisms NewKafkaSASL accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// KafkaConfig configures the Kafka source.
type KafkaConfig struct {
	// Brokers are bootstrap addresses, host:port.
	Brokers []string
	// Group is the consumer group; its committed offsets are the source's
	// position. A new group starts at the oldest record of each partition.
	Group string
	// AuditTopic carries Vault audit entries.
	AuditTopic string
	// LeaseTopic carries LeaseEvent documents, one per record; empty: off.
	LeaseTopic string
	// DeadLetterTopic receives malformed records, with the reason in the
	// headers. It must exist (or the brokers must create topics on first
	// use): until it does, a malformed record holds its partition back.
	DeadLetterTopic string
	// EnvelopeField, when set, says that an audit record's value is a
	// shipper's JSON envelope holding the Vault entry under this top-level
	// field, as a string (a raw log line) or an object. Empty: the value is
	// the entry itself. It does not apply to LeaseTopic.
	EnvelopeField string
	// Batch is how many messages (audit entries, lease events) one ledger
	// transaction takes at most; a record's entries always share one.
	Batch int
	// FillWait is how long a batch waits for more records once one has
	// arrived (0: DefaultKafkaConfig's).
	FillWait time.Duration
	// MaxWait is how long the broker may hold a fetch open for new records;
	// it also bounds how long stopping takes (0: DefaultKafkaConfig's).
	MaxWait time.Duration
	// QueueCapacity is how many records the client may fetch ahead of the
	// ledger (0: DefaultKafkaConfig's). At most Batch + QueueCapacity
	// records are in memory.
	QueueCapacity int
	// MaxFetchBytes bounds one fetch response (0: DefaultKafkaConfig's).
	MaxFetchBytes int
	// CommitInterval > 0 commits offsets asynchronously at this interval
	// (and at shutdown) instead of after every batch. Either way an offset
	// is handed over only once its records are in the ledger; a crash
	// between the two redelivers them, which the ledger ignores.
	CommitInterval time.Duration
	// SessionTimeout is how long the group coordinator waits without a
	// heartbeat before it gives a member's partitions to the others: the
	// time a killed (or cut off) consumer's partitions stand still. The
	// brokers accept it between their group.min.session.timeout.ms and
	// group.max.session.timeout.ms (Kafka's defaults: 6 s and 30 min).
	// Heartbeats go at a fifth of it, at most every 3 s (0:
	// DefaultKafkaConfig's).
	SessionTimeout time.Duration
	// ProcessTimeout bounds one batch: ledger transaction, dead letters and
	// offset commit (0: DefaultKafkaConfig's).
	ProcessTimeout time.Duration
	// Backoff between attempts at a batch that failed (ledger or
	// dead-letter topic unavailable), by consecutive failures.
	Backoff []time.Duration
	// ClientID names this client to the brokers.
	ClientID string
	// TLS, when set, encrypts connections to the brokers.
	TLS *tls.Config
	// SASL, when set, authenticates to the brokers (see NewKafkaSASL).
	// PLAIN sends the password as is: use it with TLS.
	SASL sasl.Mechanism
	// Progress hears of each batch handled (nil: nobody).
	Progress *progress.Worker
}

// DefaultKafkaSessionTimeout is Kafka's classic consumer default: a
// killed consumer's partitions move to the others within about that long.
const DefaultKafkaSessionTimeout = 10 * time.Second

// DefaultKafkaConfig returns the defaults (no brokers).
func DefaultKafkaConfig() KafkaConfig {
	return KafkaConfig{
		Group:           "leaseguard",
		AuditTopic:      "vault.audit",
		LeaseTopic:      "vault.leases",
		DeadLetterTopic: "leaseguard.deadletter",
		Batch:           500,
		FillWait:        5 * time.Millisecond,
		MaxWait:         500 * time.Millisecond,
		QueueCapacity:   1000,
		MaxFetchBytes:   16 << 20,
		SessionTimeout:  DefaultKafkaSessionTimeout,
		ProcessTimeout:  30 * time.Second,
		// Capped at a few seconds: ingest resumes as soon as the ledger or
		// the dead-letter topic is back.
		Backoff:  []time.Duration{time.Second, 2 * time.Second, 5 * time.Second},
		ClientID: "leaseguard",
	}
}

// withDefaults fills the zero tuning fields; names, brokers and Batch are
// left to Validate.
func (c KafkaConfig) withDefaults() KafkaConfig {
	d := DefaultKafkaConfig()
	if c.FillWait <= 0 {
		c.FillWait = d.FillWait
	}
	if c.MaxWait <= 0 {
		c.MaxWait = d.MaxWait
	}
	if c.QueueCapacity <= 0 {
		c.QueueCapacity = d.QueueCapacity
	}
	if c.MaxFetchBytes <= 0 {
		c.MaxFetchBytes = d.MaxFetchBytes
	}
	if c.ProcessTimeout <= 0 {
		c.ProcessTimeout = d.ProcessTimeout
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = d.SessionTimeout
	}
	if len(c.Backoff) == 0 {
		c.Backoff = d.Backoff
	}
	if c.ClientID == "" {
		c.ClientID = d.ClientID
	}
	return c
}

// Validate checks the configuration.
func (c KafkaConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka source: no brokers")
	}
	for _, b := range c.Brokers {
		if host, port, err := net.SplitHostPort(b); err != nil || host == "" || port == "" {
			return fmt.Errorf("kafka source: broker %q is not host:port", b)
		}
	}
	if c.Group == "" {
		return errors.New("kafka source: consumer group is required")
	}
	if err := bus.ValidKafkaTopic(c.AuditTopic); err != nil {
		return fmt.Errorf("kafka source: audit topic: %w", err)
	}
	if c.LeaseTopic != "" {
		if err := bus.ValidKafkaTopic(c.LeaseTopic); err != nil {
			return fmt.Errorf("kafka source: lease topic: %w", err)
		}
	}
	if err := bus.ValidKafkaTopic(c.DeadLetterTopic); err != nil {
		return fmt.Errorf("kafka source: dead-letter topic: %w", err)
	}
	switch {
	case c.AuditTopic == c.LeaseTopic:
		return fmt.Errorf("kafka source: audit and lease topics are both %q", c.AuditTopic)
	case c.DeadLetterTopic == c.AuditTopic || c.DeadLetterTopic == c.LeaseTopic:
		return fmt.Errorf("kafka source: dead-letter topic %q is also an input topic", c.DeadLetterTopic)
	case strings.TrimSpace(c.EnvelopeField) != c.EnvelopeField:
		return fmt.Errorf("kafka source: envelope field %q has surrounding spaces", c.EnvelopeField)
	case c.Batch <= 0:
		return fmt.Errorf("kafka source: batch %d must be positive", c.Batch)
	case c.FillWait < 0 || c.MaxWait < 0 || c.CommitInterval < 0 || c.ProcessTimeout < 0 || c.SessionTimeout < 0:
		return errors.New("kafka source: durations must not be negative")
	case c.SessionTimeout != 0 && (c.SessionTimeout < time.Second || c.SessionTimeout > 30*time.Minute):
		return fmt.Errorf("kafka source: session timeout %s is outside 1s..30m", c.SessionTimeout)
	case c.QueueCapacity < 0 || c.MaxFetchBytes < 0:
		return errors.New("kafka source: queue capacity and max fetch bytes must not be negative")
	}
	for _, d := range c.Backoff {
		if d <= 0 {
			return errors.New("kafka source: backoff durations must be positive")
		}
	}
	return nil
}

// NewKafkaSASL builds the SASL mechanism named by mechanism (PLAIN,
// SCRAM-SHA-256 or SCRAM-SHA-512, any case) for KafkaConfig.SASL and the
// evidence publisher. An empty mechanism means no SASL: nil, nil.
func NewKafkaSASL(mechanism, username, password string) (sasl.Mechanism, error) {
	if mechanism == "" {
		return nil, nil
	}
	if username == "" {
		return nil, fmt.Errorf("kafka sasl %s: username is required", mechanism)
	}
	switch strings.ToUpper(mechanism) {
	case SASLPlain:
		return plain.Mechanism{Username: username, Password: password}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, username, password)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, username, password)
	}
	return nil, fmt.Errorf("kafka sasl mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", mechanism)
}

// KafkaSource consumes the audit (and lease) topic with a consumer group.
//
// Records are processed in batches: one ledger transaction per batch, each
// partition's records in their order. After the transaction committed, the
// malformed records are written to the dead-letter topic and then the
// offsets are committed, each partition's only up to its first record that
// is not finished. A record is finished when every entry it carries is in
// the ledger or in the dead-letter topic.
//
// Unfinished records (ledger down, dead-letter topic unavailable) are kept
// in memory, in order, and make up the start of the next batch, after a
// backoff; the reader keeps its position, so nothing is fetched twice and
// nothing is skipped. The source holds at most one batch of records and
// the reader buffers at most QueueCapacity more, so a slow ledger slows
// fetching down rather than filling memory. If the process stops first,
// the records are redelivered from the committed offset. After a group
// rebalance the reader may deliver again records the source still holds;
// it ignores those copies, and never commits a partition past a record it
// holds. A commit for a partition the group has meanwhile given to another
// member can move that partition's offset back: that member's records are
// then delivered again, never lost. The ledger ignores every redelivery.
type KafkaSource struct {
	cfg     KafkaConfig
	proc    *Processor
	metrics *Metrics
	logger  *slog.Logger

	running atomic.Bool
	// held counts the records fetched and not finished.
	held   atomic.Int64
	reader atomic.Pointer[kafka.Reader]
	// dial, when set (tests), opens every connection to the brokers, so a
	// test can cut them all at once as a killed process's would be.
	dial func(ctx context.Context, network, address string) (net.Conn, error)
	// beforeCommit, when set (tests), runs after a batch's ledger
	// transaction and before its dead letters and offset commit; an error
	// makes Run return it at once, as a crash there would.
	beforeCommit func() error
}

// NewKafkaSource builds a source; Run consumes.
func NewKafkaSource(cfg KafkaConfig, proc *Processor, metrics *Metrics, logger *slog.Logger) (*KafkaSource, error) {
	if proc == nil {
		return nil, errors.New("kafka source: processor is nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &KafkaSource{cfg: cfg, proc: proc, metrics: metrics, logger: logger}, nil
}

// Run consumes until ctx is cancelled, then returns nil. The batch in hand
// when ctx ends is finished (ledger, dead letters, offsets), never
// half-applied; records still unfinished are left to the next consumer.
// Run closes every connection it opened before returning.
func (s *KafkaSource) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("kafka source: already running")
	}
	defer s.running.Store(false)

	transport := &kafka.Transport{
		DialTimeout: 10 * time.Second,
		ClientID:    s.cfg.ClientID,
		TLS:         s.cfg.TLS,
		SASL:        s.cfg.SASL,
		Dial:        s.dial,
	}
	defer transport.CloseIdleConnections()
	s.checkTopics(ctx, transport)

	rc := s.readerConfig()
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("kafka source: %w", err)
	}
	dl := &kafka.Writer{
		Addr:         kafka.TCP(s.cfg.Brokers...),
		Topic:        s.cfg.DeadLetterTopic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		MaxAttempts:  3,
		BatchTimeout: time.Millisecond,
		Transport:    transport,
		ErrorLogger:  s.kafkaLogger(slog.LevelWarn),
	}
	defer func() {
		if err := dl.Close(); err != nil {
			s.logger.Warn("close dead-letter writer", "err", err)
		}
	}()
	r := kafka.NewReader(rc)
	s.reader.Store(r)
	defer func() {
		s.reader.Store(nil)
		s.held.Store(0)
		if err := r.Close(); err != nil {
			s.logger.Warn("close kafka reader", "err", err)
		}
	}()
	c := &kafkaConsumer{s: s, r: r, dl: dl, committed: make(map[topicPartition]int64)}
	s.logger.Info("ingest consuming", "transport", "kafka", "group", s.cfg.Group, "topics", rc.GroupTopics)
	return c.run(ctx)
}

// Ping says whether a broker answers: a connection (TLS and SASL as
// configured) and an ApiVersions round trip to the first broker that takes
// one, within ctx. /readyz runs it: a source cut off from every broker has
// no messages in hand, so its worker never looks stalled, yet nothing is
// ingested.
func (s *KafkaSource) Ping(ctx context.Context) error {
	d := s.readerConfig().Dialer
	var errs []error
	for _, b := range s.cfg.Brokers {
		if err := pingBroker(ctx, d, b); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	return fmt.Errorf("no Kafka broker answers: %w", errors.Join(errs...))
}

func pingBroker(ctx context.Context, d *kafka.Dialer, broker string) error {
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	_, err = conn.ApiVersions()
	return err
}

func (s *KafkaSource) topics() []string {
	if s.cfg.LeaseTopic == "" {
		return []string{s.cfg.AuditTopic}
	}
	return []string{s.cfg.AuditTopic, s.cfg.LeaseTopic}
}

func (s *KafkaSource) readerConfig() kafka.ReaderConfig {
	return kafka.ReaderConfig{
		Brokers:     s.cfg.Brokers,
		GroupID:     s.cfg.Group,
		GroupTopics: s.topics(),
		Dialer: &kafka.Dialer{
			ClientID:      s.cfg.ClientID,
			Timeout:       10 * time.Second,
			DualStack:     true,
			TLS:           s.cfg.TLS,
			SASLMechanism: s.cfg.SASL,
			DialFunc:      s.dial,
		},
		QueueCapacity:         s.cfg.QueueCapacity,
		MinBytes:              1,
		MaxBytes:              s.cfg.MaxFetchBytes,
		MaxWait:               s.cfg.MaxWait,
		ReadLagInterval:       -1,
		CommitInterval:        s.cfg.CommitInterval,
		SessionTimeout:        s.cfg.SessionTimeout,
		HeartbeatInterval:     heartbeatInterval(s.cfg.SessionTimeout),
		WatchPartitionChanges: true,
		StartOffset:           kafka.FirstOffset,
		Logger:                s.kafkaLogger(slog.LevelDebug),
		ErrorLogger:           s.kafkaLogger(slog.LevelWarn),
	}
}

// heartbeatInterval is a fifth of the session timeout, at most 3 s (the
// client's default): several heartbeats may be lost before the session
// ends, and a rebalance reaches a member within one interval.
func heartbeatInterval(session time.Duration) time.Duration {
	return min(session/5, 3*time.Second)
}

func (s *KafkaSource) kafkaLogger(level slog.Level) kafka.Logger {
	return kafka.LoggerFunc(func(format string, args ...any) {
		if s.logger.Enabled(context.Background(), level) {
			s.logger.Log(context.Background(), level, "kafka client: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
		}
	})
}

// checkTopics warns about input and dead-letter topics that do not exist:
// the group reads nothing from a missing topic until it is created.
func (s *KafkaSource) checkTopics(ctx context.Context, transport *kafka.Transport) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(s.cfg.Brokers...), Transport: transport}
	topics := append(s.topics(), s.cfg.DeadLetterTopic)
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("kafka metadata unavailable; will keep trying", "err", err)
		}
		return
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			s.logger.Warn("kafka topic unavailable", "topic", t.Name, "err", t.Error)
		}
	}
}

// process runs the processor, turning a panic into a retry of the batch.
func (s *KafkaSource) process(ctx context.Context, msgs []Message) (results []Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in processing: %v", p)
			results = make([]Result, len(msgs))
			for i := range results {
				results[i] = Result{Disposition: Retry, Reason: err.Error()}
			}
		}
	}()
	return s.proc.Process(ctx, msgs)
}

func (s *KafkaSource) backoff(failures int) time.Duration {
	i := min(failures, len(s.cfg.Backoff)) - 1
	return s.cfg.Backoff[max(i, 0)]
}

type topicPartition struct {
	topic     string
	partition int
}

// kafkaConsumer is the state of one Run.
type kafkaConsumer struct {
	s  *KafkaSource
	r  *kafka.Reader
	dl *kafka.Writer
	// committed is the offset last committed per partition in this run.
	committed map[topicPartition]int64
}

func (c *kafkaConsumer) run(ctx context.Context) error {
	var pending []*kafkaRecord
	failures := 0
	for {
		if failures > 0 {
			wait := c.s.backoff(failures)
			c.s.logger.Warn("ingest records will be retried", "transport", "kafka", "records", len(pending), "retry_in", wait)
			if !pause.For(ctx, wait, nil) {
				c.stopping(pending)
				return nil
			}
		}
		batch, err := c.fill(ctx, pending)
		if err != nil {
			c.stopping(pending)
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// Finish the batch even if ctx ends now: its ledger changes, dead
		// letters and offsets belong together.
		c.s.cfg.Progress.Start()
		pending, err = c.handle(context.WithoutCancel(ctx), batch)
		c.s.cfg.Progress.Finish(unfinished(len(pending), err))
		if err != nil {
			return err
		}
		c.s.held.Store(int64(len(pending)))
		if len(pending) > 0 {
			failures++
		} else {
			failures = 0
		}
		if ctx.Err() != nil {
			c.stopping(pending)
			return nil
		}
	}
}

// errUnfinished: records of the batch wait for a retry.
var errUnfinished = errors.New("records left for a retry")

// unfinished is what a batch that left n records for a retry (or failed
// with err) tells the progress tracker.
func unfinished(n int, err error) error {
	if err == nil && n > 0 {
		return errUnfinished
	}
	return err
}

func (c *kafkaConsumer) stopping(pending []*kafkaRecord) {
	if len(pending) > 0 {
		c.s.logger.Info("ingest stopping; unfinished records will be redelivered", "transport", "kafka", "records", len(pending))
	}
}

// fill returns pending followed by newly fetched records: it waits for
// one record when pending is empty, then up to FillWait for more, until
// the batch holds Batch messages.
func (c *kafkaConsumer) fill(ctx context.Context, pending []*kafkaRecord) ([]*kafkaRecord, error) {
	batch := append(make([]*kafkaRecord, 0, len(pending)+16), pending...)
	held := make(map[kafkaRecordID]bool, len(pending))
	size := 0
	for _, rec := range pending {
		held[rec.id()] = true
		size += rec.size()
	}
	add := func(m kafka.Message) {
		rec := c.s.parseRecord(m)
		if held[rec.id()] {
			return // delivered again after a rebalance; we hold it already
		}
		held[rec.id()] = true
		batch = append(batch, rec)
		size += rec.size()
		c.s.held.Store(int64(len(batch)))
	}
	if len(batch) == 0 {
		m, err := c.next(ctx)
		if err != nil {
			return nil, err
		}
		add(m)
	}
	fillCtx, cancel := context.WithTimeout(ctx, c.s.cfg.FillWait)
	defer cancel()
	for size < c.s.cfg.Batch {
		m, err := c.r.FetchMessage(fillCtx)
		if err != nil {
			if fillCtx.Err() == nil {
				c.s.logger.Warn("kafka fetch", "err", err)
			}
			break
		}
		add(m)
	}
	return batch, nil
}

// next waits for a record, riding out broker errors.
func (c *kafkaConsumer) next(ctx context.Context) (kafka.Message, error) {
	for {
		m, err := c.r.FetchMessage(ctx)
		switch {
		case err == nil:
			return m, nil
		case ctx.Err() != nil:
			return kafka.Message{}, ctx.Err()
		case errors.Is(err, io.EOF):
			return kafka.Message{}, fmt.Errorf("kafka source: reader closed: %w", err)
		}
		c.s.logger.Warn("kafka fetch; retrying", "err", err)
		if !pause.For(ctx, time.Second, nil) {
			return kafka.Message{}, ctx.Err()
		}
	}
}

// deadEntry is an entry (or, with entry -1, a whole record) to dead-letter.
type deadEntry struct {
	entry  int
	reason string
}

// handle processes one batch and returns the records that are not
// finished, in order. Its error is the test hook's.
func (c *kafkaConsumer) handle(ctx context.Context, batch []*kafkaRecord) ([]*kafkaRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, c.s.cfg.ProcessTimeout)
	defer cancel()

	retry := make([]bool, len(batch))
	dead := make([][]deadEntry, len(batch))
	var msgs []Message
	var owner []int // record index of each message
	for i, rec := range batch {
		if rec.reject != "" {
			dead[i] = []deadEntry{{entry: -1, reason: rec.reject}}
			if c.s.metrics != nil {
				c.s.metrics.entries.WithLabelValues("kafka", string(KindRejected)).Inc()
			}
			continue
		}
		for _, e := range rec.entries {
			msgs = append(msgs, Message{Data: e, LeaseEvent: rec.lease, Source: rec.sourceRef()})
			owner = append(owner, i)
		}
	}
	results, err := c.s.process(ctx, msgs)
	if err != nil {
		c.s.logger.Warn("ingest batch will be retried", "transport", "kafka", "messages", len(msgs), "err", err)
	}
	c.warnPlaintext(results)
	if err == nil && c.s.beforeCommit != nil {
		if hookErr := c.s.beforeCommit(); hookErr != nil {
			return nil, hookErr
		}
	}
	entry := 0
	for j, r := range results {
		i := owner[j]
		if j > 0 && owner[j-1] != i {
			entry = 0
		}
		switch r.Disposition {
		case Retry:
			retry[i] = true
		case DeadLetter:
			dead[i] = append(dead[i], deadEntry{entry: entry, reason: r.Reason})
		}
		entry++
	}

	// A partition's records are finished in order: the first that is not
	// holds back every later one.
	done := finishedInOrder(batch, func(i int) bool { return !retry[i] })
	if failed := c.deadLetter(ctx, batch, dead, done); len(failed) > 0 {
		done = finishedInOrder(batch, func(i int) bool { return !retry[i] && !failed[i] })
	}
	kept := c.commit(ctx, batch, done)
	if len(kept) > 0 && c.s.metrics != nil {
		n := 0
		for _, rec := range kept {
			n += rec.size()
		}
		c.s.metrics.retries.WithLabelValues("kafka").Add(float64(n))
	}
	return kept, nil
}

// warnPlaintext says when records carried plaintext secrets: the ledger
// and dead letters got them redacted, but Kafka keeps the records until
// the topic's retention (the topic must not receive plaintext).
func (c *kafkaConsumer) warnPlaintext(results []Result) {
	n := 0
	for _, r := range results {
		if r.PlaintextSecret {
			n++
		}
	}
	if n > 0 {
		c.s.logger.Warn("audit records carried plaintext secrets; leaseguard stored them redacted, but the Kafka topic keeps them: "+
			"tune the Vault mount to hash them or redact in the shipper", "entries", n)
	}
}

// finishedInOrder marks the records that may be committed: ok, and no
// record of the same partition before them in the batch is not ok.
func finishedInOrder(batch []*kafkaRecord, ok func(int) bool) []bool {
	done := make([]bool, len(batch))
	blocked := make(map[topicPartition]bool)
	for i, rec := range batch {
		tp := rec.tp()
		if blocked[tp] || !ok(i) {
			blocked[tp] = true
			continue
		}
		done[i] = true
	}
	return done
}

// deadLetter writes the dead letters of the finished records and returns
// the records whose dead letters could not be written.
func (c *kafkaConsumer) deadLetter(ctx context.Context, batch []*kafkaRecord, dead [][]deadEntry, done []bool) map[int]bool {
	var out []kafka.Message
	var from []int
	for i, rec := range batch {
		if !done[i] {
			continue
		}
		for _, d := range dead[i] {
			out = append(out, rec.deadLetter(d))
			from = append(from, i)
		}
	}
	if len(out) == 0 {
		return nil
	}
	failed := make(map[int]bool)
	err := c.dl.WriteMessages(ctx, out...)
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
	case errors.As(err, &werrs) && len(werrs) == len(out):
		for j, e := range werrs {
			if e != nil {
				failed[from[j]] = true
			}
		}
	default:
		for _, i := range from {
			failed[i] = true
		}
	}
	for j, m := range out {
		rec := batch[from[j]]
		reason := string(headerValue(m.Headers, HeaderReason))
		if failed[from[j]] {
			c.s.logger.Error("dead-letter publish failed; will retry", "err", err, "reason", reason,
				"topic", rec.msg.Topic, "partition", rec.msg.Partition, "offset", rec.msg.Offset)
			continue
		}
		c.s.logger.Warn("audit entry dead-lettered", "reason", reason,
			"topic", rec.msg.Topic, "partition", rec.msg.Partition, "offset", rec.msg.Offset)
		if c.s.metrics != nil {
			c.s.metrics.deadLetters.WithLabelValues("kafka").Inc()
		}
	}
	return failed
}

// commit commits the offsets commitPlan gives that move past this run's
// last commit, and returns the kept records.
func (c *kafkaConsumer) commit(ctx context.Context, batch []*kafkaRecord, done []bool) []*kafkaRecord {
	next, kept := commitPlan(batch, done)
	var commits []kafka.Message
	for tp, n := range next {
		if n <= c.committed[tp] {
			continue
		}
		// kafka-go commits a message's offset + 1.
		commits = append(commits, kafka.Message{Topic: tp.topic, Partition: tp.partition, Offset: n - 1})
	}
	if len(commits) == 0 {
		return kept
	}
	if err := c.r.CommitMessages(ctx, commits...); err != nil {
		// The records are in the ledger: a later commit covers them, or
		// they are redelivered and ignored.
		c.s.logger.Warn("kafka offset commit failed; records may be redelivered (harmless)", "err", err)
		if c.s.metrics != nil {
			c.s.metrics.commitErrors.WithLabelValues("kafka").Inc()
		}
		return kept
	}
	for _, m := range commits {
		c.committed[topicPartition{topic: m.Topic, partition: m.Partition}] = m.Offset + 1
	}
	return kept
}

// commitPlan returns, per partition with finished records, the offset to
// commit: the one after its highest finished record, but never past the
// lowest record it keeps (after a rebalance the batch may hold a
// partition's records out of offset order). It also returns the records
// that are not finished, in batch order.
func commitPlan(batch []*kafkaRecord, done []bool) (map[topicPartition]int64, []*kafkaRecord) {
	next := make(map[topicPartition]int64)
	lowestKept := make(map[topicPartition]int64)
	var kept []*kafkaRecord
	for i, rec := range batch {
		tp := rec.tp()
		if done[i] {
			next[tp] = max(next[tp], rec.msg.Offset+1)
			continue
		}
		kept = append(kept, rec)
		if low, ok := lowestKept[tp]; !ok || rec.msg.Offset < low {
			lowestKept[tp] = rec.msg.Offset
		}
	}
	for tp, n := range next {
		if low, ok := lowestKept[tp]; ok && low < n {
			next[tp] = low
		}
	}
	return next, kept
}

func headerValue(hs []kafka.Header, key string) []byte {
	for _, h := range hs {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// formatInt is strconv.FormatInt for header values.
func formatInt(v int64) []byte { return strconv.AppendInt(nil, v, 10) }
