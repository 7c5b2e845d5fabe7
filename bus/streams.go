package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultDeadLetterStream holds every dead letter leaseguard writes.
const DefaultDeadLetterStream = "LEASEGUARD_DEADLETTER"

// EnsureDeadLetterStream creates or updates the stream that keeps dead
// letters (<prefix>.audit, <prefix>.lease, <prefix>.revocation, …). Dead
// letters carry their reason in headers and the original bytes as body.
func EnsureDeadLetterStream(ctx context.Context, js jetstream.JetStream, name, prefix string) error {
	if name == "" {
		name = DefaultDeadLetterStream
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "leaseguard dead letters: malformed or finally failed messages, reason in headers",
		Subjects:    []string{prefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  10 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", name, err)
	}
	return nil
}
