package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// notification is one message to a sink about one alert.
type notification struct {
	Action Action
	Alert  Alert
	// At is the dispatcher's time of sending.
	At time.Time
}

// sink delivers notifications to one on-call system. Send returns nil only
// once the system accepted the notification; it must be idempotent for a
// given alert and action, since a delivery whose outcome could not be
// recorded is sent again. Errors are transient (retried after a backoff,
// and the sink's other deliveries wait) unless marked permanent (retried
// too, but the sink goes on with its other deliveries). Errors never carry
// a secret.
type sink interface {
	Name() string
	Send(ctx context.Context, n notification) error
	// Resend is how often a firing alert is sent again; 0: never.
	Resend() time.Duration
}

var (
	_ sink = (*alertmanagerSink)(nil)
	_ sink = (*pagerDutySink)(nil)
	_ sink = (*slackSink)(nil)
)

// permanentError: the sink refused this notification (4xx); sending the
// same again is unlikely to help until someone changes something.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// maxResponseBytes bounds how much of a response is read.
const maxResponseBytes = 64 << 10

// poster sends JSON documents over HTTP for one sink.
type poster struct {
	name   string
	client *http.Client
	// secrets are cut out of every error message.
	secrets []string
}

// newHTTPClient returns a client that follows no redirects: a webhook URL
// is a secret, and a redirect would send the document somewhere else.
func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// post sends doc as JSON to target and returns the response body of a 2xx
// answer.
func (p *poster) post(ctx context.Context, target string, doc any) ([]byte, error) {
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, &permanentError{fmt.Errorf("%s: encode: %w", p.name, err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, &permanentError{fmt.Errorf("%s: build request: %s", p.name, p.clean(unwrapURLError(err)))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "leaseguard-alert")
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: no answer in time", p.name)
		}
		return nil, fmt.Errorf("%s: %s", p.name, p.clean(unwrapURLError(err)))
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return got, nil
	}
	err = fmt.Errorf("%s: http %d: %s", p.name, resp.StatusCode, p.clean(snippet(got)))
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooEarly,
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return nil, err
	default:
		return nil, &permanentError{err}
	}
}

// unwrapURLError drops the URL that net/http puts in its errors (a webhook
// URL is a secret), keeping the operation and the cause.
func unwrapURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// clean cuts the sink's secrets out of s.
func (p *poster) clean(s string) string {
	for _, sec := range p.secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "REDACTED")
		}
	}
	return s
}

// snippet is the start of a response body on one line.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if s == "" {
		return "(empty body)"
	}
	return truncate(s, 200)
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// secretsOf lists what must not appear in a sink's errors: the URL and,
// where the URL is the secret, its path (the token part).
func secretsOf(raw string, extra ...string) []string {
	out := append([]string(nil), extra...)
	if u, err := url.Parse(raw); err == nil {
		out = append(out, raw)
		if len(u.Path) > 1 {
			out = append(out, u.Path, strings.TrimPrefix(u.Path, "/"))
		}
		if u.RawQuery != "" {
			out = append(out, u.RawQuery)
		}
	}
	return out
}
