// Package backoff is leaseguard's one retry schedule: every loop that
// retries after a failure waits Policy.Wait, a doubling wait with a cap
// and one jitter policy (drawn from the upper half, never below the base), and pauses with
// internal/pause.
package backoff
