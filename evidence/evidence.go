package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// CloudEvents attributes of every leaseguard evidence event.
const (
	SpecVersion     = "1.0"
	DataContentType = "application/json"
	// ContentType is the content type of a whole event in structured mode.
	ContentType = "application/cloudevents+json"

	TypeRevocation = "io.leaseguard.revocation.v1"
	TypeFinding    = "io.leaseguard.finding.v1"

	// SchemaID is the $id of schemas/evidence.schema.json, which describes
	// the whole event (envelope and data).
	SchemaID = "https://leaseguard.dev/schemas/evidence.v1.json"
)

// dataSchemas: an event's dataschema names the schema of its data (as
// CloudEvents defines it), the definition for its type in
// evidence.schema.json. The OCSF class is named in the data itself
// (class_uid, metadata.version).
var dataSchemas = map[string]string{
	TypeRevocation: SchemaID + "#/$defs/accountChangeDelete",
	TypeFinding:    SchemaID + "#/$defs/detectionFindingCreate",
	TypeApproval:   SchemaID + "#/$defs/detectionFindingUpdate",
	TypePolicy:     SchemaID + "#/$defs/entityManagementPolicy",
	TypeCheckpoint: SchemaID + "#/$defs/applicationLifecycleCheckpoint",
}

// DataSchema is the dataschema of events of type typ ("" for a type
// leaseguard does not make).
func DataSchema(typ string) string { return dataSchemas[typ] }

// Event is one piece of evidence: a CloudEvent in structured JSON mode.
//
// The hash chain rides in three extension attributes. CloudEvents requires
// extension names to be lowercase letters and digits only, so the chain's
// prev_hash is "prevhash", its hash is "hash" and its position is
// "chainseq". They are empty on a built event and set by Seal (Append seals
// with the next position in the outbox's chain). chainseq is a CloudEvents
// Integer, so the chain holds at most 2^31-1 events; the schema says so.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	DataSchema      string    `json:"dataschema"`
	// ChainSeq is the event's position in the chain, from 1.
	ChainSeq int64 `json:"chainseq,omitempty"`
	// PrevHash is the hash of the event at ChainSeq-1, or GenesisHash.
	PrevHash string `json:"prevhash,omitempty"`
	// Hash is "sha256:<hex>" over the canonical form of the event without
	// its hash attribute (see Canonical).
	Hash string          `json:"hash,omitempty"`
	Data json.RawMessage `json:"data"`

	// prepared is the Builder's work for AppendMany: the event encoded,
	// checked for secrets and cut for its seal. AppendMany takes it while
	// the event has every field it was built with (unchanged), and else
	// does it again: parsing, checking and cutting twice was a fifth of
	// the revoker's CPU per revocation.
	prepared *prepared
}

// LeaseContext is what the ledger knows of the lease behind a database user.
// All fields are optional.
type LeaseContext struct {
	LeaseID        string
	VaultRequestID string
	EntityID       string
	// RemoteAddress is the address that obtained the lease, as Vault logged
	// it: an IP, with or without a port, or IPv6.
	RemoteAddress string
	Mount         string
	Role          string
}

// Builder makes events. Source is the CloudEvents source of this leaseguard
// instance, e.g. "urn:leaseguard:prod-eu-1". Version is the leaseguard build
// that makes them, in metadata.product.version (empty leaves it out). Clock
// gives the event time when the input carries none (nil means time.Now).
//
// Built events are deterministic: the id is derived from what the event is
// about, and the content only from the inputs, so a retry builds the same
// event. (A retry by another build differs only in product.version, under
// the same id: the outbox keeps the first.)
type Builder struct {
	Source string
	Clock  func() time.Time
	// Version is leaseguard's version, stamped as metadata.product.version.
	Version string
}

// Errors a Builder returns.
var (
	// ErrInvalidInput: the inputs are incomplete or disagree.
	ErrInvalidInput = errors.New("evidence: invalid input")
	// ErrSecret: the event would carry something that looks like a password
	// or a plaintext token. The Builder withholds such fields instead (see
	// secret.go); Append refuses an event that still carries one.
	ErrSecret = errors.New("evidence: event would carry a secret")
)

func (b Builder) now() time.Time {
	if b.Clock != nil {
		return b.Clock()
	}
	return time.Now()
}

func (b Builder) validate() error {
	if b.Source == "" {
		return fmt.Errorf("%w: builder source is empty", ErrInvalidInput)
	}
	if _, err := url.Parse(b.Source); err != nil {
		return fmt.Errorf("%w: builder source is not a URI reference: %v", ErrInvalidInput, err)
	}
	return nil
}

// Revocation builds the evidence of one revocation: what the command asked,
// what the revoker did, and what the database showed afterwards. lease may be
// nil.
func (b Builder) Revocation(cmd schemas.RevocationCommand, res schemas.RevocationResult, lease *LeaseContext) (Event, error) {
	if err := b.validate(); err != nil {
		return Event{}, err
	}
	if err := checkRevocation(cmd, res); err != nil {
		return Event{}, err
	}
	lc, err := mergeLease(cmd.LeaseID, lease)
	if err != nil {
		return Event{}, err
	}
	occurred := res.FinishedAt
	if occurred.IsZero() {
		occurred = b.now()
	}
	id := eventID("revocation", cmd.ID, string(res.Outcome))
	if res.CommandHash != "" {
		// Refused before it was recorded under its id: keyed by its bytes,
		// so a forged command cannot take a real command's evidence id.
		id = eventID("revocation-refused", res.CommandHash)
	}
	data := b.revocationData(id, cmd, res, lc, occurred)
	return b.event(TypeRevocation, id, revocationSubject(cmd, res), occurred, data)
}

// Finding builds the evidence of one finding. lease may be nil.
func (b Builder) Finding(f schemas.Finding, lease *LeaseContext) (Event, error) {
	if err := b.validate(); err != nil {
		return Event{}, err
	}
	if f.ID == "" || f.Rule == "" {
		return Event{}, fmt.Errorf("%w: finding needs an id and a rule", ErrInvalidInput)
	}
	lc, err := mergeLease(f.LeaseID, lease)
	if err != nil {
		return Event{}, err
	}
	if lc.Mount == "" {
		lc.Mount = f.Mount
	}
	if lc.Role == "" {
		lc.Role = f.Role
	}
	if lc.EntityID == "" {
		lc.EntityID = f.EntityID
	}
	// The evidence carries the finding as the state store keeps it.
	f = schemas.WithholdFinding(f)
	occurred := f.DetectedAt
	if occurred.IsZero() {
		occurred = b.now()
	}
	id := eventID("finding", f.ID)
	data := b.findingData(id, f, lc, occurred)
	return b.event(TypeFinding, id, findingSubject(f), occurred, data)
}

func (b Builder) event(typ, id, subject string, occurred time.Time, data any) (Event, error) {
	raw, err := encodeJSON(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s data: %w", typ, err)
	}
	if raw, subject, err = withholdSecrets(raw, subject); err != nil {
		return Event{}, err
	}
	ev := Event{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          b.Source,
		Type:            typ,
		Subject:         subject,
		Time:            occurred.UTC(),
		DataContentType: DataContentType,
		DataSchema:      DataSchema(typ),
		Data:            raw,
	}
	p, err := prepare(ev, true)
	if err != nil {
		return Event{}, err
	}
	ev.prepared = &p
	return ev, nil
}

// checkComplete: the envelope is complete. (prepare checks the rest: that
// nothing in the event looks like a secret.)
func checkComplete(ev Event) error {
	switch {
	case ev.SpecVersion != SpecVersion:
		return fmt.Errorf("%w: specversion %q", ErrInvalidInput, ev.SpecVersion)
	case ev.ID == "" || ev.Source == "" || ev.Type == "":
		return fmt.Errorf("%w: id, source and type are required", ErrInvalidInput)
	case len(ev.Data) == 0:
		return fmt.Errorf("%w: event %s has no data", ErrInvalidInput, ev.ID)
	}
	return nil
}

// eventID is the hex SHA-256 of the parts joined by "|". Only the last part
// of a revocation id (the outcome) is free of "|", and the first part is a
// fixed kind, so distinct inputs give distinct strings.
func eventID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "|")))
	return hex.EncodeToString(sum[:])
}

func checkRevocation(cmd schemas.RevocationCommand, res schemas.RevocationResult) error {
	switch {
	case cmd.ID == "":
		return fmt.Errorf("%w: revocation command has no id", ErrInvalidInput)
	case res.CommandID != cmd.ID:
		return fmt.Errorf("%w: result is for command %q, not %q", ErrInvalidInput, res.CommandID, cmd.ID)
	case res.Database == "" || (res.DBUser == "" && cmd.Action != schemas.ActionTerminateSession):
		return fmt.Errorf("%w: result names no database or user", ErrInvalidInput)
	case cmd.Action == schemas.ActionTerminateSession && cmd.Session == nil && res.Outcome != schemas.OutcomeRefused:
		return fmt.Errorf("%w: a session termination names no session", ErrInvalidInput)
	case res.Database != cmd.Database || res.DBUser != cmd.DBUser:
		return fmt.Errorf("%w: result is for %s/%s, command for %s/%s", ErrInvalidInput,
			res.Database, res.DBUser, cmd.Database, cmd.DBUser)
	}
	if _, ok := outcomeStatus(res.Outcome); !ok {
		return fmt.Errorf("%w: unknown outcome %q", ErrInvalidInput, res.Outcome)
	}
	return nil
}

// mergeLease combines the lease id an input carries with the lease context.
// They must agree when both are known.
func mergeLease(leaseID string, lease *LeaseContext) (LeaseContext, error) {
	var lc LeaseContext
	if lease != nil {
		lc = *lease
	}
	switch {
	case lc.LeaseID == "":
		lc.LeaseID = leaseID
	case leaseID != "" && leaseID != lc.LeaseID:
		return LeaseContext{}, fmt.Errorf("%w: lease context %q does not match lease %q", ErrInvalidInput, lc.LeaseID, leaseID)
	}
	return lc, nil
}

// findingSubject is "<database>/<user>" when both are known, else the lease
// id, else empty (the attribute is then left out).
// revocationSubject is the database user, or for the termination of a
// ghost session whose former user nobody knows, the session.
func revocationSubject(cmd schemas.RevocationCommand, res schemas.RevocationResult) string {
	if res.DBUser == "" && cmd.Session != nil {
		return fmt.Sprintf("%s/pid:%d", res.Database, cmd.Session.PID)
	}
	return res.Database + "/" + res.DBUser
}

func findingSubject(f schemas.Finding) string {
	switch {
	case f.Database != "" && f.DBUser != "":
		return f.Database + "/" + f.DBUser
	case f.LeaseID != "":
		return f.LeaseID
	}
	return ""
}
