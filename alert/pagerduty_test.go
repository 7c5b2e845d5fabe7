package alert

import (
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

const testRoutingKey = "R0UT1NGKEYabcdef0123456789abcdef"

func TestPagerDutyTriggerAndResolve(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	cfg := fastConfig()
	cfg.PagerDutyURL = pd.srv.URL + "/v2/enqueue"
	cfg.PagerDutyRoutingKey = testRoutingKey
	r.start(cfg)

	user := "v-token-app-" + pgtest.Suffix()
	f := r.finding("credential-reuse-after-revoke", schemas.SeverityCritical, "appdb", user)
	r.insert(f)
	waitFor(t, 5*time.Second, "the trigger event", func() bool { return len(pd.docs()) >= 1 })

	ev := pd.docs()[0]
	wantKey := "leaseguard/credential-reuse-after-revoke/appdb/" + user
	for _, c := range []struct{ got, want string }{
		{str(ev, "routing_key"), testRoutingKey},
		{str(ev, "event_action"), "trigger"},
		{str(ev, "dedup_key"), wantKey},
		{str(ev, "payload", "severity"), "critical"},
		{str(ev, "payload", "source"), "appdb"},
		{str(ev, "payload", "component"), user},
		{str(ev, "payload", "class"), "credential-reuse-after-revoke"},
		{str(ev, "payload", "custom_details", "lease_id"), f.LeaseID},
		{str(ev, "payload", "custom_details", "facts", "expire_source"), "pg_valid_until"},
		{str(ev, "client"), "leaseguard"},
		{pd.pathsSeen()[0], "/v2/enqueue"},
	} {
		if c.got != c.want {
			t.Errorf("trigger: got %q, want %q (event %v)", c.got, c.want, ev)
		}
	}
	if s := str(ev, "payload", "summary"); s == "" || len(s) > maxPDSummary {
		t.Errorf("trigger summary %q", s)
	}
	if _, err := time.Parse(time.RFC3339Nano, str(ev, "payload", "timestamp")); err != nil {
		t.Errorf("trigger timestamp: %v", err)
	}

	// The user is dropped: the incident resolves, under the same key.
	r.revoked("appdb", user, schemas.OutcomeDropped)
	waitFor(t, 5*time.Second, "the resolve event", func() bool { return len(pd.docs()) >= 2 })
	res := pd.docs()[1]
	if str(res, "event_action") != "resolve" || str(res, "dedup_key") != wantKey || str(res, "routing_key") != testRoutingKey {
		t.Errorf("resolve event %v", res)
	}
	if _, ok := res["payload"]; ok {
		t.Errorf("resolve event carries a payload: %v", res)
	}
	as := r.alerts(wantKey)
	if len(as) != 1 || !as[0].resolved {
		t.Fatalf("alerts %+v, want one resolved", as)
	}
	// Nothing more is sent once the sink has the resolve.
	r.quiet()
	if n := len(pd.docs()); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

func TestPagerDutySeverityMapping(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   schemas.Severity
		want string
	}{
		{schemas.SeverityCritical, "critical"},
		{schemas.SeverityHigh, "error"},
		{schemas.SeverityMedium, "warning"},
		{schemas.SeverityLow, "warning"},
		{schemas.SeverityInfo, "info"},
	} {
		if got := pagerDutySeverity(c.in); got != c.want {
			t.Errorf("%s: got %s, want %s", c.in, got, c.want)
		}
	}
}

func TestPagerDutyEventDocument(t *testing.T) {
	t.Parallel()
	s := newPagerDutySink(Config{PagerDutyRoutingKey: testRoutingKey, GeneratorURL: "https://lg.example/findings"}.WithDefaults(), nil)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	long := make([]byte, 3000)
	for i := range long {
		long[i] = 'x'
	}
	a := Alert{DedupKey: "leaseguard/ghost-session/appdb/finding:f1", Rule: "ghost-session", Severity: schemas.SeverityHigh,
		Database: "appdb", Finding: schemas.Finding{ID: "f1", Summary: string(long)}, Findings: 1,
		FirstDetectedAt: at, LastDetectedAt: at, OpenedAt: at.Add(time.Second)}
	ev := s.event(notification{Action: ActionTrigger, Alert: a, At: at})
	if ev.Payload == nil || len(ev.Payload.Summary) != maxPDSummary || ev.Payload.Severity != "error" ||
		ev.Payload.Component != "" || ev.ClientURL != "https://lg.example/findings" || !ev.Payload.Timestamp.Equal(at) {
		t.Errorf("trigger %+v", ev)
	}
	res := s.event(notification{Action: ActionResolve, Alert: a, At: at})
	if res.Payload != nil || res.EventAction != "resolve" || res.DedupKey != a.DedupKey || res.RoutingKey != testRoutingKey {
		t.Errorf("resolve %+v", res)
	}
}
