package natstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/leaseguard/leaseguard/bus"
)

// The streams CheckAccess works with, as leaseguard names them.
const (
	auditStream      = "VAULT_AUDIT"
	revocationStream = "LEASEGUARD_REVOCATIONS"
	revocationSubj   = "leaseguard.revocations"
)

// Users are how the three users reach a server under test: its URL, the
// options every client needs (TLS roots), and each user's credential.
type Users struct {
	URL                       string
	Common                    []nats.Option
	Leaseguard, Shipper, SIEM nats.Option
}

func (u Users) dial(t *testing.T, who nats.Option) *Client {
	t.Helper()
	return MustDial(t, u.URL, append(append([]nats.Option{}, u.Common...), who)...)
}

// CheckAccess shows, on a running server, what the locked-down bus
// promises: no anonymous or unknown client gets in; leaseguard creates its
// streams and consumes; the shipper publishes audit entries with an ack
// and nothing else; the SIEM reads evidence and publishes nothing; neither
// deletes or purges a stream, nor steers a server reply into leaseguard's
// subjects. Streams missing on the server are created with leaseguard's
// names and subjects.
func CheckAccess(t *testing.T, u Users) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	checkStrangersRefused(t, u)
	lg := u.dial(t, u.Leaseguard)
	ensureStreams(t, ctx, lg.JS)
	t.Run("shipper", func(t *testing.T) { checkShipper(t, ctx, u, lg) })
	t.Run("siem", func(t *testing.T) { checkSIEM(t, ctx, u, lg) })
}

func checkStrangersRefused(t *testing.T, u Users) {
	t.Helper()
	if c, err := Dial(t, u.URL, u.Common...); err == nil {
		c.NC.Close()
		t.Errorf("an anonymous client connected to %s", u.URL)
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("anonymous client: %v, want an authorization violation", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	stranger := nats.Nkey(pub, kp.Sign)
	if c, err := Dial(t, u.URL, append(append([]nats.Option{}, u.Common...), stranger)...); err == nil {
		c.NC.Close()
		t.Errorf("a client with an unknown nkey connected to %s", u.URL)
	}
}

// ensureStreams creates, as leaseguard, the streams the checks use (when
// the server has none yet) and the SIEM's consumer.
func ensureStreams(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	a := bus.DefaultAccess()
	for _, sc := range []jetstream.StreamConfig{
		{Name: auditStream, Subjects: a.IngestSubjects},
		{Name: revocationStream, Subjects: []string{revocationSubj}, Retention: jetstream.WorkQueuePolicy},
		{Name: a.EvidenceStream, Subjects: []string{a.EvidenceSubject}, DenyDelete: true, DenyPurge: true},
	} {
		if _, err := js.Stream(ctx, sc.Name); errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, sc)
			if err != nil {
				t.Fatalf("leaseguard creates stream %s: %v", sc.Name, err)
			}
		} else if err != nil {
			t.Fatalf("stream %s: %v", sc.Name, err)
		}
	}
	if err := bus.EnsureSIEMConsumer(ctx, js, a); err != nil {
		t.Fatalf("leaseguard creates the SIEM consumer: %v", err)
	}
}

func checkShipper(t *testing.T, ctx context.Context, u Users, lg *Client) {
	sh := u.dial(t, u.Shipper)
	token := fmt.Sprintf("shipped-%d", time.Now().UnixNano())
	for _, subj := range []string{"vault.audit.x", "vault.leases.x"} {
		ack, err := sh.JS.Publish(ctx, subj, []byte(`{"probe":"`+token+`"}`))
		if err != nil {
			t.Fatalf("shipper publishes on %s: %v", subj, err)
		}
		if ack.Stream != auditStream {
			t.Errorf("shipper's %s went to stream %s", subj, ack.Stream)
		}
	}
	consumeShipped(t, ctx, lg.JS, token, 2)

	for _, subj := range []string{revocationSubj, "leaseguard.evidence", "leaseguard.deadletter.audit"} {
		sh.ExpectPublishDenied(t, subj)
	}
	sh.ExpectSubscribeDenied(t, "vault.audit.>")
	sh.ExpectSubscribeDenied(t, "leaseguard.evidence")
	denyAdmin(t, sh)
	expectStreamsIntact(t, ctx, lg.JS)

	// A reply subject is not permission-checked: the shipper's publish may
	// name leaseguard.revocations as the reply, and JetStream sends its ack
	// there. It must not reach leaseguard's revocation stream.
	before := revocationLastSeq(t, ctx, lg.JS)
	if err := sh.NC.PublishRequest("vault.audit.hijack", revocationSubj, []byte(`{"probe":"hijack"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.JS.Publish(ctx, "vault.audit.x", []byte(`{"probe":"after"}`)); err != nil {
		t.Fatal(err) // its ack follows the hijacked one out of the stream
	}
	expectOnlyMarker(t, ctx, lg.JS, before)
}

// consumeShipped reads, as leaseguard with a pull consumer, the n entries
// the shipper published with token.
func consumeShipped(t *testing.T, ctx context.Context, js jetstream.JetStream, token string, n int) {
	t.Helper()
	c, err := js.CreateOrUpdateConsumer(ctx, auditStream, jetstream.ConsumerConfig{
		Durable: "access-check", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatalf("leaseguard creates a consumer: %v", err)
	}
	seen := 0
	for seen < n {
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("leaseguard fetches: %v", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if strings.Contains(string(m.Data()), token) {
				seen++
			}
			if err := m.Ack(); err != nil {
				t.Fatalf("leaseguard acks: %v", err)
			}
		}
		if got == 0 {
			t.Fatalf("leaseguard consumed %d of the shipper's %d entries", seen, n)
		}
	}
}

// denyAdmin: neither the shipper nor the SIEM may change or copy a stream,
// or make a consumer (whose deliver subject could be any subject).
func denyAdmin(t *testing.T, c *Client) {
	t.Helper()
	ev := bus.DefaultAccess().EvidenceStream
	for _, subj := range []string{
		"$JS.API.STREAM.DELETE." + ev,
		"$JS.API.STREAM.PURGE." + ev,
		"$JS.API.STREAM.DELETE." + auditStream,
		"$JS.API.STREAM.PURGE." + auditStream,
		"$JS.API.STREAM.MSG.DELETE." + auditStream,
		"$JS.API.STREAM.UPDATE." + auditStream,
		"$JS.API.STREAM.CREATE.MINE",
		"$JS.API.CONSUMER.CREATE." + ev + ".mine",
		"$JS.API.CONSUMER.DELETE." + ev + "." + bus.DefaultSIEMConsumer,
	} {
		c.ExpectAPIDenied(t, subj)
	}
}

// expectStreamsIntact: every stream still exists, and the evidence and
// audit streams still hold messages.
func expectStreamsIntact(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	for _, name := range []string{auditStream, revocationStream, bus.DefaultAccess().EvidenceStream} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
}

// revocationLastSeq is the revocation stream's last sequence, taken before
// an attempt to steer messages into it.
func revocationLastSeq(t *testing.T, ctx context.Context, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, revocationStream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// expectOnlyMarker publishes a marker into the revocation stream as
// leaseguard and checks it is the only message since before (the last
// sequence before the attempt): anything steered there was queued ahead of
// the marker.
func expectOnlyMarker(t *testing.T, ctx context.Context, js jetstream.JetStream, before uint64) {
	t.Helper()
	ack, err := js.Publish(ctx, revocationSubj, []byte("marker"))
	if err != nil {
		t.Fatalf("leaseguard publishes the marker: %v", err)
	}
	if got := ack.Sequence - before; got != 1 {
		t.Errorf("%d message(s) reached %s from outside leaseguard", got-1, revocationStream)
	}
	s, err := js.Stream(ctx, revocationStream)
	if err == nil {
		err = s.Purge(ctx) // leaseguard may purge
	}
	if err != nil {
		t.Fatalf("leaseguard purges %s: %v", revocationStream, err)
	}
}

func checkSIEM(t *testing.T, ctx context.Context, u Users, lg *Client) {
	a := bus.DefaultAccess()
	si := u.dial(t, u.SIEM)
	live, err := si.NC.SubscribeSync(a.EvidenceSubject)
	if err != nil {
		t.Fatal(err)
	}
	if err := si.NC.Flush(); err != nil {
		t.Fatalf("siem subscribes to %s: %v", a.EvidenceSubject, err)
	}
	token := fmt.Sprintf("evidence-%d", time.Now().UnixNano())
	for i := 0; i < 3; i++ {
		if _, err := lg.JS.Publish(ctx, a.EvidenceSubject, []byte(fmt.Sprintf(`{"id":"%s-%d"}`, token, i))); err != nil {
			t.Fatalf("leaseguard publishes evidence: %v", err)
		}
	}
	if m, err := live.NextMsg(5 * time.Second); err != nil {
		t.Errorf("siem's live subscription to %s: %v", a.EvidenceSubject, err)
	} else if !strings.Contains(string(m.Data), token) {
		t.Errorf("siem's live subscription got %s", m.Data)
	}
	pullEvidence(t, ctx, si.JS, token, 3)

	for _, subj := range []string{"vault.audit.x", "vault.leases.x", revocationSubj, a.EvidenceSubject} {
		si.ExpectPublishDenied(t, subj)
	}
	si.ExpectSubscribeDenied(t, "vault.audit.>")
	si.ExpectSubscribeDenied(t, revocationSubj)
	denyAdmin(t, si)
	expectStreamsIntact(t, ctx, lg.JS)
	checkSIEMReplyHijack(t, ctx, si, lg)
}

// pullEvidence reads, as the SIEM, the n evidence messages with token from
// its consumer, and acks them.
func pullEvidence(t *testing.T, ctx context.Context, js jetstream.JetStream, token string, n int) {
	t.Helper()
	a := bus.DefaultAccess()
	c, err := js.Consumer(ctx, a.EvidenceStream, a.SIEMConsumer)
	if err != nil {
		t.Fatalf("siem binds to consumer %s: %v", a.SIEMConsumer, err)
	}
	seen := 0
	for seen < n {
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("siem fetches evidence: %v", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if strings.Contains(string(m.Data()), token) {
				seen++
			}
			if err := m.Ack(); err != nil {
				t.Fatalf("siem acks evidence: %v", err)
			}
		}
		if err := batch.Error(); err != nil || got == 0 {
			t.Fatalf("siem read %d of %d evidence messages (%v)", seen, n, err)
		}
	}
}

// checkSIEMReplyHijack: a pull request's reply subject is where JetStream
// delivers; the SIEM naming leaseguard.revocations must not feed evidence
// into leaseguard's revocation stream.
func checkSIEMReplyHijack(t *testing.T, ctx context.Context, si, lg *Client) {
	t.Helper()
	a := bus.DefaultAccess()
	if _, err := lg.JS.Publish(ctx, a.EvidenceSubject, []byte(`{"id":"to-hijack"}`)); err != nil {
		t.Fatal(err)
	}
	pull := "$JS.API.CONSUMER.MSG.NEXT." + a.EvidenceStream + "." + a.SIEMConsumer
	before := revocationLastSeq(t, ctx, lg.JS)
	if err := si.NC.PublishRequest(pull, revocationSubj, []byte(`{"batch":1,"expires":1000000000}`)); err != nil {
		t.Fatal(err)
	}
	// The consumer serves pull requests in order: this one is answered
	// after the hijacking one was (or was dropped for want of a reader).
	c, err := si.JS.Consumer(ctx, a.EvidenceStream, a.SIEMConsumer)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		_ = m.Ack()
	}
	// This ack leaves the evidence stream after any delivery to the
	// hijacking request did.
	if _, err := lg.JS.Publish(ctx, a.EvidenceSubject, []byte(`{"id":"after"}`)); err != nil {
		t.Fatal(err)
	}
	expectOnlyMarker(t, ctx, lg.JS, before)
}
