package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	const hook = "https://hooks.example/services/T0/B0/hookSECRET"
	for _, c := range []struct {
		name string
		cfg  Config
		// wantErr is a fragment of the error; empty: valid.
		wantErr string
	}{
		{"defaults, no sink", Config{}, ""},
		{"every sink", Config{AlertmanagerURLs: []string{"http://am-1:9093", "http://am-2:9093"},
			PagerDutyRoutingKey: "key", SlackWebhookURL: hook, MinSeverity: schemas.SeverityCritical}, ""},
		{"unknown severity", Config{MinSeverity: "severe"}, "min severity"},
		{"alertmanager without scheme", Config{AlertmanagerURLs: []string{"am:9093"}}, "scheme"},
		{"alertmanager twice", Config{AlertmanagerURLs: []string{"http://am:9093", "http://am:9093/"}}, "twice"},
		{"two alertmanagers behind one host", Config{AlertmanagerURLs: []string{"http://gw/am1", "http://gw/am2"}}, ""},
		{"pagerduty url", Config{PagerDutyRoutingKey: "key", PagerDutyURL: "ftp://pd"}, "pagerduty url"},
		{"routing key with a newline", Config{PagerDutyRoutingKey: "key\n"}, "white space"},
		{"slack url", Config{SlackWebhookURL: "hooks.example/services/hookSECRET"}, "slack webhook url"},
		{"backoff below interval", Config{Interval: time.Minute, MaxBackoff: time.Second}, "max backoff"},
		{"resend below interval", Config{Interval: time.Minute, AlertmanagerResend: time.Second}, "resend"},
		{"negative auto-resolve", Config{AutoResolve: -time.Second}, "positive"},
		{"empty rule", Config{RevocationRules: []string{"orphan-role", " "}}, "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr != "" && err == nil:
				t.Fatalf("accepted, want an error about %q", c.wantErr)
			case err != nil && !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("error %q does not mention %q", err, c.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hookSECRET") {
				t.Fatalf("error shows the webhook URL: %v", err)
			}
		})
	}
}

func TestConfigDefaultsAndSinks(t *testing.T) {
	t.Parallel()
	c := Config{}.WithDefaults()
	if c.MinSeverity != schemas.SeverityHigh || c.AutoResolve != time.Hour || c.PagerDutyURL != DefaultPagerDutyURL ||
		c.Interval != time.Second || len(c.RevocationRules) != len(DefaultRevocationRules) {
		t.Errorf("defaults %+v", c)
	}
	c = Config{AlertmanagerURLs: []string{"http://u:pw@am:9093/"}, PagerDutyRoutingKey: "pdKEY", SlackWebhookURL: "https://h/x/hookSECRET"}
	if got := strings.Join(c.SinkNames(), ","); got != "alertmanager:am:9093,pagerduty,slack" {
		t.Errorf("sinks %q", got)
	}
	s := c.String()
	for _, secret := range []string{"pw@", "pdKEY", "hookSECRET"} {
		if strings.Contains(s, secret) {
			t.Errorf("String() shows %q: %s", secret, s)
		}
	}
}

func TestDedupKey(t *testing.T) {
	t.Parallel()
	f := schemas.Finding{ID: "f1", Rule: "orphan-role", Database: "appdb", DBUser: "v-token-x"}
	if k := dedupKey(f); k != "leaseguard/orphan-role/appdb/v-token-x" {
		t.Errorf("key %q", k)
	}
	g := f
	g.ID = "f2"
	if dedupKey(g) != dedupKey(f) {
		t.Error("two findings of one rule and user have different keys")
	}
	g.Rule = "lease-expired-not-revoked"
	if dedupKey(g) == dedupKey(f) {
		t.Error("two rules share a key")
	}
	g = f
	g.DBUser = ""
	if k := dedupKey(g); k != "leaseguard/orphan-role/appdb/finding:f1" {
		t.Errorf("key with no user %q", k)
	}
	g.ID = strings.Repeat("x", 400)
	if k := dedupKey(g); len(k) > maxDedupKey || k != dedupKey(g) {
		t.Errorf("long key %q", k)
	}
}
