package detectors

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// The audit-signal rules' edges, judged at an injected time: no database.

var sigNow = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

func TestJudgeWindow(t *testing.T) {
	t.Parallel()
	burst := DefaultSignalRulesConfig().windowRules()[0] // issuance-burst: 50 in 5m, 10x over 24h, min 20
	end := sigNow.Truncate(time.Minute)
	start := burst.windowStart(end)
	cases := []struct {
		name    string
		count   int64
		sum     int64         // baseline sum
		history time.Duration // how long before the window the key's history starts (0: none)
		want    string
	}{
		{"just under the threshold, no history", 50, 0, 0, ""},
		{"just over the threshold", 51, 0, 0, "threshold"},
		{"baseline min not reached", 19, 1, 24 * time.Hour, ""},
		// 288 windows in 24h; 288 credentials: average 1 per window.
		{"at the baseline min, 20x the average", 20, 288, 24 * time.Hour, "baseline"},
		{"just at 10x the average", 20, 576, 24 * time.Hour, ""},
		{"just over 10x the average", 21, 576, 24 * time.Hour, "baseline"},
		// A key seen for one hour only: its average is over 12 windows.
		{"short history: average over what there is", 25, 24, time.Hour, "baseline"},
		{"short history, not 10x", 25, 36, time.Hour, ""},
		// History starting inside the last window counts as one window.
		{"history shorter than a window", 25, 3, time.Minute, ""},
		{"no history: threshold only", 49, 0, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := store.WindowCount{End: end, Count: tc.count, BaselineSum: tc.sum}
			if tc.history > 0 {
				w.BaselineFrom = start.Add(-tc.history)
			}
			got, hit := judgeWindow(burst, w)
			if got != tc.want || hit != (tc.want != "") {
				t.Errorf("judgeWindow = %q %v, want %q", got, hit, tc.want)
			}
		})
	}
	// Root-token use: any request.
	root := DefaultSignalRulesConfig().windowRules()[2]
	if _, hit := judgeWindow(root, store.WindowCount{End: end, Count: 1}); !hit {
		t.Error("one root-token request is not reported")
	}
	if q := root.query(sigNow, 10); q.Min != 0 || q.Threshold != 0 || q.BaselinePeriod != 0 {
		t.Errorf("root query = %+v", q)
	}
	if q := burst.query(sigNow, 10); q.Min != 19 || q.Threshold != 50 || q.BaselinePeriod != 24*time.Hour {
		t.Errorf("burst query = %+v", q)
	}
}

func TestWindowFinding(t *testing.T) {
	t.Parallel()
	denied := DefaultSignalRulesConfig().windowRules()[1]
	w := store.WindowCount{Mount: "postgres", Principal: "accessor:hmac-sha256:x", RemoteAddress: "10.0.0.9",
		End: sigNow.Truncate(time.Minute), Count: 11, FirstAt: sigNow.Add(-4 * time.Minute), LastAt: sigNow}
	m, _ := ParseModes("")
	f := windowFinding(denied, w, "threshold", sigNow, m, Everywhere())
	if f.Rule != RuleDeniedBurst || f.Severity != schemas.SeverityMedium || f.Mode != schemas.ModeObserve || !f.InScope {
		t.Errorf("finding = %+v", f)
	}
	if f.Facts["token_accessor"] != "hmac-sha256:x" || f.Facts["count"] != int64(11) || f.Facts["window_seconds"] != 300.0 ||
		f.Facts["window_start"] != rfc(sigNow.Add(-4*time.Minute)) {
		t.Errorf("facts = %v", f.Facts)
	}
	// The same window is the same finding; the next window is another.
	if g := windowFinding(denied, w, "threshold", sigNow.Add(time.Hour), m, Everywhere()); g.ID != f.ID {
		t.Error("finding id depends on the detection time")
	}
	w.End = w.End.Add(time.Minute)
	if g := windowFinding(denied, w, "threshold", sigNow, m, Everywhere()); g.ID == f.ID {
		t.Error("another window has the same finding id")
	}
}

func openSession(addr string) observed.OpenSession {
	return observed.OpenSession{Database: "main", DBSession: observed.DBSession{PID: 4242, BackendStart: sigNow.Add(-time.Hour),
		UserOID: 16400, UserName: "v-app-x", ClientAddr: addr, ClientPort: 50000, BackendType: "client backend"},
		FirstSeenAt: sigNow.Add(-time.Hour)}
}

func TestJudgeForeignAddress(t *testing.T) {
	t.Parallel()
	lease := store.Lease{LeaseID: "postgres/creds/app/l1", Mount: "postgres", Role: "app", DBUser: "v-app-x", Database: "main",
		State: store.StateActive}
	cidrs, err := ParseAllowedCIDRs("app=192.168.0.0/16, 10.20.0.0/16; postgres/other=172.16.0.0/12; *=203.0.113.7")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		client  string
		addrs   []string
		cidrs   map[string][]netip.Prefix
		noLease bool
		want    bool
	}{
		{"the issuing address", "10.0.0.7", []string{"10.0.0.7"}, nil, false, false},
		{"a renewal's address", "10.0.0.8", []string{"10.0.0.7", "10.0.0.8"}, nil, false, false},
		{"another address", "10.0.0.9", []string{"10.0.0.7"}, nil, false, true},
		{"local socket: no client address", "", []string{"10.0.0.7"}, nil, false, false},
		{"IPv4-mapped IPv6 client", "::ffff:10.0.0.7", []string{"10.0.0.7"}, nil, false, false},
		{"both loopback, v4 and v6", "::1", []string{"127.0.0.1"}, nil, false, false},
		{"loopback client, remote Vault client", "127.0.0.1", []string{"10.0.0.7"}, nil, false, true},
		{"inside the role's CIDRs", "192.168.4.5", []string{"10.0.0.7"}, cidrs, false, false},
		{"just outside the role's CIDRs", "10.21.0.1", []string{"10.0.0.7"}, cidrs, false, true},
		{"another role's CIDRs do not count", "172.16.0.1", []string{"10.0.0.7"}, cidrs, false, true},
		{"allowed for every role", "203.0.113.7", []string{"10.0.0.7"}, cidrs, false, false},
		{"CIDRs only, outside", "10.0.0.9", nil, cidrs, false, true},
		{"nothing to compare with", "10.0.0.9", nil, nil, false, false},
		{"no lease: another rule's business", "10.0.0.9", []string{"10.0.0.7"}, nil, true, false},
		{"unparsable client address", "not-an-ip", []string{"10.0.0.7"}, nil, false, false},
		{"IPv6 addresses", "2001:db8::2", []string{"2001:db8::1"}, nil, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultSignalRulesConfig()
			cfg.AllowedCIDRs = tc.cidrs
			leases := []store.Lease{lease}
			if tc.noLease {
				leases = nil
			}
			v := judgeForeignAddress(openSession(tc.client), leases, map[string][]string{lease.LeaseID: tc.addrs}, cfg)
			if (v != nil) != tc.want {
				t.Fatalf("verdict = %+v, want %v", v, tc.want)
			}
			if v == nil {
				return
			}
			if v.rule != RuleForeignAddress || v.severity != schemas.SeverityMedium || v.dbUser != "v-app-x" || v.lease == nil || !v.mayEnforce {
				t.Errorf("verdict = %+v", v)
			}
			if v.facts["client_addr"] == "" || !strings.Contains(v.summary, "v-app-x") {
				t.Errorf("facts = %v, summary %q", v.facts, v.summary)
			}
		})
	}
}

func TestJudgeRenewalPastMaxTTL(t *testing.T) {
	t.Parallel()
	issued := sigNow.Add(-2 * time.Hour)
	renewed := sigNow.Add(-time.Minute)
	mk := func(exp time.Time, src schemas.ExpireSource, mods ...func(*store.Lease)) store.Lease {
		l := store.Lease{LeaseID: "postgres/creds/app/l1", Mount: "postgres", Role: "app", Database: "main", DBUser: "v-app-x",
			State: store.StateActive, IssuedAt: &issued, RenewedAt: &renewed, ExpireAt: &exp, ExpireSource: src}
		for _, m := range mods {
			m(&l)
		}
		return l
	}
	cfg := DefaultSignalRulesConfig()
	cfg.MaxTTLs = map[string]time.Duration{"app": 24 * time.Hour, "postgres/batch": 2 * time.Hour}
	limit := issued.Add(24 * time.Hour)
	pgTol := validUntilMargin + cfg.ClockSkew
	cases := []struct {
		name    string
		lease   store.Lease
		want    bool
		enforce bool
	}{
		{"within the max TTL", mk(limit.Add(-time.Hour), schemas.ExpireFromValidUntil), false, false},
		{"rolvaliduntil just within plugin margin and skew", mk(limit.Add(pgTol), schemas.ExpireFromValidUntil), false, false},
		{"rolvaliduntil just past margin and skew", mk(limit.Add(pgTol+time.Millisecond), schemas.ExpireFromValidUntil), true, true},
		{"event expiry just within a second", mk(limit.Add(time.Second), schemas.ExpireFromEvent), false, false},
		{"event expiry past", mk(limit.Add(2*time.Second), schemas.ExpireFromEvent), true, true},
		{"per mount/role max TTL", mk(issued.Add(3*time.Hour), schemas.ExpireFromEvent, func(l *store.Lease) { l.Role = "batch" }), true, true},
		{"default max TTL (768h)", mk(issued.Add(700*time.Hour), schemas.ExpireFromEvent, func(l *store.Lease) { l.Role = "other" }), false, false},
		{"past the default max TTL", mk(issued.Add(769*time.Hour), schemas.ExpireFromEvent, func(l *store.Lease) { l.Role = "other" }), true, true},
		{"HMAC'd user: finding, no enforcement", mk(limit.Add(time.Hour), schemas.ExpireFromEvent, func(l *store.Lease) { l.DBUserHMAC = true }), true, false},
		{"never renewed", mk(limit.Add(time.Hour), schemas.ExpireFromEvent, func(l *store.Lease) { l.RenewedAt = nil }), false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := judgeRenewalPastMaxTTL(tc.lease, cfg)
			if (v != nil) != tc.want {
				t.Fatalf("verdict = %+v, want %v", v, tc.want)
			}
			if v != nil && (v.mayEnforce != tc.enforce || v.severity != schemas.SeverityHigh) {
				t.Errorf("mayEnforce = %v (%s), want %v", v.mayEnforce, v.whyNot, tc.enforce)
			}
		})
	}
}

func TestJudgeAuditSilence(t *testing.T) {
	t.Parallel()
	const window = 5 * time.Minute
	sessions := map[string]int{"main": 2}
	cases := []struct {
		name     string
		live     store.AuditLiveness
		sessions map[string]int
		want     bool
	}{
		{"just under the window", store.AuditLiveness{ReceivedAt: sigNow.Add(-window + time.Millisecond)}, sessions, false},
		{"exactly the window", store.AuditLiveness{ReceivedAt: sigNow.Add(-window)}, sessions, false},
		{"just over the window", store.AuditLiveness{ReceivedAt: sigNow.Add(-window - time.Millisecond)}, sessions, true},
		{"silent but no live session", store.AuditLiveness{ReceivedAt: sigNow.Add(-time.Hour)}, map[string]int{}, false},
		// Vault's clock far behind: its entry times do not matter, only
		// when the entries were committed.
		{"Vault clock behind, entries arriving", store.AuditLiveness{ReceivedAt: sigNow.Add(-time.Minute), LastEntryAt: sigNow.Add(-time.Hour)}, sessions, false},
		{"Vault clock ahead, silent", store.AuditLiveness{ReceivedAt: sigNow.Add(-time.Hour), LastEntryAt: sigNow.Add(time.Hour)}, sessions, true},
		{"no entry ever, since the watermark", store.AuditLiveness{Coverage: sigNow.Add(-time.Hour)}, sessions, true},
		{"no entry ever, fresh watermark", store.AuditLiveness{Coverage: sigNow.Add(-time.Minute)}, sessions, false},
		{"nothing known", store.AuditLiveness{}, sessions, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := judgeAuditSilence(tc.live, tc.sessions, sigNow, window)
			if (v != nil) != tc.want {
				t.Fatalf("verdict = %+v, want %v", v, tc.want)
			}
			if v != nil && (v.rule != RuleAuditSilence || v.severity != schemas.SeverityHigh) {
				t.Errorf("verdict = %+v", v)
			}
		})
	}
	// One silence is one finding, however long it lasts.
	l := store.AuditLiveness{ReceivedAt: sigNow.Add(-time.Hour)}
	if a, b := judgeAuditSilence(l, sessions, sigNow, window), judgeAuditSilence(l, sessions, sigNow.Add(time.Hour), window); a.id != b.id {
		t.Error("a lasting silence gives new findings")
	}
}

func TestDeviceFinding(t *testing.T) {
	t.Parallel()
	m, _ := ParseModes("")
	dc := func(resp, answered, isErr bool, op string) store.DeviceChange {
		return store.DeviceChange{AuditDeviceChange: store.AuditDeviceChange{RequestID: "r1", Response: resp, DevicePath: "file",
			Operation: op, Time: sigNow, Error: isErr, DisplayName: "root"}, Answered: answered}
	}
	cases := []struct {
		name string
		d    store.DeviceChange
		want schemas.Severity // "" for none
	}{
		{"disabled (response)", dc(true, true, false, store.AuditDeviceDisable), schemas.SeverityCritical},
		{"disable requested, never answered", dc(false, false, false, store.AuditDeviceDisable), schemas.SeverityCritical},
		{"disable requested, answered", dc(false, true, false, store.AuditDeviceDisable), ""},
		{"disable refused", dc(true, true, true, store.AuditDeviceDisable), schemas.SeverityMedium},
		{"enabled", dc(true, true, false, store.AuditDeviceEnable), schemas.SeverityLow},
		{"enable refused", dc(true, true, true, store.AuditDeviceEnable), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := deviceFinding(tc.d, sigNow, m, Everywhere())
			switch {
			case tc.want == "" && f != nil:
				t.Fatalf("finding %+v, want none", f)
			case tc.want != "" && (f == nil || f.Severity != tc.want):
				t.Fatalf("finding %+v, want severity %s", f, tc.want)
			}
		})
	}
	// The request and the response of one disable are one finding.
	a := deviceFinding(dc(false, false, false, store.AuditDeviceDisable), sigNow, m, Everywhere())
	b := deviceFinding(dc(true, true, false, store.AuditDeviceDisable), sigNow, m, Everywhere())
	if a.ID != b.ID {
		t.Error("request and response of one disable are two findings")
	}
}

func TestSignalConfig(t *testing.T) {
	t.Parallel()
	m, err := ParseModes("credential-foreign-address=enforce,renewal-past-max-ttl=enforce,issuance-burst=observe,audit-silence=observe," +
		"permission-denied-burst=observe,root-token-use=observe,audit-device-disabled=observe")
	if err != nil {
		t.Fatal(err)
	}
	if m.Mode(RuleForeignAddress) != schemas.ModeEnforce || m.Mode(RuleIssuanceBurst) != schemas.ModeObserve {
		t.Errorf("modes = %v", m)
	}
	for _, r := range observeOnlySignalRules {
		bad, _ := ParseModes(r + "=enforce")
		if err := (AuditRulesConfig{Modes: bad, UnauditedWindow: time.Minute, Interval: time.Second, Batch: 1}).Validate(); err == nil {
			t.Errorf("%s=enforce accepted", r)
		}
	}
	for _, bad := range []string{"app", "app=", "=10.0.0.0/8", "app=10.0.0.0/33", "app=nope"} {
		if _, err := ParseAllowedCIDRs(bad); err == nil {
			t.Errorf("ParseAllowedCIDRs(%q) accepted", bad)
		}
	}
	c, err := ParseAllowedCIDRs("readonly=10.0.0.0/8,192.168.0.0/16;postgres/app=::ffff:10.1.0.0/112;*=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := SignalRulesConfig{AllowedCIDRs: c}
	if got := cfg.Allowed("postgres", "readonly"); len(got) != 3 || got[2].String() != "127.0.0.1/32" {
		t.Errorf("readonly allowed = %v", got)
	}
	if got := cfg.Allowed("postgres", "app"); len(got) != 2 || got[0].String() != "10.1.0.0/16" {
		t.Errorf("app allowed = %v", got)
	}
	for _, bad := range []string{"app", "app=0s", "app=-1h", "app=soon"} {
		if _, err := ParseMaxTTLs(bad); err == nil {
			t.Errorf("ParseMaxTTLs(%q) accepted", bad)
		}
	}
	d := DefaultSignalRulesConfig()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(*SignalRulesConfig){
		func(c *SignalRulesConfig) { c.IssuanceWindow = 90 * time.Second },
		func(c *SignalRulesConfig) { c.DeniedWindow = -time.Minute },
		func(c *SignalRulesConfig) { c.IssuanceFactor = 1 },
		func(c *SignalRulesConfig) { c.MaxTTLs = map[string]time.Duration{"x": 0} },
	} {
		c := d
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("invalid config accepted: %+v", c)
		}
	}
}
