package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultDeadLetterStream holds every dead letter leaseguard writes.
const DefaultDeadLetterStream = "LEASEGUARD_DEADLETTER"

// DefaultDeadLetterMaxAge is how long dead letters are kept by default.
const DefaultDeadLetterMaxAge = 7 * 24 * time.Hour

// EnsureDeadLetterStream creates or updates the stream that keeps dead
// letters (<prefix>.audit, <prefix>.lease, <prefix>.revocation, …) for
// maxAge (0: DefaultDeadLetterMaxAge): a dead letter is for an operator to
// look at, not an archive of Vault's audit log. Dead letters carry their
// reason in headers and the original bytes, secrets redacted, as body.
func EnsureDeadLetterStream(ctx context.Context, js jetstream.JetStream, name, prefix string, maxAge time.Duration) error {
	if name == "" {
		name = DefaultDeadLetterStream
	}
	if maxAge <= 0 {
		maxAge = DefaultDeadLetterMaxAge
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "leaseguard dead letters: malformed or finally failed messages, reason in headers",
		Subjects:    []string{prefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      maxAge,
		Duplicates:  min(10*time.Minute, maxAge),
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", name, err)
	}
	return nil
}
