package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is a retry schedule: the wait doubles from Base after each
// consecutive failure, up to Max (a Max below Base is Base), and is drawn
// at random from the upper half of that ceiling, so that the retries of
// many loops and processes spread out instead of arriving together. It is
// never shorter than Base: the first wait is Base.
type Policy struct {
	Base, Max time.Duration
}

// Wait is the pause after failures consecutive failures (the first is
// 1; 0 counts as 1): a random duration in [max(Base, c/2), c], where c is
// Base doubled failures-1 times and capped at Max.
func (p Policy) Wait(failures int) time.Duration {
	c := p.Ceiling(failures)
	lo := max(p.Base, c/2)
	if c <= lo {
		return c
	}
	return lo + rand.N(c-lo+1)
}

// Ceiling is the longest Wait(failures) can be.
func (p Policy) Ceiling(failures int) time.Duration {
	ceiling := max(p.Max, p.Base)
	d := p.Base
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}
