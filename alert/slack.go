package alert

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

const sinkSlack = "slack"

// slackSink posts to a Slack-compatible incoming webhook: one message when
// an alert fires and one when it resolves. The webhook URL is the secret.
type slackSink struct {
	url string
	p   poster
}

func newSlackSink(cfg Config, client *http.Client) *slackSink {
	return &slackSink{url: cfg.SlackWebhookURL,
		p: poster{name: sinkSlack, client: client, secrets: secretsOf(cfg.SlackWebhookURL)}}
}

func (s *slackSink) Name() string          { return sinkSlack }
func (s *slackSink) Resend() time.Duration { return 0 }

// slackMessage is an incoming-webhook message: text is the fallback shown
// in notifications, blocks the message itself.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Slack's limits on a section's text and on one field.
const (
	maxSlackSection = 3000
	maxSlackField   = 2000
)

func (s *slackSink) Send(ctx context.Context, n notification) error {
	_, err := s.p.post(ctx, s.url, slackDocument(n))
	return err
}

// slackDocument is the message for n.
func slackDocument(n notification) slackMessage {
	a := n.Alert
	title := fmt.Sprintf(":rotating_light: %s %s", strings.ToUpper(string(a.Severity)), headline(a))
	body := a.Finding.Summary
	if n.Action == ActionResolve {
		title = ":white_check_mark: Resolved: " + headline(a)
		body = "Resolved"
		if a.ResolveReason != "" {
			body += " by " + a.ResolveReason
		}
		if a.ResolvedAt != nil {
			body += " at " + a.ResolvedAt.UTC().Format(time.RFC3339)
		}
		body += "."
	}
	mr := func(s string, limit int) slackText { return slackText{Type: "mrkdwn", Text: truncate(s, limit)} }
	fields := []slackText{mr("*Rule*\n"+slackEscape(a.Rule), maxSlackField)}
	if a.Database != "" {
		fields = append(fields, mr("*Database*\n"+slackEscape(a.Database), maxSlackField))
	}
	if a.DBUser != "" {
		fields = append(fields, mr("*User*\n`"+slackEscape(a.DBUser)+"`", maxSlackField))
	}
	fields = append(fields, mr("*Findings*\n"+fmt.Sprint(a.Findings), maxSlackField))
	if a.Finding.LeaseID != "" {
		fields = append(fields, mr("*Lease*\n"+slackEscape(a.Finding.LeaseID), maxSlackField))
	}
	if a.Finding.Action != "" {
		fields = append(fields, mr("*Action*\n"+slackEscape(a.Finding.Action), maxSlackField))
	}
	return slackMessage{
		Text: slackEscape(title),
		Blocks: []slackBlock{
			{Type: "section", Text: ptr(mr("*"+slackEscape(title)+"*\n"+slackEscape(body), maxSlackSection))},
			{Type: "section", Fields: fields},
			{Type: "context", Elements: []slackText{mr(fmt.Sprintf("leaseguard · first detected %s · %s",
				a.FirstDetectedAt.UTC().Format(time.RFC3339), slackEscape(a.DedupKey)), maxSlackSection)}},
		},
	}
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func ptr[T any](v T) *T { return &v }
