package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// AlertName is the alertname label of every leaseguard alert in
// Alertmanager.
const AlertName = "LeaseguardFinding"

// alertmanagerPath is Alertmanager's API v2 endpoint for posting alerts.
const alertmanagerPath = "/api/v2/alerts"

// alertmanagerSink posts alerts to one Alertmanager. Alertmanager forgets an
// alert at its endsAt: a firing alert is posted again every resend interval
// with endsAt four intervals ahead, so it stays active while leaseguard
// runs and resolves by itself if leaseguard stops; a resolved alert is
// posted with endsAt at its resolution.
type alertmanagerSink struct {
	name         string
	url          string
	resend       time.Duration
	generatorURL string
	p            poster
}

func newAlertmanagerSink(raw string, cfg Config, client *http.Client) (*alertmanagerSink, error) {
	u, err := parseSinkURL(raw)
	if err != nil {
		return nil, fmt.Errorf("alert: alertmanager url %q: %w", redactURL(raw), err)
	}
	name := alertmanagerName(u)
	var secrets []string
	if pw, ok := u.User.Password(); ok {
		secrets = append(secrets, pw)
	}
	target := *u
	target.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), alertmanagerPath) + alertmanagerPath
	target.RawPath = ""
	return &alertmanagerSink{
		name: name, url: target.String(), resend: cfg.AlertmanagerResend, generatorURL: cfg.GeneratorURL,
		p: poster{name: name, client: client, secrets: secrets},
	}, nil
}

// alertmanagerName names the sink of one Alertmanager URL by host and path
// (never its user info).
func alertmanagerName(u *url.URL) string {
	p := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), alertmanagerPath)
	return "alertmanager:" + u.Host + strings.TrimSuffix(p, "/")
}

func (s *alertmanagerSink) Name() string          { return s.name }
func (s *alertmanagerSink) Resend() time.Duration { return s.resend }

// amAlert is a postableAlert of Alertmanager's API v2.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

func (s *alertmanagerSink) Send(ctx context.Context, n notification) error {
	_, err := s.p.post(ctx, s.url, []amAlert{s.document(n)})
	return err
}

// document is the alert as Alertmanager gets it for n.
func (s *alertmanagerSink) document(n notification) amAlert {
	a := n.Alert
	starts := a.StartsAt()
	ends := n.At.Add(4 * s.resend)
	if n.Action == ActionResolve {
		ends = n.At
		if a.ResolvedAt != nil {
			ends = *a.ResolvedAt
		}
	}
	if ends.Before(starts) {
		// Alertmanager refuses an alert that ends before it starts.
		ends = starts
	}
	return amAlert{
		Labels:       alertmanagerLabels(a),
		Annotations:  alertmanagerAnnotations(a),
		StartsAt:     starts.UTC(),
		EndsAt:       ends.UTC(),
		GeneratorURL: s.generatorURL,
	}
}

// Service is the service label of every leaseguard alert, as in the
// Prometheus rules (deploy/prometheus/leaseguard-rules.yml).
const Service = "leaseguard"

// alertmanagerSeverity maps a finding's severity onto the two of the
// Prometheus rules, so that one Alertmanager route serves both: critical
// (page now) for critical and high findings, warning for the rest. The
// finding's own severity is the finding_severity label.
func alertmanagerSeverity(s schemas.Severity) string {
	if s.Rank() >= schemas.SeverityHigh.Rank() {
		return "critical"
	}
	return "warning"
}

// alertmanagerLabels identify the alert: one per rule, database and user.
// A finding that names no user (a ghost session of an unknown former user)
// is told apart by its finding id.
func alertmanagerLabels(a Alert) map[string]string {
	l := map[string]string{
		"alertname":        AlertName,
		"rule":             a.Rule,
		"severity":         alertmanagerSeverity(a.Severity),
		"service":          Service,
		"finding_severity": string(a.Severity),
	}
	if a.Database != "" {
		l["database"] = a.Database
	}
	if a.DBUser != "" {
		l["role"] = a.DBUser
	} else {
		l["finding"] = a.Finding.ID
	}
	return l
}

func alertmanagerAnnotations(a Alert) map[string]string {
	ann := map[string]string{
		"summary":     a.Finding.Summary,
		"description": describe(a),
		"dedup_key":   a.DedupKey,
	}
	if a.Finding.LeaseID != "" {
		ann["lease_id"] = a.Finding.LeaseID
	}
	if len(a.Finding.Facts) > 0 {
		if b, err := json.Marshal(a.Finding.Facts); err == nil {
			ann["facts"] = string(b)
		}
	}
	return ann
}

// describe is a one-paragraph account of an alert, for humans.
func describe(a Alert) string {
	var b strings.Builder
	fmt.Fprintf(&b, "leaseguard rule %s", a.Rule)
	if a.Database != "" {
		fmt.Fprintf(&b, " on database %s", a.Database)
	}
	if a.DBUser != "" {
		fmt.Fprintf(&b, ", user %s", a.DBUser)
	}
	fmt.Fprintf(&b, ": %d finding(s), first %s, last %s", a.Findings,
		a.FirstDetectedAt.UTC().Format(time.RFC3339), a.LastDetectedAt.UTC().Format(time.RFC3339))
	if a.Finding.Action != "" {
		fmt.Fprintf(&b, "; action %s", a.Finding.Action)
	}
	if a.Finding.Mode != "" {
		fmt.Fprintf(&b, " (mode %s)", a.Finding.Mode)
	}
	if a.Finding.LeaseID != "" {
		fmt.Fprintf(&b, "; lease %s", a.Finding.LeaseID)
	}
	if a.ResolvedAt != nil {
		fmt.Fprintf(&b, "; resolved %s", a.ResolvedAt.UTC().Format(time.RFC3339))
		if a.ResolveReason != "" {
			fmt.Fprintf(&b, " (%s)", a.ResolveReason)
		}
	}
	b.WriteString(".")
	return b.String()
}
