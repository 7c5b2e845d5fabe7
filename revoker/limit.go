package revoker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	// PerMinute is the most automatic revocations allowed per minute, and
	// the burst: a token bucket of PerMinute tokens refilled over a minute.
	PerMinute int
	// OnThrottle, if set, is called with true when a Wait starts waiting
	// for a token and with false when that wait ends, once each per
	// waiting call: suited to a gauge's Inc and Dec.
	OnThrottle func(waiting bool)
	// Now and After default to time.Now and time.After.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// Validate reports a configuration the Limiter cannot work with.
func (c LimiterConfig) Validate() error {
	if c.PerMinute <= 0 {
		return fmt.Errorf("limiter: PerMinute is %d, want > 0", c.PerMinute)
	}
	return nil
}

// Limiter bounds the blast radius of automatic revocations.
type Limiter struct {
	lim        *rate.Limiter
	onThrottle func(bool)
	now        func() time.Time
	after      func(time.Duration) <-chan time.Time
}

// NewLimiter validates cfg and returns a Limiter with a full bucket.
func NewLimiter(cfg LimiterConfig) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		lim:        rate.NewLimiter(rate.Every(time.Minute/time.Duration(cfg.PerMinute)), cfg.PerMinute),
		onThrottle: cfg.OnThrottle,
		now:        cfg.Now,
		after:      cfg.After,
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.after == nil {
		l.after = time.After
	}
	return l, nil
}

// ErrWouldExceedDeadline is returned when the wait for a token would
// outlast the context's deadline; no token is taken.
var ErrWouldExceedDeadline = errors.New("limiter: wait would exceed the context deadline")

// TryTake takes a token if one is there now. Otherwise it takes none and
// returns how long until one will be. An emergency revocation always
// passes and takes no token.
func (l *Limiter) TryTake(emergency bool) (ok bool, next time.Duration) {
	if emergency {
		return true, 0
	}
	now := l.now()
	r := l.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Minute
	}
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		return false, delay
	}
	return true, 0
}

// Wait takes a token, waiting for one if the bucket is empty, and returns
// how long it waited. An emergency revocation neither waits nor takes a
// token. If ctx ends first (or its deadline is too close), Wait returns
// its error and gives the token back.
func (l *Limiter) Wait(ctx context.Context, emergency bool) (waited time.Duration, err error) {
	if emergency {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	start := l.now()
	r := l.lim.ReserveN(start, 1)
	if !r.OK() {
		return 0, errors.New("limiter: no token can ever be granted")
	}
	delay := r.DelayFrom(start)
	if delay <= 0 {
		return 0, nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
		r.CancelAt(start)
		return 0, ErrWouldExceedDeadline
	}
	timer := l.after(delay)
	if l.onThrottle != nil {
		l.onThrottle(true)
		defer l.onThrottle(false)
	}
	select {
	case <-timer:
		return l.now().Sub(start), nil
	case <-ctx.Done():
		now := l.now()
		r.CancelAt(now)
		return now.Sub(start), ctx.Err()
	}
}
