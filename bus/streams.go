package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/pause"
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
// replicas below 1 counts as 1.
func EnsureDeadLetterStream(ctx context.Context, js jetstream.JetStream, name, prefix string, maxAge time.Duration, replicas int) error {
	if name == "" {
		name = DefaultDeadLetterStream
	}
	if maxAge <= 0 {
		maxAge = DefaultDeadLetterMaxAge
	}
	_, err := EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        name,
		Description: "leaseguard dead letters: malformed or finally failed messages, reason in headers",
		Subjects:    []string{prefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      maxAge,
		Duplicates:  min(10*time.Minute, maxAge),
		Replicas:    max(1, replicas),
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", name, err)
	}
	return nil
}

// EnsureStream creates or updates a stream as cfg says and, on a cluster,
// waits until every replica is current: a stream whose replicas were just
// raised (1 to 3) refuses new consumers until its new peers have caught up.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var s jetstream.Stream
	var err error
	// On a cluster, a request that reaches a meta leader just as it steps
	// down is never answered: it is tried again, each time with its own
	// deadline, instead of waiting out the caller's.
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, streamRequestTimeout)
		s, err = js.CreateOrUpdateStream(actx, cfg)
		cancel()
		if err == nil || ctx.Err() != nil || attempt == streamRequestAttempts || !errors.Is(err, context.DeadlineExceeded) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return s, WaitReplicas(ctx, s, cfg.Replicas)
}

// A stream request gets streamRequestTimeout, streamRequestAttempts times.
const (
	streamRequestTimeout  = 10 * time.Second
	streamRequestAttempts = 3
)

// replicaWait bounds WaitReplicas: a cluster smaller than the replicas
// asked for, or with a peer down, must stop the start with an error, not
// hang it.
var replicaWait = 30 * time.Second

// WaitReplicas waits until s has want replicas, all current, for at most
// replicaWait (or until ctx ends).
func WaitReplicas(ctx context.Context, s jetstream.Stream, want int) error {
	if want <= 1 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, replicaWait)
	defer cancel()
	last := ctx.Err()
	for {
		info, err := s.Info(ctx)
		if err == nil && replicasCurrent(info, want) {
			return nil
		}
		if err != nil {
			last = err
		}
		if !pause.For(ctx, 100*time.Millisecond, nil) {
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("stream %s: %d replicas not all current within %s (LEASEGUARD_STREAM_REPLICAS larger than the servers up?): %w",
				s.CachedInfo().Config.Name, want, replicaWait, last)
		}
	}
}

func replicasCurrent(info *jetstream.StreamInfo, want int) bool {
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != want-1 {
		return false
	}
	for _, p := range info.Cluster.Replicas {
		if !p.Current || p.Offline {
			return false
		}
	}
	return true
}
