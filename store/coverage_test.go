package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestEnsureCoverageOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := Coverage(ctx, s.Pool()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("coverage before = %v", err)
	}
	first, err := EnsureCoverage(ctx, s.Pool(), at(0))
	if err != nil || !first.Equal(dbTime(at(0))) {
		t.Fatalf("first = %v, %v", first, err)
	}
	again, err := EnsureCoverage(ctx, s.Pool(), at(time.Hour))
	if err != nil || !again.Equal(first) {
		t.Fatalf("second = %v, %v; the watermark must not move", again, err)
	}
}
