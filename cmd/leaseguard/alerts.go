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
	AlertMinSeverity        string        `envconfig:"LEASEGUARD_ALERT_MIN_SEVERITY" default:"high" desc:"findings at or above this severity (info, low, medium, high, critical) are alerted"`
	AlertmanagerURLs        string        `envconfig:"LEASEGUARD_ALERTMANAGER_URLS" desc:"Prometheus Alertmanager base URLs, comma-separated (every cluster member); empty: off"`
	AlertmanagerResend      time.Duration `envconfig:"LEASEGUARD_ALERTMANAGER_RESEND" default:"1m" desc:"how often firing alerts are re-sent to Alertmanager (endsAt is 4x ahead, so alerts resolve if leaseguard dies)"`
	AlertGeneratorURL       string        `envconfig:"LEASEGUARD_ALERT_GENERATOR_URL" desc:"generatorURL of Alertmanager alerts (e.g. a dashboard)"`
	PagerDutyURL            string        `envconfig:"LEASEGUARD_PAGERDUTY_URL" default:"https://events.pagerduty.com/v2/enqueue" desc:"PagerDuty Events API v2 endpoint"`
	PagerDutyRoutingKeyFile string        `envconfig:"LEASEGUARD_PAGERDUTY_ROUTING_KEY_FILE" desc:"file holding the PagerDuty routing key; empty: PagerDuty off"`
	SlackWebhookURLFile     string        `envconfig:"LEASEGUARD_SLACK_WEBHOOK_URL_FILE" desc:"file holding a Slack-compatible incoming webhook URL; empty: off"`
	AlertInterval           time.Duration `envconfig:"LEASEGUARD_ALERT_INTERVAL" default:"1s" desc:"how often new findings are taken in and deliveries attempted"`
	AlertTimeout            time.Duration `envconfig:"LEASEGUARD_ALERT_TIMEOUT" default:"10s" desc:"timeout of one delivery"`
	AlertMaxBackoff         time.Duration `envconfig:"LEASEGUARD_ALERT_MAX_BACKOFF" default:"5m" desc:"longest wait between retries to a sink that is down"`
	AlertAutoResolve        time.Duration `envconfig:"LEASEGUARD_ALERT_AUTO_RESOLVE" default:"1h" desc:"alerts not resolved by a revocation resolve after this long without a new finding"`
	AlertDedupWindow        time.Duration `envconfig:"LEASEGUARD_ALERT_DEDUP_WINDOW" default:"10m" desc:"a finding this soon after its alert resolved joins it again instead of paging anew"`
}

func (a AlertConfig) validate(bad func(name, format string, args ...any)) {
	if _, err := a.alertConfig(false); err != nil {
		bad("ALERT_MIN_SEVERITY", "%v", err)
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
	for _, u := range strings.Split(a.AlertmanagerURLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.AlertmanagerURLs = append(c.AlertmanagerURLs, u)
		}
	}
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
