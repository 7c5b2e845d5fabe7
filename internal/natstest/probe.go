package natstest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Client is a connection whose asynchronous errors (the server reports a
// denied publish or subscription after the fact) a test can wait for.
type Client struct {
	NC   *nats.Conn
	JS   jetstream.JetStream
	errs chan error
}

// Dial connects to url as opts say, closed at cleanup. A refused
// connection (no or wrong credentials) is the returned error.
func Dial(t testing.TB, url string, opts ...nats.Option) (*Client, error) {
	t.Helper()
	c := &Client{errs: make(chan error, 64)}
	base := []nats.Option{
		nats.Timeout(5 * time.Second),
		nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.NC = nc
	if c.JS, err = jetstream.New(nc); err != nil {
		t.Fatalf("jetstream context: %v", err)
	}
	return c, nil
}

// MustDial is Dial that fails the test when the server refuses.
func MustDial(t testing.TB, url string, opts ...nats.Option) *Client {
	t.Helper()
	c, err := Dial(t, url, opts...)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	return c
}

// ExpectPublishDenied publishes on subject and fails the test unless the
// server answers with a permissions violation for it.
func (c *Client) ExpectPublishDenied(t testing.TB, subject string) {
	t.Helper()
	if err := c.NC.Publish(subject, []byte(`{"probe":"denied?"}`)); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	c.expectViolation(t, "publish", subject)
}

// ExpectSubscribeDenied subscribes to subject and fails the test unless
// the server answers with a permissions violation for it.
func (c *Client) ExpectSubscribeDenied(t testing.TB, subject string) {
	t.Helper()
	sub, err := c.NC.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("subscribe %s: %v", subject, err)
	}
	defer sub.Unsubscribe()
	c.expectViolation(t, "subscription", subject)
}

// ExpectAPIDenied makes the JetStream API request and fails the test
// unless the server denies the publish. A denied publish is dropped by the
// server, so no answer can follow.
func (c *Client) ExpectAPIDenied(t testing.TB, subject string) {
	t.Helper()
	inbox := c.NC.NewRespInbox()
	sub, err := c.NC.SubscribeSync(inbox)
	if err != nil {
		t.Fatalf("subscribe %s: %v", inbox, err)
	}
	defer sub.Unsubscribe()
	if err := c.NC.PublishRequest(subject, inbox, []byte(`{}`)); err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	c.expectViolation(t, "publish", subject)
	if msg, err := sub.NextMsg(0); err == nil {
		t.Errorf("request %s was answered: %s", subject, msg.Data)
	}
}

// expectViolation waits for the server's permissions violation naming
// subject; other asynchronous errors are skipped.
func (c *Client) expectViolation(t testing.TB, op, subject string) {
	t.Helper()
	if err := c.NC.Flush(); err != nil && !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("flush: %v", err)
	}
	want := fmt.Sprintf("%s to %q", op, subject)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
				return
			}
		case <-deadline:
			t.Errorf("%s %s: no permissions violation from the server", op, subject)
			return
		}
	}
}
