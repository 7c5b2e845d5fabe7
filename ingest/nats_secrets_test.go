package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/store"
)

// lockedBuffer is a log sink safe for the source's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// plaintextPassword rewrites the fixture's creds response as a mount tuned
// with audit_non_hmac_response_keys=username,password writes it.
func plaintextPassword(t *testing.T, line []byte, pw string) []byte {
	t.Helper()
	re := regexp.MustCompile(`"password":"hmac-sha256:[0-9a-f]+"`)
	if !re.Match(line) {
		t.Fatal("the fixture entry has no hashed password")
	}
	return re.ReplaceAll(line, []byte(`"password":"`+pw+`"`))
}

// A shipper publishes straight onto the audit subject, so leaseguard
// cannot keep plaintext out of the audit stream; once ingest has committed
// and acknowledged a message whose entry carried a plaintext secret (read
// into the ledger or dead-lettered), it erases that message from the
// stream, counts it, and never logs the value. Other messages stay.
func TestNATSErasesCommittedPlaintextSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newLedger(t)
	_, js := natstest.Start(t).Connect(t)
	reg := prometheus.NewRegistry()
	metrics := ingest.NewMetrics(reg)
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	proc, err := ingest.NewProcessor(ingest.ProcessorConfig{Ledger: st, Router: oneTarget("test"), MaxEntryBytes: 64 << 10,
		Metrics: metrics, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ingest.DefaultNATSConfig()
	cfg.AckWait, cfg.Batch, cfg.Backoff = 2*time.Second, 50, []time.Duration{50 * time.Millisecond}
	src, err := ingest.NewNATSSource(cfg, js, proc, metrics, logger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	fixture := fixtureRecords(t)
	pw := "A1a-issuedInTheClear0001"
	bad, secrets := secretEntries(t)
	secrets = append(secrets, pw)
	type pub struct {
		subject string
		data    []byte
		secret  bool
	}
	pubs := []pub{
		{"vault.audit.shipper", fixture[18].value, false},
		{"vault.audit.shipper", plaintextPassword(t, fixture[19].value, pw), true},
		{"vault.audit.shipper", fixture[21].value, false},
	}
	for _, b := range bad {
		subject := "vault.audit.shipper"
		if b.lease {
			subject = "vault.leases.x"
		}
		pubs = append(pubs, pub{subject, b.value, true})
	}
	seqs := make([]uint64, len(pubs))
	for i, p := range pubs {
		ack, err := js.Publish(ctx, p.subject, p.data)
		if err != nil {
			t.Fatal(err)
		}
		seqs[i] = ack.Sequence
	}
	done := make(chan error, 1)
	runCtx, cancel := context.WithCancel(ctx)
	go func() { done <- src.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	gone := func(seq uint64) bool {
		_, err := stream.GetMsg(ctx, seq)
		return errors.Is(err, jetstream.ErrMsgNotFound)
	}
	waitUntil(t, "the plaintext messages erased", 20*time.Second, func() bool {
		for i, p := range pubs {
			if p.secret && !gone(seqs[i]) {
				return false
			}
		}
		return true
	})
	for i, p := range pubs {
		if !p.secret && gone(seqs[i]) {
			t.Errorf("message %d, without a secret, was erased", i)
		}
	}
	// The counter moves just after the delete the loop above saw.
	waitUntil(t, "five erasures counted", 5*time.Second, func() bool {
		return counterSum(t, reg, "leaseguard_ingest_secret_messages_erased_total") >= 5
	})
	if got := counterSum(t, reg, "leaseguard_ingest_secret_messages_erased_total"); got != 5 {
		t.Errorf("erased count = %v, want 5", got)
	}
	l, err := st.Lease(ctx, issuedLease)
	if err != nil || l.State != store.StateActive {
		t.Errorf("the entry with the plaintext password was not read into the ledger: %+v, %v", l, err)
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("a secret was logged")
		}
	}
	if !strings.Contains(logs.String(), "erased") {
		t.Errorf("the erasure is not logged")
	}
}

// counterSum is the sum of a registered counter's series (-1: absent).
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	return -1
}
