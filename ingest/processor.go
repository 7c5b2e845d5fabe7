package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Message is one record from a transport.
type Message struct {
	Data []byte
	// LeaseEvent marks a LeaseEvent document (from vault.leases.>) rather
	// than a Vault audit entry.
	LeaseEvent bool
	Source     schemas.SourceRef
}

// Disposition says what a transport must do with a message.
type Disposition int

const (
	// Done: the message's effects are committed; acknowledge it.
	Done Disposition = iota
	// DeadLetter: the message is malformed; store it in the dead-letter
	// destination with Reason, then acknowledge it.
	DeadLetter
	// Retry: a transient failure; redeliver later.
	Retry
)

func (d Disposition) String() string {
	switch d {
	case Done:
		return "done"
	case DeadLetter:
		return "dead_letter"
	case Retry:
		return "retry"
	}
	return fmt.Sprintf("disposition(%d)", int(d))
}

// Result is the outcome of one message.
type Result struct {
	Disposition Disposition
	Kind        Kind
	Reason      string
	// PlaintextSecret: the message carried a plaintext secret (a password
	// from a mount tuned not to hash it, a raw token, …). The ledger read
	// it redacted; a transport that can should erase the message once it
	// is done with it (see NATSSource), and a dead letter of it is
	// redacted.
	PlaintextSecret bool
}

// Ledger is where lease changes are committed.
type Ledger interface {
	Apply(ctx context.Context, b store.Batch) (store.ApplyStats, error)
}

// Router names the target database of a Vault mount and role.
type Router interface {
	Route(mount, role string) (string, bool)
}

// ProcessorConfig configures a Processor.
type ProcessorConfig struct {
	Ledger        Ledger
	Router        Router
	MaxEntryBytes int
	Metrics       *Metrics
	Logger        *slog.Logger
	Clock         func() time.Time
	// OnIssued is called after a batch that issued or renewed leases is
	// committed, so expiry can be read from the database right away.
	OnIssued func()
	// CommitTimeout bounds one ledger transaction (0:
	// DefaultCommitTimeout): a commit that runs out (a silent state store)
	// fails, and its messages are retried.
	CommitTimeout time.Duration
	// DecodeWorkers is how many goroutines decode and normalise one batch
	// (0: GOMAXPROCS). Decoding is most of ingest's CPU; while it runs the
	// ledger is idle, so spreading a batch over the cores shortens the
	// time between two ledger transactions. Results keep batch order.
	DecodeWorkers int
}

// Validate checks the configuration.
func (c ProcessorConfig) Validate() error {
	if c.Ledger == nil {
		return errors.New("processor: ledger is nil")
	}
	if c.MaxEntryBytes < 0 {
		return errors.New("processor: max entry bytes is negative")
	}
	if c.DecodeWorkers < 0 {
		return errors.New("processor: decode workers is negative")
	}
	if c.CommitTimeout < 0 {
		return errors.New("processor: commit timeout is negative")
	}
	return nil
}

// DefaultCommitTimeout bounds a ledger transaction when ProcessorConfig
// gives no CommitTimeout.
const DefaultCommitTimeout = 10 * time.Second

// Processor decodes, normalises and commits batches of messages.
type Processor struct {
	cfg     ProcessorConfig
	decoder Decoder
}

// NewProcessor builds a Processor.
func NewProcessor(cfg ProcessorConfig) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.DecodeWorkers == 0 {
		cfg.DecodeWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.CommitTimeout == 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	return &Processor{cfg: cfg, decoder: Decoder{MaxEntryBytes: cfg.MaxEntryBytes}}, nil
}

// Process handles one batch. Every message gets a Result. The ledger
// changes of the whole batch are committed in one transaction; when that
// fails, every message that is not dead-lettered is marked Retry and the
// error is returned. It is Commit(ctx, Prepare(msgs)).
func (p *Processor) Process(ctx context.Context, msgs []Message) ([]Result, error) {
	return p.Commit(ctx, p.Prepare(msgs))
}

// Prepared is a batch decoded and normalised, not yet committed. A
// transport may prepare the next batch while the previous one commits.
type Prepared struct {
	msgs    []Message
	results []Result
	batch   store.Batch
	times   []time.Time
	issued  bool
}

// Prepare decodes and normalises msgs (on DecodeWorkers goroutines) and
// builds the ledger batch; it touches neither the ledger nor the metrics
// of committed entries. It may panic on a bug in decoding; transports
// recover and retry the batch.
func (p *Processor) Prepare(msgs []Message) *Prepared {
	b := &Prepared{msgs: msgs, results: make([]Result, len(msgs))}
	normalised, secrets, errs := p.normaliseAll(msgs)
	for i := range msgs {
		m := &msgs[i]
		n, err := normalised[i], errs[i]
		kind, lease, creds := n.Kind, n.Lease, n.Creds
		b.results[i].Kind, b.results[i].PlaintextSecret = kind, secrets[i]
		if err != nil {
			b.results[i] = Result{Disposition: DeadLetter, Kind: KindRejected, Reason: reasonOf(err), PlaintextSecret: secrets[i]}
			continue
		}
		if !m.LeaseEvent {
			b.batch.Signals.Observe(n.Time, n.Signal, n.Device)
		}
		if lease != nil {
			if lease.Database == "" && lease.Mount != "" && p.cfg.Router != nil {
				if db, ok := p.cfg.Router.Route(lease.Mount, lease.Role); ok {
					lease.Database = db
				} else if p.cfg.Metrics != nil {
					p.cfg.Metrics.unrouted.Inc()
				}
			}
			b.batch.Leases = append(b.batch.Leases, *lease)
			b.times = append(b.times, lease.EventTime)
			if lease.Kind == schemas.LeaseIssued || lease.Kind == schemas.LeaseRenewed {
				b.issued = true
			}
		}
		if creds != nil {
			b.batch.Creds = append(b.batch.Creds, *creds)
		}
	}
	return b
}

// Commit writes a prepared batch's ledger changes in one transaction and
// returns every message's Result (see Process). A batch is committed once.
func (p *Processor) Commit(ctx context.Context, b *Prepared) ([]Result, error) {
	results := b.results
	if !b.batch.Empty() {
		start := p.cfg.Clock()
		if err := p.apply(ctx, b.batch); err != nil {
			for i := range results {
				if results[i].Disposition != DeadLetter {
					results[i].Disposition = Retry
					results[i].Reason = "ledger: " + err.Error()
				}
			}
			if p.cfg.Metrics != nil {
				p.cfg.Metrics.applyErrors.Inc()
			}
			return results, fmt.Errorf("apply batch of %d messages: %w", len(b.msgs), err)
		}
		if p.cfg.Metrics != nil {
			now := p.cfg.Clock()
			p.cfg.Metrics.applySeconds.Observe(now.Sub(start).Seconds())
			for _, t := range b.times {
				if !t.IsZero() {
					p.cfg.Metrics.lag.Observe(now.Sub(t).Seconds())
				}
			}
		}
		if b.issued && p.cfg.OnIssued != nil {
			p.cfg.OnIssued()
		}
	}
	if p.cfg.Metrics != nil {
		for i := range results {
			p.cfg.Metrics.entries.WithLabelValues(b.msgs[i].Source.Transport, string(results[i].Kind)).Inc()
			if results[i].PlaintextSecret {
				p.cfg.Metrics.secrets.entries.WithLabelValues(b.msgs[i].Source.Transport).Inc()
			}
		}
	}
	return results, nil
}

// apply commits a ledger batch within CommitTimeout.
func (p *Processor) apply(ctx context.Context, b store.Batch) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CommitTimeout)
	defer cancel()
	_, err := p.cfg.Ledger.Apply(ctx, b)
	return err
}

// minDecodeChunk is the fewest messages worth a goroutine of their own.
const minDecodeChunk = 64

// normaliseAll normalises every message, in contiguous chunks on up to
// DecodeWorkers goroutines when the batch is large enough. A panic in a
// chunk is raised again on the caller's goroutine (where the transports
// turn it into a retry of the batch) once every chunk has stopped.
func (p *Processor) normaliseAll(msgs []Message) ([]Normalized, []bool, []error) {
	out := make([]Normalized, len(msgs))
	secrets := make([]bool, len(msgs))
	errs := make([]error, len(msgs))
	run := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i], secrets[i], errs[i] = p.normalise(&msgs[i])
		}
	}
	workers := min(p.cfg.DecodeWorkers, len(msgs)/minDecodeChunk)
	if workers <= 1 {
		run(0, len(msgs))
		return out, secrets, errs
	}
	chunk := (len(msgs) + workers - 1) / workers
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		panicked any
	)
	guarded := func(lo, hi int) {
		defer func() {
			if r := recover(); r != nil {
				mu.Lock()
				if panicked == nil {
					panicked = r
				}
				mu.Unlock()
			}
		}()
		run(lo, hi)
	}
	for lo := chunk; lo < len(msgs); lo += chunk {
		wg.Go(func() { guarded(lo, min(lo+chunk, len(msgs))) })
	}
	guarded(0, chunk)
	wg.Wait()
	if panicked != nil {
		panic(fmt.Sprintf("normalise: %v", panicked))
	}
	return out, secrets, errs
}

// normalise decodes one message into at most one lease event, one creds
// observation and the audit signals of the entry, and reports whether the
// message carried a plaintext secret. Such a message is decoded again
// redacted (schemas.Redact), so no plaintext secret, nor anything shaped
// like one, reaches the ledger.
func (p *Processor) normalise(m *Message) (Normalized, bool, error) {
	n, err := p.decodeNormalise(m.Data, m)
	if err != nil {
		return n, schemas.HasSecret(m.Data), err
	}
	// Decoded: the message is valid JSON.
	if !schemas.JSONHasSecret(m.Data) {
		return n, false, nil
	}
	clean, _ := schemas.Redact(m.Data)
	n, err = p.decodeNormalise(clean, m)
	return n, true, err
}

func (p *Processor) decodeNormalise(data []byte, m *Message) (Normalized, error) {
	if m.LeaseEvent {
		ev, err := DecodeLeaseEvent(data)
		if err != nil {
			return Normalized{Kind: KindRejected}, err
		}
		ev.Source = m.Source
		return Normalized{Kind: KindLeaseEvent, Lease: &ev}, nil
	}
	entry, err := p.decoder.Decode(data)
	if err != nil {
		return Normalized{Kind: KindRejected}, err
	}
	n, err := Normalize(&entry, m.Source)
	if err != nil {
		return Normalized{Kind: KindRejected}, err
	}
	return n, nil
}

func reasonOf(err error) string {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return err.Error()
}
