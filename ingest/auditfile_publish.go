package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
)

// Dead-letter header naming where a direct audit source read a bad line.
const HeaderSourceOrigin = "Leaseguard-Source-Origin"

// DirectConfig is what the direct audit sources (file and socket) share:
// where their entries go.
type DirectConfig struct {
	// Subject the entries are published on; it must match the audit
	// stream's audit subject pattern (e.g. vault.audit.file).
	Subject string
	// AuditSubject is the audit stream's pattern, to check Subject against.
	AuditSubject string
	// DeadLetterSubject prefixes dead letters; bad lines go to <prefix>.audit.
	DeadLetterSubject string
	// MaxLineBytes: longer lines are dead-lettered (cut to MaxLineBytes).
	MaxLineBytes int
	// PublishTimeout bounds one attempt to have entries stored (default 10s).
	PublishTimeout time.Duration
	// Progress hears of each batch (file) or line (socket) stored, and of
	// retries (nil: nobody).
	Progress *progress.Worker
}

func (c DirectConfig) validate(kind string) error {
	switch {
	case c.Subject == "" || strings.ContainsAny(c.Subject, "*> "):
		return fmt.Errorf("audit %s: subject %q must be a plain subject", kind, c.Subject)
	case c.AuditSubject != "" && !subjectMatches(c.AuditSubject, c.Subject):
		return fmt.Errorf("audit %s: subject %q is outside the audit stream's %q", kind, c.Subject, c.AuditSubject)
	case c.DeadLetterSubject == "" || strings.ContainsAny(c.DeadLetterSubject, "*> "):
		return fmt.Errorf("audit %s: dead-letter subject %q must be a plain subject prefix", kind, c.DeadLetterSubject)
	case c.MaxLineBytes < 1024:
		return fmt.Errorf("audit %s: max line bytes %d is below 1024", kind, c.MaxLineBytes)
	}
	return nil
}

// line is one audit log line read by a direct source, without its newline.
type line struct {
	data []byte
	// id makes a republished line a JetStream duplicate.
	id string
	// origin says where it was read (file and offset, or peer address).
	origin string
	// reason is set when the line is dead-lettered instead of published.
	reason string
	// redacted: the line carried a plaintext secret, redacted from data.
	redacted bool
}

// directPublisher stores lines in JetStream: valid entries on the audit
// subject, bad lines on the dead-letter subject. A call returns only when
// JetStream has acknowledged every line, retrying with backoff until ctx
// ends, so its callers can count a line as received once it returns nil.
type directPublisher struct {
	cfg       DirectConfig
	js        jetstream.JetStream
	transport string
	metrics   *Metrics
	logger    *slog.Logger
}

// classify sets reason on lines that are not one JSON object.
// size is the line's full length (data may be cut short).
func classify(l *line, size int64, maxBytes int) {
	if l.reason != "" {
		return
	}
	if size > int64(maxBytes) {
		l.reason = fmt.Sprintf("line of %d bytes is over the limit of %d", size, maxBytes)
		l.data = l.data[:min(len(l.data), maxBytes)]
		return
	}
	if !json.Valid(l.data) || !isJSONObject(l.data) {
		l.reason = "line is not a JSON object"
	}
}

func isJSONObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// prepareLine classifies a line read by a direct source (size is its full
// length), redacts the secrets it carries (schemas.Redact: neither the
// audit stream nor a dead letter ever holds a plaintext secret) and gives
// it a message id derived from idOrigin and the redacted bytes: redaction
// is deterministic, so a line read again gets the same id.
func prepareLine(l line, size int64, maxBytes int, idPrefix, idOrigin string) line {
	classify(&l, size, maxBytes)
	l.data, l.redacted = schemas.Redact(l.data)
	l.id = lineID(idPrefix, idOrigin, l.data)
	return l
}

// lineID is a deterministic message id for a line read at origin.
func lineID(prefix, origin string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(origin))
	h.Write([]byte{0})
	h.Write(data)
	return prefix + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

func (p *directPublisher) message(l line) *nats.Msg {
	if l.reason == "" {
		m := nats.NewMsg(p.cfg.Subject)
		m.Data = l.data
		return m
	}
	m := nats.NewMsg(p.cfg.DeadLetterSubject + ".audit")
	m.Data = l.data
	m.Header.Set(HeaderReason, l.reason)
	m.Header.Set(HeaderSourceSubject, p.cfg.Subject)
	m.Header.Set(HeaderSourceOrigin, l.origin)
	return m
}

// publish stores lines, retrying until every one is acknowledged or ctx ends.
func (p *directPublisher) publish(ctx context.Context, lines []line) error {
	for attempt := 1; ; attempt++ {
		err := p.publishOnce(ctx, lines)
		if err == nil {
			p.metrics.stored(p.transport, len(lines))
			for _, l := range lines {
				if l.redacted && p.metrics != nil {
					p.metrics.secrets.entries.WithLabelValues(p.transport).Inc()
				}
				if l.reason != "" {
					p.logger.Warn("audit line dead-lettered", "reason", l.reason, "origin", l.origin)
					if p.metrics != nil {
						p.metrics.deadLetters.WithLabelValues(p.transport).Inc()
					}
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.cfg.Progress.Retry()
		p.logger.Warn("publishing audit entries failed; retrying", "entries", len(lines), "attempt", attempt, "err", err)
		if p.metrics != nil {
			p.metrics.retries.WithLabelValues(p.transport).Inc()
		}
		if !pause.For(ctx, localRetry.Wait(attempt), nil) {
			return ctx.Err()
		}
	}
}

func (p *directPublisher) publishOnce(ctx context.Context, lines []line) error {
	timeout := p.cfg.PublishTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if len(lines) == 1 {
		_, err := p.js.PublishMsg(ctx, p.message(lines[0]), jetstream.WithMsgID(lines[0].id))
		return err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(lines))
	for _, l := range lines {
		f, err := p.js.PublishMsgAsync(p.message(l), jetstream.WithMsgID(l.id))
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	var errs []error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}
