package adminapi

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// clientFrom is a client of the rig whose connections come from the local
// address ip (any of 127.0.0.0/8 on Linux), presenting cert if given.
func (r *rig) clientFrom(ip string, cert *tls.Certificate) *http.Client {
	c := r.client(cert)
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c.Transport.(*http.Transport).DialContext = d.DialContext
	return c
}

// TestAuthFailuresAreLimitedPerAddress: a brute-force loop from one
// address is cut off after AuthFailures failures; while it is, even a
// correct token or certificate is refused (429) without being examined;
// another address is unaffected; the penalty ends after the window.
func TestAuthFailuresAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	clock := &fakeClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	cfg := r.config()
	cfg.RatePerMinute = 1000
	cfg.AuthFailures = 3
	cfg.AuthFailureWindow = time.Minute
	s, base := r.start(t, cfg, clock.Now, nil)
	attacker := r.clientFrom("127.0.0.1", nil)
	leases := func(tok string) call { return call{method: "GET", path: "/v1/leases", token: tok} }

	var codes []int
	for i := range 20 {
		rp := do(t, attacker, base, leases(fmt.Sprintf("lgt_guess_%02d", i)))
		codes = append(codes, rp.code)
		if rp.code == 429 && rp.header.Get("Retry-After") != "60" {
			t.Errorf("guess %d: Retry-After %q, want 60", i, rp.header.Get("Retry-After"))
		}
	}
	if got := fmt.Sprint(codes); got != fmt.Sprint([]int{401, 401, 401, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429, 429}) {
		t.Fatalf("brute force answered %v", got)
	}
	if got := counterValue(t, s.m.denied.WithLabelValues(DeniedAuthFailures)); got != 17 {
		t.Errorf("denied{reason=%s} = %v, want 17", DeniedAuthFailures, got)
	}
	if got := counterValue(t, s.m.denied.WithLabelValues(DeniedInvalidToken)); got != 3 {
		t.Errorf("invalid tokens examined: %v, want 3", got)
	}

	// While the address is turned away its credentials are not looked at:
	// a correct token, or a valid client certificate, is refused too.
	if rp := do(t, attacker, base, leases(r.tokens["dash"])); rp.code != 429 {
		t.Errorf("a correct token from the limited address: %d, want 429", rp.code)
	}
	dashCert := r.clientCA.issue(t, "dash", false)
	if rp := do(t, r.clientFrom("127.0.0.1", &dashCert), base, call{method: "GET", path: "/v1/leases"}); rp.code != 429 {
		t.Errorf("a valid certificate from the limited address: %d, want 429", rp.code)
	}

	// Another address is not affected, and its own failures count apart.
	other := r.clientFrom("127.0.0.2", nil)
	if rp := do(t, other, base, leases(r.tokens["dash"])); rp.code != 200 {
		t.Fatalf("another address: %d %s", rp.code, rp.body)
	}
	if rp := do(t, other, base, leases("lgt_typo")); rp.code != 401 {
		t.Errorf("another address's first failure: %d, want 401", rp.code)
	}

	// The penalty ends after the window; the count starts afresh.
	clock.Add(59 * time.Second)
	if rp := do(t, attacker, base, leases(r.tokens["dash"])); rp.code != 429 || rp.header.Get("Retry-After") != "1" {
		t.Errorf("1s before the end: %d, Retry-After %q", rp.code, rp.header.Get("Retry-After"))
	}
	clock.Add(time.Second)
	if rp := do(t, attacker, base, leases(r.tokens["dash"])); rp.code != 200 {
		t.Fatalf("after the penalty: %d %s", rp.code, rp.body)
	}
	if rp := do(t, attacker, base, leases("lgt_again")); rp.code != 401 {
		t.Errorf("first failure after the penalty: %d, want 401", rp.code)
	}

	logs := r.logs.String()
	if !strings.Contains(logs, `"reason":"`+DeniedAuthFailures+`"`) || !strings.Contains(logs, `"remote":"127.0.0.1:`) {
		t.Errorf("the refusals are not logged with reason and address")
	}
	if strings.Contains(logs, "lgt_guess_") || strings.Contains(logs, r.tokens["dash"]) {
		t.Error("a presented token reached the logs")
	}
}

// TestAuthFailuresSpareOtherRequests: requests without credentials and
// successful ones are not counted, and failures spread wider than the
// window never add up to a penalty.
func TestAuthFailuresSpareOtherRequests(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	clock := &fakeClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	cfg := r.config()
	cfg.RatePerMinute = 1000
	cfg.AuthFailures = 3
	cfg.AuthFailureWindow = time.Minute
	_, base := r.start(t, cfg, clock.Now, nil)
	c := r.client(nil)
	get := func(tok string) int { return do(t, c, base, call{method: "GET", path: "/v1/leases", token: tok}).code }

	for i := range 10 {
		if code := get(""); code != 401 {
			t.Fatalf("request %d without credentials: %d", i, code)
		}
	}
	for i := range 50 {
		if code := get(r.tokens["dash"]); code != 200 {
			t.Fatalf("successful request %d: %d", i, code)
		}
	}
	// Two failures a window, for three windows: never three within one.
	for i := range 6 {
		if code := get("lgt_wrong"); code != 401 {
			t.Fatalf("failure %d: %d, want 401", i, code)
		}
		if i%2 == 1 {
			clock.Add(time.Minute)
		}
	}
	if code := get(r.tokens["dash"]); code != 200 {
		t.Fatalf("after spread failures: %d", code)
	}
}

func TestFailureGate(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

	t.Run("IPv6 addresses count per /64", func(t *testing.T) {
		g := newFailureGate(2, time.Minute, 100)
		g.failed(clientKey("[2001:db8:1:2::a]:1000"), t0)
		g.failed(clientKey("[2001:db8:1:2::b]:1001"), t0)
		if blocked, _ := g.check(clientKey("[2001:db8:1:2:ffff::1]:2000"), t0); !blocked {
			t.Error("another address of the same /64 is not blocked")
		}
		if blocked, _ := g.check(clientKey("[2001:db8:1:3::a]:1000"), t0); blocked {
			t.Error("another /64 is blocked")
		}
		if clientKey("[::ffff:10.0.0.1]:1") != clientKey("10.0.0.1:2") {
			t.Error("an IPv4-mapped address is not its IPv4 address")
		}
	})

	t.Run("the table is bounded", func(t *testing.T) {
		const limit = 50
		g := newFailureGate(3, time.Minute, limit)
		// A blocked address, then a flood of addresses failing once each,
		// the oldest long ago.
		for range 3 {
			g.failed("10.9.9.9", t0)
		}
		for i := range 1000 {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			g.failed(fmt.Sprintf("10.0.%d.%d", i/256, i%256), at)
			if n := g.size(); n > limit {
				t.Fatalf("%d addresses tracked after %d, limit %d", n, i+1, limit)
			}
		}
		// Records whose window and penalty are over are dropped first.
		later := t0.Add(2 * time.Minute)
		g.failed("10.8.8.8", later)
		if n := g.size(); n != 1 {
			t.Errorf("%d addresses tracked after every record expired, want 1", n)
		}
	})

	t.Run("records without a penalty are evicted before one with", func(t *testing.T) {
		g := newFailureGate(3, time.Minute, 10)
		for i := range 9 {
			g.failed(fmt.Sprintf("10.0.0.%d", i), t0)
		}
		blockedAt := t0.Add(time.Second)
		for range 3 {
			g.failed("10.9.9.9", blockedAt)
		}
		for i := range 20 {
			g.failed(fmt.Sprintf("10.1.0.%d", i), blockedAt.Add(time.Duration(i+1)*time.Millisecond))
		}
		if blocked, _ := g.check("10.9.9.9", blockedAt.Add(2*time.Second)); !blocked {
			t.Error("the blocked address was evicted before older, idle ones")
		}
	})
}
