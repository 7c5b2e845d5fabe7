package evidence

import (
	"errors"
	"testing"
	"time"
)

// While revocations are carried out in the process, a backlog is published
// one batch per Interval, not one batch after another; otherwise, and
// whenever the bus took a whole batch with nobody to give way to, the
// next batch goes at once.
func TestRelayGivesWayToRevocations(t *testing.T) {
	t.Parallel()
	var busy bool
	cfg := RelayConfig{Batch: 10, Interval: time.Minute, MaxBackoff: time.Hour, GiveWay: func() bool { return busy }}.WithDefaults()
	r := &Relay{cfg: cfg, log: cfg.Logger}
	failures := 0
	for _, c := range []struct {
		busy bool
		n    int
		err  error
		want time.Duration
	}{
		{busy: false, n: 10, want: 0},
		{busy: true, n: 10, want: time.Minute},
		{busy: true, n: 3, err: errors.New("bus refused one"), want: time.Minute},
		{busy: false, n: 3, err: errors.New("bus refused one"), want: 0},
		{busy: true, n: 4, want: time.Minute}, // drained: the interval anyway
		{busy: false, n: 4, want: time.Minute},
	} {
		busy = c.busy
		if got, _ := r.next(c.n, c.err, &failures); got != c.want {
			t.Errorf("busy %v, %d published, err %v: wait %s, want %s", c.busy, c.n, c.err, got, c.want)
		}
	}
}
