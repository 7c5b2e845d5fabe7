package adminapi

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxTrackedAddresses bounds the failure table: past it, records
// whose window and penalty are over are dropped, then the oldest that
// holds no penalty, then the penalty that ends first.
const DefaultMaxTrackedAddresses = 10000

// failureGate counts failed authentications per client address. Once an
// address failed max times within window, it is turned away for window,
// before any credential it presents is examined: guessing tokens costs
// the guesser a window per max guesses, and costs leaseguard a map lookup.
type failureGate struct {
	max    int
	window time.Duration
	limit  int

	mu     sync.Mutex
	byAddr map[string]*failureRecord
}

// failureRecord is one address's recent failures.
type failureRecord struct {
	count int
	// start is when the counting window began; last the latest failure.
	start, last time.Time
	// until ends the penalty (zero: none).
	until time.Time
}

func newFailureGate(max int, window time.Duration, limit int) *failureGate {
	return &failureGate{max: max, window: window, limit: limit, byAddr: map[string]*failureRecord{}}
}

// clientKey is the address a request is counted under: its remote IP,
// IPv4-mapped addresses as IPv4, and IPv6 by /64 (one host usually holds
// a whole /64, so counting single IPv6 addresses would count nothing).
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// check reports whether key is turned away at now, and for how long.
func (g *failureGate) check(key string, now time.Time) (bool, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rec, ok := g.byAddr[key]
	if !ok || !now.Before(rec.until) {
		return false, 0
	}
	return true, rec.until.Sub(now)
}

// failed records a failed authentication of key at now and reports
// whether it started a penalty.
func (g *failureGate) failed(key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	rec, ok := g.byAddr[key]
	if !ok {
		if len(g.byAddr) >= g.limit {
			g.evict(now)
		}
		rec = &failureRecord{start: now}
		g.byAddr[key] = rec
	}
	if now.Sub(rec.start) >= g.window {
		rec.count, rec.start = 0, now
	}
	rec.count++
	rec.last = now
	if rec.count < g.max {
		return false
	}
	rec.until = now.Add(g.window)
	// Counting starts afresh once the penalty is over.
	rec.count, rec.start = 0, rec.until
	return true
}

// evict makes room for one record: see DefaultMaxTrackedAddresses.
func (g *failureGate) evict(now time.Time) {
	for k, rec := range g.byAddr {
		if g.expired(rec, now) {
			delete(g.byAddr, k)
		}
	}
	if len(g.byAddr) < g.limit {
		return
	}
	var victim string
	var vrec *failureRecord
	for k, rec := range g.byAddr {
		if vrec == nil || evictBefore(rec, vrec, now) {
			victim, vrec = k, rec
		}
	}
	delete(g.byAddr, victim)
}

// expired: neither a penalty nor a counting window is running.
func (g *failureGate) expired(rec *failureRecord, now time.Time) bool {
	return !now.Before(rec.until) && now.Sub(rec.start) >= g.window
}

// evictBefore orders eviction: records without a penalty before those
// with one; among the first the oldest failure, among the others the
// penalty ending first.
func evictBefore(a, b *failureRecord, now time.Time) bool {
	ap, bp := now.Before(a.until), now.Before(b.until)
	switch {
	case ap != bp:
		return !ap
	case ap:
		return a.until.Before(b.until)
	default:
		return a.last.Before(b.last)
	}
}

// size is the number of addresses tracked.
func (g *failureGate) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byAddr)
}
