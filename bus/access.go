package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"text/template"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Accounts of the embedded server. Each user has its own account, so a
// shipper or a SIEM reader shares no subject with leaseguard: NATS checks
// permissions on a publish's subject but not on its reply subject, and
// JetStream sends acks and pulled messages to that reply subject. Inside
// one account a client could point that at leaseguard.revocations or
// vault.audit.x; across accounts the reply crosses only as a private
// response subject. What leaseguard offers the others is exported from its
// account, subject by subject.
const (
	AccountLeaseguard = "LEASEGUARD"
	AccountShipper    = "SHIPPER"
	AccountSIEM       = "SIEM"
)

// DefaultSIEMConsumer is the durable pull consumer on the evidence stream
// that SIEM readers use. They cannot create consumers: a consumer's
// deliver subject is not checked against the creator's permissions, so
// creating one would let them publish anywhere in leaseguard's account.
const DefaultSIEMConsumer = "siem"

// Access describes what the shipper and SIEM accounts reach in
// leaseguard's account.
type Access struct {
	// IngestSubjects are where shippers publish (vault.audit.>,
	// vault.leases.>), with JetStream acks.
	IngestSubjects []string
	// EvidenceSubject and EvidenceStream are where the relay publishes
	// evidence; SIEM readers may subscribe to the subject and pull from
	// SIEMConsumer on the stream.
	EvidenceSubject string
	EvidenceStream  string
	SIEMConsumer    string
}

// DefaultAccess is Access for leaseguard's default subjects and streams.
func DefaultAccess() Access {
	return Access{
		IngestSubjects:  []string{"vault.audit.>", "vault.leases.>"},
		EvidenceSubject: "leaseguard.evidence",
		EvidenceStream:  "LEASEGUARD_EVIDENCE",
		SIEMConsumer:    DefaultSIEMConsumer,
	}
}

var (
	safeSubject = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.([A-Za-z0-9_-]+|\*))*(\.>)?$`)
	safeName    = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// Validate checks that every subject and name is plain enough to be
// written into the server configuration as it is.
func (a Access) Validate() error {
	if len(a.IngestSubjects) == 0 {
		return errors.New("nats access: no ingest subject")
	}
	for _, s := range append([]string{a.EvidenceSubject}, a.IngestSubjects...) {
		if !safeSubject.MatchString(s) {
			return fmt.Errorf("nats access: %q is not a plain subject", s)
		}
	}
	if !safeName.MatchString(a.EvidenceStream) || !safeName.MatchString(a.SIEMConsumer) {
		return fmt.Errorf("nats access: stream %q or consumer %q is not a plain name", a.EvidenceStream, a.SIEMConsumer)
	}
	return nil
}

// adminAPI are the JetStream API requests that change or copy streams and
// consumers. Only leaseguard may make them; the others are denied them
// explicitly, in addition to not being allowed anything but their own few
// subjects, so that a widened allow list cannot reopen them.
var adminAPI = []string{
	"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>",
	"$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.SNAPSHOT.>",
	"$JS.API.STREAM.RESTORE.>", "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>",
	"$JS.API.CONSUMER.DELETE.>", "$JS.API.ACCOUNT.>",
}

// siemAPI are the requests a SIEM reader makes: pull from and ack its
// consumer, and look at it, at the stream and at the account. The account
// info ($JS.API.INFO) matters beyond what it tells (counts and limits): an
// account without JetStream of its own otherwise answers every $JS.API
// request itself, "not enabled", racing the answer from leaseguard's.
func (a Access) siemAPI() (pull, ack string, info []string) {
	s, c := a.EvidenceStream, a.SIEMConsumer
	return "$JS.API.CONSUMER.MSG.NEXT." + s + "." + c,
		"$JS.ACK." + s + "." + c + ".>",
		[]string{"$JS.API.CONSUMER.INFO." + s + "." + c, "$JS.API.STREAM.INFO." + s, "$JS.API.INFO"}
}

var accountsTemplate = template.Must(template.New("accounts").Parse(`
accounts {
  {{.Leaseguard.Account}} {
    jetstream: enabled
    users: [ { nkey: {{printf "%q" .Leaseguard.Key}} } ]
{{- if .External}}
    exports: [
{{- range .Access.IngestSubjects}}
      { service: {{printf "%q" .}}, accounts: [{{$.Shipper.Account}}] }
{{- end}}
      { stream: {{printf "%q" .Access.EvidenceSubject}}, accounts: [{{.SIEM.Account}}] }
      { service: {{printf "%q" .Pull}}, response_type: stream, accounts: [{{.SIEM.Account}}] }
      { service: {{printf "%q" .Ack}}, accounts: [{{.SIEM.Account}}] }
{{- range .Info}}
      { service: {{printf "%q" .}}, accounts: [{{$.SIEM.Account}}] }
{{- end}}
    ]
{{- end}}
  }
{{- if .External}}
  {{.Shipper.Account}} {
    users: [ {
      nkey: {{printf "%q" .Shipper.Key}}
      permissions: {
        publish: { allow: [{{range $i, $s := .Access.IngestSubjects}}{{if $i}}, {{end}}{{printf "%q" $s}}{{end}}], deny: [{{.AdminDeny}}] }
        subscribe: { allow: ["_INBOX.>"] }
      }
    } ]
    imports: [
{{- range .Access.IngestSubjects}}
      { service: { account: {{$.Leaseguard.Account}}, subject: {{printf "%q" .}} } }
{{- end}}
    ]
  }
  {{.SIEM.Account}} {
    users: [ {
      nkey: {{printf "%q" .SIEM.Key}}
      permissions: {
        publish: { allow: [{{printf "%q" .Pull}}, {{printf "%q" .Ack}}{{range .Info}}, {{printf "%q" .}}{{end}}], deny: [{{.AdminDeny}}] }
        subscribe: { allow: ["_INBOX.>", {{printf "%q" .Access.EvidenceSubject}}] }
      }
    } ]
    imports: [
      { stream: { account: {{.Leaseguard.Account}}, subject: {{printf "%q" .Access.EvidenceSubject}} } }
      { service: { account: {{.Leaseguard.Account}}, subject: {{printf "%q" .Pull}} } }
      { service: { account: {{.Leaseguard.Account}}, subject: {{printf "%q" .Ack}} } }
{{- range .Info}}
      { service: { account: {{$.Leaseguard.Account}}, subject: {{printf "%q" .}} } }
{{- end}}
    ]
  }
{{- end}}
}
`))

type accountUser struct{ Account, Key string }

// accountsConfig renders the accounts block of the server configuration.
// Without external users only leaseguard's account exists.
func accountsConfig(creds *Credentials, a Access, external bool) (string, error) {
	lg, ok := creds.User(UserLeaseguard)
	if !ok {
		return "", errors.New("embedded nats: no credential for user leaseguard")
	}
	data := map[string]any{
		"Leaseguard": accountUser{AccountLeaseguard, lg.PublicKey},
		"External":   external,
		"Access":     a,
	}
	if external {
		if err := a.Validate(); err != nil {
			return "", err
		}
		sh, ok1 := creds.User(UserShipper)
		si, ok2 := creds.User(UserSIEM)
		if !ok1 || !ok2 {
			return "", errors.New("embedded nats: a listener needs the shipper and siem credentials")
		}
		pull, ack, info := a.siemAPI()
		data["Shipper"], data["SIEM"] = accountUser{AccountShipper, sh.PublicKey}, accountUser{AccountSIEM, si.PublicKey}
		data["Pull"], data["Ack"], data["Info"] = pull, ack, info
		data["AdminDeny"] = quoteList(adminAPI)
	}
	var b bytes.Buffer
	if err := accountsTemplate.Execute(&b, data); err != nil {
		return "", fmt.Errorf("embedded nats: render accounts: %w", err)
	}
	return b.String(), nil
}

func quoteList(ss []string) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", s)
	}
	return b.String()
}

// EnsureSIEMConsumer creates the durable pull consumer SIEM readers pull
// evidence from (they may not create one themselves), or leaves an
// existing one as it is. It starts at the stream's first message; readers
// acknowledge each message explicitly.
func EnsureSIEMConsumer(ctx context.Context, js jetstream.JetStream, a Access) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, a.EvidenceStream)
	if err != nil {
		return fmt.Errorf("siem consumer: stream %s: %w", a.EvidenceStream, err)
	}
	if _, err := s.Consumer(ctx, a.SIEMConsumer); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("siem consumer %s: %w", a.SIEMConsumer, err)
	}
	_, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       a.SIEMConsumer,
		Description:   "SIEM readers of leaseguard evidence (pull, explicit ack)",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: a.EvidenceSubject,
	})
	if err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
		return fmt.Errorf("create siem consumer %s: %w", a.SIEMConsumer, err)
	}
	return nil
}
