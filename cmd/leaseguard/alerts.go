package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/alert"
	"github.com/leaseguard/leaseguard/schemas"
)

// AlertConfig configures the on-call alert sinks. Embedded in Config.
type AlertConfig struct {
	AlertMinSeverity        string        `env:"LEASEGUARD_ALERT_MIN_SEVERITY" envDefault:"high" desc:"findings at or above this severity (info, low, medium, high, critical) are alerted"`
	AlertmanagerURLs        string        `env:"LEASEGUARD_ALERTMANAGER_URLS" desc:"Prometheus Alertmanager base URLs, comma-separated (every cluster member); empty: off"`
	AlertmanagerResend      time.Duration `env:"LEASEGUARD_ALERTMANAGER_RESEND" envDefault:"1m" desc:"how often firing alerts are re-sent to Alertmanager (endsAt is 4x ahead, so alerts resolve if leaseguard dies)"`
	AlertGeneratorURL       string        `env:"LEASEGUARD_ALERT_GENERATOR_URL" desc:"generatorURL of Alertmanager alerts (e.g. a dashboard)"`
	PagerDutyURL            string        `env:"LEASEGUARD_PAGERDUTY_URL" envDefault:"https://events.pagerduty.com/v2/enqueue" desc:"PagerDuty Events API v2 endpoint"`
	PagerDutyRoutingKeyFile string        `env:"LEASEGUARD_PAGERDUTY_ROUTING_KEY_FILE" desc:"file holding the PagerDuty routing key; empty: PagerDuty off"`
	SlackWebhookURLFile     string        `env:"LEASEGUARD_SLACK_WEBHOOK_URL_FILE" desc:"file holding a Slack-compatible incoming webhook URL; empty: off"`
	AlertInterval           time.Duration `env:"LEASEGUARD_ALERT_INTERVAL" envDefault:"1s" desc:"how often new findings are taken in and deliveries attempted"`
	AlertTimeout            time.Duration `env:"LEASEGUARD_ALERT_TIMEOUT" envDefault:"10s" desc:"timeout of one delivery"`
	AlertMaxBackoff         time.Duration `env:"LEASEGUARD_ALERT_MAX_BACKOFF" envDefault:"5m" desc:"longest wait between retries to a sink that is down"`
	AlertAutoResolve        time.Duration `env:"LEASEGUARD_ALERT_AUTO_RESOLVE" envDefault:"1h" desc:"alerts not resolved by a revocation resolve after this long without a new finding"`
	AlertDedupWindow        time.Duration `env:"LEASEGUARD_ALERT_DEDUP_WINDOW" envDefault:"10m" desc:"a finding this soon after its alert resolved joins it again instead of paging anew"`
}

// validate checks each alert setting on its own, so that a message names
// the variable at fault.
func (a AlertConfig) validate(bad badFunc) {
	if schemas.Severity(a.AlertMinSeverity).Rank() == 0 {
		bad("ALERT_MIN_SEVERITY", "not info, low, medium, high or critical")
	}
	urls := a.alertmanagerURLs()
	check := func(name string, set func(c *alert.Config)) {
		c := alert.Config{MinSeverity: schemas.SeverityHigh}
		set(&c)
		if err := c.Validate(); err != nil {
			bad(name, "%s", strings.TrimPrefix(err.Error(), "alert: "))
		}
	}
	check("ALERTMANAGER_URLS", func(c *alert.Config) { c.AlertmanagerURLs = urls })
	check("ALERT_GENERATOR_URL", func(c *alert.Config) { c.GeneratorURL = a.AlertGeneratorURL })
	// The routing key is read only at start; any stands in for it here.
	check("PAGERDUTY_URL", func(c *alert.Config) { c.PagerDutyRoutingKey, c.PagerDutyURL = "key", a.PagerDutyURL })
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"ALERT_INTERVAL", a.AlertInterval}, {"ALERT_TIMEOUT", a.AlertTimeout}, {"ALERT_MAX_BACKOFF", a.AlertMaxBackoff},
		{"ALERT_AUTO_RESOLVE", a.AlertAutoResolve}, {"ALERT_DEDUP_WINDOW", a.AlertDedupWindow}, {"ALERTMANAGER_RESEND", a.AlertmanagerResend}} {
		if v.d <= 0 {
			bad(v.name, "must be positive")
		}
	}
	if a.AlertInterval > 0 && a.AlertMaxBackoff > 0 && a.AlertMaxBackoff < a.AlertInterval {
		bad("ALERT_MAX_BACKOFF", "shorter than LEASEGUARD_ALERT_INTERVAL %s", shortDuration(a.AlertInterval))
	}
	if a.AlertInterval > 0 && a.AlertmanagerResend > 0 && a.AlertmanagerResend < a.AlertInterval {
		bad("ALERTMANAGER_RESEND", "shorter than LEASEGUARD_ALERT_INTERVAL %s", shortDuration(a.AlertInterval))
	}
}

// alertConfig builds the dispatcher configuration; with readSecrets it
// reads the routing key and webhook URL from their files.
func (a AlertConfig) alertConfig(readSecrets bool) (alert.Config, error) {
	c := alert.Config{
		MinSeverity: schemas.Severity(a.AlertMinSeverity), AlertmanagerResend: a.AlertmanagerResend,
		GeneratorURL: a.AlertGeneratorURL, PagerDutyURL: a.PagerDutyURL, Interval: a.AlertInterval,
		Timeout: a.AlertTimeout, MaxBackoff: a.AlertMaxBackoff, AutoResolve: a.AlertAutoResolve, DedupWindow: a.AlertDedupWindow,
	}
	if c.MinSeverity.Rank() == 0 {
		return c, fmt.Errorf("%q is not info, low, medium, high or critical", a.AlertMinSeverity)
	}
	c.AlertmanagerURLs = a.alertmanagerURLs()
	if readSecrets {
		var err error
		if c.PagerDutyRoutingKey, err = readSecretFile(a.PagerDutyRoutingKeyFile, "PAGERDUTY_ROUTING_KEY_FILE"); err != nil {
			return c, err
		}
		if c.SlackWebhookURL, err = readSecretFile(a.SlackWebhookURLFile, "SLACK_WEBHOOK_URL_FILE"); err != nil {
			return c, err
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// alertmanagerURLs are the URLs of LEASEGUARD_ALERTMANAGER_URLS.
func (a AlertConfig) alertmanagerURLs() []string {
	var urls []string
	for _, u := range strings.Split(a.AlertmanagerURLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

func readSecretFile(path, name string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", env(name), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// startAlerts runs the alert dispatcher (also with no sink configured, so
// the alerts table stays current and a sink added later gets what is open).
func (p *pipeline) startAlerts(cfg Config, logger *slog.Logger) error {
	acfg, err := cfg.alertConfig(true)
	if err != nil {
		return configError{err}
	}
	acfg.StoreTimeout = cfg.PassTimeout
	d, err := alert.New(acfg, alert.Deps{Pool: p.store.Pool(), Logger: logger, Registerer: p.registry,
		Progress: p.progress.Worker("alerts")})
	if err != nil {
		return configError{err}
	}
	gctx := p.groupCtx
	p.group.Go(func() error { return d.Run(gctx) })
	logger.Info("alert dispatcher running", "sinks", strings.Join(acfg.SinkNames(), ","), "min_severity", acfg.MinSeverity)
	return nil
}
