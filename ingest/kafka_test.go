package ingest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leaseguard/leaseguard/ingest"
)

// startKafkaSource runs a Kafka source with cfg on ledger until cleanup.
func startKafkaSource(t *testing.T, cfg ingest.KafkaConfig, ledger ingest.Ledger) *runningSource {
	t.Helper()
	src, err := ingest.NewKafkaSource(cfg, newProcessor(t, ledger), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return runSource(t, src.Run, src.InFlight)
}

func fixtureLines(t *testing.T) [][]byte {
	var out [][]byte
	for _, r := range fixtureRecords(t) {
		out = append(out, r.value)
	}
	return out
}

// The real Vault log arrives in the shapes shippers produce: a line per
// record, several lines per record, a line inside a JSON envelope, an
// entry object inside one. Each gives the same ledger.
func TestKafkaIngestShippedShapes(t *testing.T) {
	t.Parallel()
	envelope := func(field string, entry []byte, asObject bool) []byte {
		env := map[string]any{"host": "vault-1", "source_type": "file", "timestamp": "2026-11-25T19:23:40Z",
			"file": "/var/log/vault/audit.log"}
		if asObject {
			env[field] = json.RawMessage(entry)
		} else {
			env[field] = string(entry)
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name     string
		envelope string
		records  func(lines [][]byte) [][]byte
	}{
		{"line per record", "", func(lines [][]byte) [][]byte { return lines }},
		{"lines per record", "", func(lines [][]byte) [][]byte {
			var out [][]byte
			for i := 0; i < len(lines); i += 5 {
				chunk := lines[i:min(i+5, len(lines))]
				out = append(out, append(joinLines(chunk), '\n'))
			}
			return out
		}},
		{"string envelope", "message", func(lines [][]byte) [][]byte {
			var out [][]byte
			for _, l := range lines {
				out = append(out, envelope("message", l, false))
			}
			return out
		}},
		{"object envelope", "log", func(lines [][]byte) [][]byte {
			var out [][]byte
			for _, l := range lines {
				out = append(out, envelope("log", l, true))
			}
			return out
		}},
		{"envelope of lines", "message", func(lines [][]byte) [][]byte {
			return [][]byte{envelope("message", joinLines(lines), false)}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newKafkaHarness(t).(*kafkaHarness)
			st := newLedger(t)
			var recs []testRecord
			for _, v := range c.records(fixtureLines(t)) {
				recs = append(recs, testRecord{key: "vault-1", value: v})
			}
			h.publish(t, recs...)
			cfg := testKafkaConfig(h.brokers, runOpts{batch: 50})
			cfg.EnvelopeField = c.envelope
			src := startKafkaSource(t, cfg, st)
			drained(t, h, 20*time.Second)
			if err := src.stop(t); err != nil {
				t.Fatalf("run: %v", err)
			}
			iss, err := st.Lease(context.Background(), issuedLease)
			if err != nil || iss.State != "active" || iss.RenewedAt == nil || iss.Database != "test" {
				t.Errorf("issued lease = %+v, %v", iss, err)
			}
			if s := leaseState(t, st, revokedLease); s != "revoked" {
				t.Errorf("revoked lease is %s", s)
			}
			if dls := h.deadLetters(t); len(dls) != 0 {
				t.Errorf("dead letters: %+v", dls)
			}
		})
	}
}

func joinLines(lines [][]byte) []byte {
	var b []byte
	for i, l := range lines {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, l...)
	}
	return b
}

// Envelopes that do not hold an entry are dead-lettered whole, with the
// reason; one bad entry of a record with several is dead-lettered alone,
// with its position, and the others are applied.
func TestKafkaEnvelopeDeadLetters(t *testing.T) {
	t.Parallel()
	h := newKafkaHarness(t).(*kafkaHarness)
	st := newLedger(t)
	lines := fixtureLines(t)
	several, err := json.Marshal(map[string]string{"message": string(lines[19]) + "\ngarbage\n" + string(lines[21])})
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t,
		testRecord{key: "a", value: []byte("plain text, not an envelope")},
		testRecord{key: "a", value: []byte(`{"msg":"wrong field"}`)},
		testRecord{key: "a", value: []byte(`{"message":42}`)},
		testRecord{key: "a", value: []byte(`{"message":"{\"type\":\"response\""`)},
		testRecord{key: "a", value: several},
	)
	cfg := testKafkaConfig(h.brokers, runOpts{batch: 50})
	cfg.EnvelopeField = "message"
	src := startKafkaSource(t, cfg, st)
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	want := []struct{ value, reason string }{
		{"plain text, not an envelope", "shipper envelope: not JSON"},
		{`{"msg":"wrong field"}`, `shipper envelope has no "message" field`},
		{`{"message":42}`, `shipper envelope field "message" is a number, want a string or an object`},
		{`{"message":"{\"type\":\"response\""`, "shipper envelope looks truncated"},
		{"garbage", "not JSON"},
	}
	msgs := readTopic(t, h.brokers[0], testDeadLetterTopic, 0)
	if len(msgs) != len(want) {
		t.Fatalf("%d dead letters, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		hs := headers(m)
		if string(m.Value) != want[i].value || !strings.HasPrefix(hs[ingest.HeaderReason], want[i].reason) {
			t.Errorf("dead letter %d = %q, reason %q; want %q, %q", i, m.Value, hs[ingest.HeaderReason], want[i].value, want[i].reason)
		}
		if hs[ingest.HeaderSourceTopic] != testAuditTopic || hs[ingest.HeaderSourcePartition] == "" || hs[ingest.HeaderSourceOffset] == "" ||
			string(m.Key) != "a" {
			t.Errorf("dead letter %d headers %v, key %q", i, hs, m.Key)
		}
	}
	if got := headers(msgs[4])[ingest.HeaderSourceEntry]; got != "2" {
		t.Errorf("entry position of the bad line = %q, want 2", got)
	}
	if got := headers(msgs[0])[ingest.HeaderSourceEntry]; got != "" {
		t.Errorf("a whole-record dead letter has an entry position %q", got)
	}
	if s := leaseState(t, st, issuedLease); s != "active" {
		t.Errorf("lease of the first line is %s", s)
	}
	if s := leaseState(t, st, revokedLease); s != "active" {
		t.Errorf("lease of the third line is %s", s)
	}
}

func headers(m kafka.Message) map[string]string {
	out := map[string]string{}
	for _, h := range m.Headers {
		out[h.Key] = string(h.Value)
	}
	return out
}

// While the dead-letter topic is unavailable, a malformed record holds its
// partition back: the offset is committed up to it and no further, the
// records after it are applied again until it can be stored, and then
// everything is committed.
func TestKafkaDeadLetterTopicUnavailable(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testAuditTopic, testLeaseTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	h := harnessOn(t, brokers)
	st := newLedger(t)
	log := newLeaseLog(st)
	a, b := leaseStory(t, "before", 2), leaseStory(t, "after", 2)
	h.publish(t, a[0], testRecord{key: "x", lease: true, value: []byte(`{"kind":"nonsense"}`)}, b[0])

	src := startKafkaSource(t, testKafkaConfig(brokers, runOpts{batch: 10}), log)
	after := expectedEvents(t, b[:1])[0]
	waitUntil(t, "the record after the malformed one to be retried", 10*time.Second, func() bool {
		n := 0
		for _, e := range log.events() {
			if e == after {
				n++
			}
		}
		return n >= 2
	})
	if n := h.acked(t); n != 1 {
		t.Fatalf("committed %d records while the malformed second one could not be stored, want 1", n)
	}

	res, err := h.client.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: testDeadLetterTopic, NumPartitions: 1, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Errors {
		if e != nil {
			t.Fatal(e)
		}
	}
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	dls := h.deadLetters(t)
	if len(dls) != 1 || !strings.Contains(dls[0].reason, "invalid lease event") {
		t.Fatalf("dead letters %+v", dls)
	}
	for _, id := range []string{"db/creds/app/before", "db/creds/app/after"} {
		if s := leaseState(t, st, id); s != "active" {
			t.Errorf("lease %s is %s", id, s)
		}
	}
}

// selfSignedTLS returns a server config for 127.0.0.1 and a client config
// that trusts it.
func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kafka test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// The source authenticates with each SASL mechanism, over TLS too.
func TestKafkaSASLAndTLS(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mechanism string
		tls       bool
	}{
		{ingest.SASLPlain, true},
		{ingest.SASLScramSHA256, false},
		{"scram-sha-512", true},
	}
	for _, c := range cases {
		t.Run(c.mechanism, func(t *testing.T) {
			t.Parallel()
			opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, testAuditTopic, testLeaseTopic),
				kfake.SeedTopics(1, testDeadLetterTopic), kfake.EnableSASL(),
				kfake.Superuser(strings.ToUpper(c.mechanism), "leaseguard", "s3cret-pw")}
			var clientTLS *tls.Config
			if c.tls {
				var serverTLS *tls.Config
				serverTLS, clientTLS = selfSignedTLS(t)
				opts = append(opts, kfake.TLS(serverTLS))
			}
			cl, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			mech, err := ingest.NewKafkaSASL(c.mechanism, "leaseguard", "s3cret-pw")
			if err != nil {
				t.Fatal(err)
			}
			brokers := cl.ListenAddrs()
			publishAuthenticated(t, brokers, clientTLS, mech, leaseStory(t, "sasl", 3))

			st := newLedger(t)
			cfg := testKafkaConfig(brokers, runOpts{batch: 10})
			cfg.TLS, cfg.SASL = clientTLS, mech
			src := startKafkaSource(t, cfg, st)
			waitUntil(t, "the lease to be revoked", 20*time.Second, func() bool {
				l, err := st.Lease(context.Background(), "db/creds/app/sasl")
				return err == nil && l.State == "revoked"
			})
			if err := src.stop(t); err != nil {
				t.Fatalf("run: %v", err)
			}
		})
	}
}

func publishAuthenticated(t *testing.T, brokers []string, tlsCfg *tls.Config, mech sasl.Mechanism, recs []testRecord) {
	t.Helper()
	transport := &kafka.Transport{TLS: tlsCfg, SASL: mech}
	defer transport.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond,
		RequiredAcks: kafka.RequireAll, Transport: transport}
	defer w.Close()
	var msgs []kafka.Message
	for _, r := range recs {
		msgs = append(msgs, kafka.Message{Topic: testLeaseTopic, Key: []byte(r.key), Value: r.value})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce with sasl: %v", err)
	}
}

func TestKafkaConfigValidate(t *testing.T) {
	t.Parallel()
	good := ingest.DefaultKafkaConfig()
	good.Brokers = []string{"kafka-1:9092", "[::1]:9093"}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := map[string]func(*ingest.KafkaConfig){
		"no brokers":               func(c *ingest.KafkaConfig) { c.Brokers = nil },
		"broker without port":      func(c *ingest.KafkaConfig) { c.Brokers = []string{"kafka-1"} },
		"no group":                 func(c *ingest.KafkaConfig) { c.Group = "" },
		"no audit topic":           func(c *ingest.KafkaConfig) { c.AuditTopic = "" },
		"topic with a slash":       func(c *ingest.KafkaConfig) { c.AuditTopic = "vault/audit" },
		"topic too long":           func(c *ingest.KafkaConfig) { c.LeaseTopic = strings.Repeat("a", 250) },
		"same audit and lease":     func(c *ingest.KafkaConfig) { c.LeaseTopic = c.AuditTopic },
		"dead letters into input":  func(c *ingest.KafkaConfig) { c.DeadLetterTopic = c.AuditTopic },
		"no dead-letter topic":     func(c *ingest.KafkaConfig) { c.DeadLetterTopic = "" },
		"zero batch":               func(c *ingest.KafkaConfig) { c.Batch = 0 },
		"negative commit interval": func(c *ingest.KafkaConfig) { c.CommitInterval = -time.Second },
		"zero backoff":             func(c *ingest.KafkaConfig) { c.Backoff = []time.Duration{0} },
		"spaced envelope field":    func(c *ingest.KafkaConfig) { c.EnvelopeField = " message" },
	}
	for name, mutate := range bad {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := good
	c.LeaseTopic = ""
	if err := c.Validate(); err != nil {
		t.Errorf("lease topic off: %v", err)
	}

	if m, err := ingest.NewKafkaSASL("", "", ""); m != nil || err != nil {
		t.Errorf("no sasl: %v, %v", m, err)
	}
	for _, name := range []string{"PLAIN", "scram-sha-256", "SCRAM-SHA-512"} {
		if m, err := ingest.NewKafkaSASL(name, "u", "p"); err != nil || !strings.EqualFold(m.Name(), name) {
			t.Errorf("%s: %v, %v", name, m, err)
		}
	}
	if _, err := ingest.NewKafkaSASL("GSSAPI", "u", "p"); err == nil {
		t.Error("GSSAPI accepted")
	}
	if _, err := ingest.NewKafkaSASL("PLAIN", "", "p"); err == nil {
		t.Error("empty username accepted")
	}
}

// kafkaGoroutines returns the stacks of goroutines running Kafka client or
// source code.
func kafkaGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "segmentio/kafka-go") || strings.Contains(g, "ingest.(*KafkaSource)") {
			out = append(out, g)
		}
	}
	return out
}

// Run closes everything it opened: after it returns no Kafka client
// goroutine is left. (Not parallel: it counts goroutines.)
func TestKafkaRunLeavesNoGoroutines(t *testing.T) {
	cl := startKafka(t)
	brokers := cl.ListenAddrs()
	st := newLedger(t)
	log := newLeaseLog(st)
	func() {
		transport := &kafka.Transport{}
		defer transport.CloseIdleConnections()
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond, Transport: transport}
		defer w.Close()
		var msgs []kafka.Message
		for _, r := range interleave(stories(t, "leak", 5, 3)) {
			msgs = append(msgs, kafka.Message{Topic: testLeaseTopic, Key: []byte(r.key), Value: r.value})
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
	}()
	src, err := ingest.NewKafkaSource(testKafkaConfig(brokers, runOpts{batch: 5}), newProcessor(t, log), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := runSource(t, src.Run, src.InFlight)
	waitUntil(t, "every event", 10*time.Second, func() bool { return log.count() >= 15 })
	if err := src.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second Run: %v", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := kafkaGoroutines()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Kafka goroutines left after Run returned:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A shipper's envelope around an entry with a plaintext password: when
// the envelope itself is cut short, the whole record is dead-lettered, and
// the password inside its escaped JSON is redacted too; so is a token on a
// bad line of a record that carries several entries.
func TestKafkaEnvelopeDeadLettersHoldNoSecrets(t *testing.T) {
	t.Parallel()
	h := newKafkaHarness(t).(*kafkaHarness)
	st := newLedger(t)
	pw, token := "A1a-envelopeSecretPw0001", "hvs.CAESIEnvelopeSecretToken01"
	lines := fixtureLines(t)
	several, err := json.Marshal(map[string]string{"message": string(lines[19]) + "\nbad line " + token + "\n" + string(lines[21])})
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t,
		testRecord{key: "a", value: []byte(`{"message":"{\"type\":\"response\",\"response\":{\"data\":{\"password\":\"` + pw + `\"}}`)},
		testRecord{key: "a", value: several},
	)
	cfg := testKafkaConfig(h.brokers, runOpts{batch: 50})
	cfg.EnvelopeField = "message"
	src := startKafkaSource(t, cfg, st)
	drained(t, h, 20*time.Second)
	if err := src.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	msgs := readTopic(t, h.brokers[0], testDeadLetterTopic, 0)
	if len(msgs) != 2 {
		t.Fatalf("%d dead letters, want 2", len(msgs))
	}
	for i, m := range msgs {
		hs := headers(m)
		if v := string(m.Value); strings.Contains(v, pw) || strings.Contains(v, token) || !strings.Contains(v, "[redacted]") ||
			strings.Contains(hs[ingest.HeaderReason], token) || hs[ingest.HeaderReason] == "" {
			t.Errorf("dead letter %d = %q, reason %q", i, m.Value, hs[ingest.HeaderReason])
		}
	}
}
