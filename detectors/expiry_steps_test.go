package detectors_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/internal/promtest"
	"github.com/leaseguard/leaseguard/schemas"
)

// slowQueue is a revocation queue that takes hold to answer.
type slowQueue struct {
	*sink
	hold time.Duration
}

func (q slowQueue) Submit(ctx context.Context, cmds []schemas.RevocationCommand) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(q.hold):
	}
	return q.sink.Submit(ctx, cmds)
}

// TestExpiryPassTimesEachStep: a pass that acts observes each of its steps
// once in leaseguard_detector_pass_step_seconds, a slow queue's time falls
// in queue and nowhere else, and the steps add up to no more than the pass.
func TestExpiryPassTimesEachStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.lease(t, "postgres/creds/reporting/steps", "main", "v-steps", f.now.Add(-time.Hour))
	reg := prometheus.NewRegistry()
	const hold = 300 * time.Millisecond
	modes, _ := detectors.ParseModes("")
	scope, _ := detectors.ParseScope("*")
	d, err := detectors.NewExpiry(detectors.ExpiryConfig{Grace: 30 * time.Second, Interval: time.Second, Batch: 100, Modes: modes, Scope: scope},
		detectors.ExpiryDeps{Pool: f.st.Pool(), Reader: f.reader, Issuer: f.issuer, Sink: slowQueue{f.sink, hold}, Evidence: f.builder,
			Clock: func() time.Time { return f.now }, Metrics: detectors.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n, err := d.Tick(ctx); err != nil || n != 1 || len(f.sink.all()) != 1 {
		t.Fatalf("Tick = %d, %v, %d commands; want the lease claimed and its command queued", n, err, len(f.sink.all()))
	}
	took := time.Since(start).Seconds()

	steps, err := promtest.Histograms(reg, "leaseguard_detector_pass_step_seconds", "step")
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, step := range []string{"claim", "read_targets", "judge", "issue", "queue", "mark", "record", "commit"} {
		h := steps[step]
		if h.GetSampleCount() != 1 {
			t.Errorf("step %s observed %d times, want once", step, h.GetSampleCount())
		}
		sum += h.GetSampleSum()
	}
	if got := steps["queue"].GetSampleSum(); got < hold.Seconds() {
		t.Errorf("queue %.3f s, less than the %v the queue took to answer", got, hold)
	}
	for step, h := range steps {
		if step != "queue" && h.GetSampleSum() >= hold.Seconds() {
			t.Errorf("step %s took %.3f s: the queue's time fell in it", step, h.GetSampleSum())
		}
	}
	if sum > took {
		t.Errorf("the steps add up to %.3f s, more than the %.3f s the pass took", sum, took)
	}
}
