package alert

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

const sinkPagerDuty = "pagerduty"

// pagerDutySink sends PagerDuty Events API v2 events: trigger when an alert
// fires, resolve when it ends, both with the alert's dedup key, so that one
// incident follows one rule and user.
type pagerDutySink struct {
	url        string
	routingKey string
	clientURL  string
	p          poster
}

func newPagerDutySink(cfg Config, client *http.Client) *pagerDutySink {
	return &pagerDutySink{
		url: cfg.PagerDutyURL, routingKey: cfg.PagerDutyRoutingKey, clientURL: cfg.GeneratorURL,
		p: poster{name: sinkPagerDuty, client: client, secrets: []string{cfg.PagerDutyRoutingKey}},
	}
}

func (s *pagerDutySink) Name() string          { return sinkPagerDuty }
func (s *pagerDutySink) Resend() time.Duration { return 0 }

// pdEvent is an Events API v2 event.
type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"`
	DedupKey    string     `json:"dedup_key"`
	Payload     *pdPayload `json:"payload,omitempty"`
	Client      string     `json:"client,omitempty"`
	ClientURL   string     `json:"client_url,omitempty"`
}

type pdPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     time.Time      `json:"timestamp"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// maxPDSummary is the Events API's limit on payload.summary.
const maxPDSummary = 1024

func (s *pagerDutySink) Send(ctx context.Context, n notification) error {
	_, err := s.p.post(ctx, s.url, s.event(n))
	return err
}

// event is the Events API document for n.
func (s *pagerDutySink) event(n notification) pdEvent {
	a := n.Alert
	ev := pdEvent{RoutingKey: s.routingKey, EventAction: string(n.Action), DedupKey: a.DedupKey}
	if n.Action == ActionResolve {
		return ev
	}
	source := a.Database
	if source == "" {
		source = "leaseguard"
	}
	ev.Client = "leaseguard"
	ev.ClientURL = s.clientURL
	ev.Payload = &pdPayload{
		Summary:       truncate(headline(a)+": "+a.Finding.Summary, maxPDSummary),
		Source:        source,
		Severity:      pagerDutySeverity(a.Severity),
		Timestamp:     a.StartsAt().UTC(),
		Component:     a.DBUser,
		Group:         a.Database,
		Class:         a.Rule,
		CustomDetails: details(a),
	}
	return ev
}

// pagerDutySeverity maps a finding's severity onto the Events API's four.
func pagerDutySeverity(s schemas.Severity) string {
	switch s {
	case schemas.SeverityCritical:
		return "critical"
	case schemas.SeverityHigh:
		return "error"
	case schemas.SeverityMedium, schemas.SeverityLow:
		return "warning"
	default:
		return "info"
	}
}

// headline is "[high] rule: user on database".
func headline(a Alert) string {
	h := fmt.Sprintf("[%s] %s", a.Severity, a.Rule)
	switch {
	case a.DBUser != "" && a.Database != "":
		h += ": " + a.DBUser + " on " + a.Database
	case a.DBUser != "":
		h += ": " + a.DBUser
	case a.Database != "":
		h += " on " + a.Database
	}
	return h
}

// details are the alert's facts and identity for custom_details.
func details(a Alert) map[string]any {
	d := map[string]any{
		"rule":              a.Rule,
		"severity":          string(a.Severity),
		"dedup_key":         a.DedupKey,
		"finding_id":        a.Finding.ID,
		"last_finding_id":   a.LastFindingID,
		"findings":          a.Findings,
		"first_detected_at": a.FirstDetectedAt.UTC().Format(time.RFC3339Nano),
		"last_detected_at":  a.LastDetectedAt.UTC().Format(time.RFC3339Nano),
		"mode":              string(a.Finding.Mode),
		"action":            a.Finding.Action,
	}
	for k, v := range map[string]string{
		"database": a.Database, "db_user": a.DBUser, "lease_id": a.Finding.LeaseID,
		"vault_mount": a.Finding.Mount, "vault_role": a.Finding.Role, "entity_id": a.Finding.EntityID,
		"command_id": a.Finding.CommandID,
	} {
		if v != "" {
			d[k] = v
		}
	}
	if len(a.Finding.Facts) > 0 {
		d["facts"] = a.Finding.Facts
	}
	return d
}
