package alert

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// Defaults of Config.
const (
	DefaultMinSeverity        = schemas.SeverityHigh
	DefaultPagerDutyURL       = "https://events.pagerduty.com/v2/enqueue"
	DefaultAlertmanagerResend = time.Minute
	DefaultInterval           = time.Second
	DefaultTimeout            = 10 * time.Second
	DefaultMaxBackoff         = 5 * time.Minute
	DefaultStoreTimeout       = 10 * time.Second
	// StoreBackoff caps the wait after a failure of the state store (not
	// of a sink): retrying a store costs a connection attempt, and alerts
	// must flow again as soon as it is back.
	StoreBackoff       = 5 * time.Second
	DefaultAutoResolve = time.Hour
	DefaultDedupWindow = 10 * time.Minute
	DefaultBatch       = 100
)

// DefaultRevocationRules are the rules whose alerts resolve when the user
// they name is dropped (a revocation with outcome dropped or already_absent):
// their condition is "this user should not exist". Alerts of every other
// rule resolve AutoResolve after their last finding.
var DefaultRevocationRules = []string{
	"lease-expired-not-revoked",
	"credential-reuse-after-revoke",
	"credential-reuse-unknown-lease",
	"orphan-role",
}

// Config configures the alert dispatcher. The zero value of a field means
// its default; a Config with no sink still keeps the alerts table current
// (a sink configured later receives the alerts still open).
type Config struct {
	// MinSeverity: findings below it raise no alert. Default high.
	MinSeverity schemas.Severity
	// AlertmanagerURLs are Alertmanager base URLs (http://am:9093), one
	// sink each; "/api/v2/alerts" is appended. Send to every instance of an
	// Alertmanager cluster. User info in a URL becomes basic auth.
	AlertmanagerURLs []string
	// AlertmanagerResend is how often a firing alert is sent again; its
	// endsAt is four times this ahead, so that the alert resolves by itself
	// if leaseguard stops sending. Default 1m.
	AlertmanagerResend time.Duration
	// GeneratorURL, when set, is the generatorURL of Alertmanager alerts and
	// the client_url of PagerDuty events (say, a dashboard of findings).
	GeneratorURL string
	// PagerDutyURL is the Events API v2 enqueue endpoint. Default
	// DefaultPagerDutyURL; used only with a routing key.
	PagerDutyURL string
	// PagerDutyRoutingKey (secret) turns the PagerDuty sink on.
	PagerDutyRoutingKey string
	// SlackWebhookURL (secret) turns the Slack-compatible webhook sink on.
	SlackWebhookURL string
	// Interval between passes over new findings, and the first retry delay.
	// Default 1s.
	Interval time.Duration
	// Timeout bounds one request to a sink. Default 10s.
	Timeout time.Duration
	// MaxBackoff caps the wait between attempts of a failing delivery (it
	// doubles from Interval, with jitter). Default 5m.
	MaxBackoff time.Duration
	// AutoResolve: an alert whose rule is not in RevocationRules resolves
	// this long after its last finding. Default 1h.
	AutoResolve time.Duration
	// DedupWindow: a finding with the rule, database and user of an alert
	// that is open, or that saw such a finding within this window, joins
	// that alert instead of raising a new one; a revocation counts for an
	// alert if it finished at most this long before the alert's first
	// finding. Default 10m.
	DedupWindow time.Duration
	// RevocationRules resolve on a revocation; nil means
	// DefaultRevocationRules.
	RevocationRules []string
	// Batch is how many findings, or deliveries of one sink, a pass takes.
	// Default 100.
	Batch int
	// StoreTimeout bounds an intake pass and each state-store step of a
	// delivery pass (begin, lock, read, each mark, commit). Default 10s.
	StoreTimeout time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.MinSeverity == "" {
		c.MinSeverity = DefaultMinSeverity
	}
	if c.AlertmanagerResend == 0 {
		c.AlertmanagerResend = DefaultAlertmanagerResend
	}
	if c.PagerDutyURL == "" {
		c.PagerDutyURL = DefaultPagerDutyURL
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.AutoResolve == 0 {
		c.AutoResolve = DefaultAutoResolve
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.RevocationRules == nil {
		c.RevocationRules = append([]string(nil), DefaultRevocationRules...)
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	return c
}

// Validate checks c, its zero fields standing for their defaults. Its
// messages never contain the routing key or the webhook URL.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.MinSeverity.Rank() == 0 {
		return fmt.Errorf("alert: min severity %q is not one of info, low, medium, high, critical", c.MinSeverity)
	}
	seen := map[string]bool{}
	for _, raw := range c.AlertmanagerURLs {
		u, err := parseSinkURL(raw)
		if err != nil {
			return fmt.Errorf("alert: alertmanager url %q: %w", redactURL(raw), err)
		}
		name := alertmanagerName(u)
		if seen[name] {
			return fmt.Errorf("alert: alertmanager url %q is listed twice", redactURL(raw))
		}
		seen[name] = true
	}
	if c.PagerDutyRoutingKey != "" {
		if strings.TrimSpace(c.PagerDutyRoutingKey) != c.PagerDutyRoutingKey || strings.ContainsAny(c.PagerDutyRoutingKey, " \t\r\n") {
			return errors.New("alert: pagerduty routing key contains white space")
		}
		if _, err := parseSinkURL(c.PagerDutyURL); err != nil {
			return fmt.Errorf("alert: pagerduty url %q: %w", redactURL(c.PagerDutyURL), err)
		}
	}
	if c.SlackWebhookURL != "" {
		if _, err := parseSinkURL(c.SlackWebhookURL); err != nil {
			// The URL is the secret: name the problem, not the URL.
			return fmt.Errorf("alert: slack webhook url: %w", err)
		}
	}
	if c.GeneratorURL != "" {
		if _, err := parseSinkURL(c.GeneratorURL); err != nil {
			return fmt.Errorf("alert: generator url %q: %w", redactURL(c.GeneratorURL), err)
		}
	}
	switch {
	case c.Interval <= 0 || c.Timeout <= 0 || c.MaxBackoff <= 0 || c.AutoResolve <= 0 ||
		c.DedupWindow <= 0 || c.AlertmanagerResend <= 0 || c.StoreTimeout <= 0:
		return errors.New("alert: interval, timeouts, max backoff, auto-resolve, dedup window and alertmanager resend must be positive")
	case c.MaxBackoff < c.Interval:
		return fmt.Errorf("alert: max backoff %s is shorter than the interval %s", c.MaxBackoff, c.Interval)
	case c.AlertmanagerResend < c.Interval:
		return fmt.Errorf("alert: alertmanager resend %s is shorter than the interval %s", c.AlertmanagerResend, c.Interval)
	case c.Batch <= 0:
		return fmt.Errorf("alert: batch %d must be positive", c.Batch)
	}
	for _, r := range c.RevocationRules {
		if strings.TrimSpace(r) == "" {
			return errors.New("alert: revocation rules contain an empty name")
		}
	}
	return nil
}

// SinkNames lists the sinks c configures, in delivery-state naming
// ("alertmanager:<host>", "pagerduty", "slack"). The names carry no secret.
func (c Config) SinkNames() []string {
	var out []string
	for _, raw := range c.AlertmanagerURLs {
		if u, err := parseSinkURL(raw); err == nil {
			out = append(out, alertmanagerName(u))
		}
	}
	if c.PagerDutyRoutingKey != "" {
		out = append(out, sinkPagerDuty)
	}
	if c.SlackWebhookURL != "" {
		out = append(out, sinkSlack)
	}
	return out
}

// LogValue shows the configuration with its secrets redacted.
func (c Config) LogValue() slog.Value {
	ams := make([]string, len(c.AlertmanagerURLs))
	for i, u := range c.AlertmanagerURLs {
		ams[i] = redactURL(u)
	}
	return slog.GroupValue(
		slog.String("min_severity", string(c.MinSeverity)),
		slog.String("alertmanager_urls", strings.Join(ams, ",")),
		slog.String("pagerduty_url", redactURL(c.PagerDutyURL)),
		slog.String("pagerduty_routing_key", redactSecret(c.PagerDutyRoutingKey)),
		slog.String("slack_webhook_url", redactSecret(c.SlackWebhookURL)),
		slog.Duration("interval", c.Interval),
		slog.Duration("timeout", c.Timeout),
		slog.Duration("max_backoff", c.MaxBackoff),
		slog.Duration("auto_resolve", c.AutoResolve),
		slog.Duration("dedup_window", c.DedupWindow),
	)
}

// String is LogValue as text, so that printing a Config shows no secret.
func (c Config) String() string { return c.LogValue().String() }

func redactSecret(s string) string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// redactURL hides a URL's password; an unparseable URL is hidden whole.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}

// parseSinkURL accepts absolute http and https URLs with a host.
func parseSinkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return nil, errors.New("host is missing")
	}
	return u, nil
}
