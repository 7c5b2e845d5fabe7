package ingest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/store"
)

// natsHarness runs the contract against an embedded JetStream server.
type natsHarness struct {
	js jetstream.JetStream
	mu sync.Mutex
	n  int
}

func newNATSHarness(t *testing.T) sourceHarness {
	_, js := natstest.Start(t).Connect(t)
	return &natsHarness{js: js}
}

func (h *natsHarness) config(o runOpts) ingest.NATSConfig {
	cfg := ingest.DefaultNATSConfig()
	cfg.AckWait = time.Second
	cfg.Batch = o.batch
	cfg.MaxAckPending = 1000
	if o.ahead > 0 {
		cfg.MaxAckPending = max(o.ahead, o.batch)
	}
	cfg.Backoff = []time.Duration{50 * time.Millisecond}
	return cfg
}

// subjectToken makes a key usable as one subject token.
func subjectToken(key string) string {
	return strings.NewReplacer(".", "_", "/", "_", "*", "_", ">", "_", " ", "_").Replace(key)
}

func (h *natsHarness) publish(t *testing.T, recs ...testRecord) {
	t.Helper()
	if err := h.ensure(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		subject := "vault.audit." + subjectToken(r.key)
		if r.lease {
			subject = "vault.leases." + subjectToken(r.key)
		}
		if _, err := h.js.Publish(context.Background(), subject, r.value); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
	}
}

// ensure creates the streams and consumer as the source would, so records
// can be published before the first start.
func (h *natsHarness) ensure() error {
	src, err := ingest.NewNATSSource(h.config(runOpts{batch: 10}), h.js, mustProcessor(nil), nil, nil)
	if err != nil {
		return err
	}
	_, err = src.EnsureStreams(context.Background())
	return err
}

// failingLedger is a ledger that is always down.
type failingLedger struct{}

func (failingLedger) Apply(context.Context, store.Batch) (store.ApplyStats, error) {
	return store.ApplyStats{}, errors.New("no ledger")
}

// mustProcessor builds a processor on ledger (nil: one that fails).
func mustProcessor(ledger ingest.Ledger) *ingest.Processor {
	if ledger == nil {
		ledger = failingLedger{}
	}
	proc, err := ingest.NewProcessor(ingest.ProcessorConfig{Ledger: ledger, Router: oneTarget("test"), MaxEntryBytes: 64 << 10})
	if err != nil {
		panic(err)
	}
	return proc
}

func (h *natsHarness) published() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func (h *natsHarness) start(t *testing.T, ledger ingest.Ledger, o runOpts) *runningSource {
	t.Helper()
	cfg := h.config(o)
	src, err := ingest.NewNATSSource(cfg, h.js, newProcessor(t, ledger), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if o.crash != nil {
		// The JetStream source leaves a batch unacknowledged when the hook
		// fails and goes on; a crash also ends the process.
		src.SetBeforeAck(func() error {
			err := o.crash()
			if err != nil {
				cancel()
			}
			return err
		})
	}
	return runSourceWith(t, ctx, cancel, src.Run, func() int {
		info, err := h.consumerInfo()
		if err != nil {
			return 0
		}
		return info.NumAckPending
	})
}

func (h *natsHarness) consumerInfo() (*jetstream.ConsumerInfo, error) {
	cfg := ingest.DefaultNATSConfig()
	c, err := h.js.Consumer(context.Background(), cfg.Stream, cfg.Consumer)
	if err != nil {
		return nil, err
	}
	return c.Info(context.Background())
}

func (h *natsHarness) acked(t *testing.T) int {
	t.Helper()
	info, err := h.consumerInfo()
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	// The stream holds only published records, from sequence 1.
	return int(info.AckFloor.Stream)
}

func (h *natsHarness) deadLetters(t *testing.T) []storedDeadLetter {
	t.Helper()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, ingest.DefaultNATSConfig().DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedDeadLetter
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		out = append(out, storedDeadLetter{
			value:  m.Data,
			reason: m.Header.Get(ingest.HeaderReason),
			source: m.Header.Get(ingest.HeaderSourceSubject),
			offset: m.Header.Get(ingest.HeaderSourceOffset),
		})
	}
	return out
}

func (h *natsHarness) aheadBound(o runOpts) int { return h.config(o).MaxAckPending }
