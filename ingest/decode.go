package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/leaseguard/leaseguard/schemas"
)

// DefaultMaxEntryBytes is the size limit of one audit entry when
// Decoder.MaxEntryBytes is zero.
const DefaultMaxEntryBytes = 1 << 20

// MaxLeaseEventBytes is the size limit of one LeaseEvent document.
const MaxLeaseEventBytes = 64 << 10

// DecodeError is a permanent failure to read an input message: the message
// goes to the dead-letter queue with Reason, and retrying cannot help.
type DecodeError struct {
	// Reason is a short phrase saying what is wrong, e.g. "missing request.id".
	Reason string
}

// Error returns the reason as is, so that callers can add their own context.
func (e *DecodeError) Error() string { return e.Reason }

func decodeErrorf(format string, args ...any) *DecodeError {
	return &DecodeError{Reason: fmt.Sprintf(format, args...)}
}

// Decoder turns one line of a Vault audit device into a schemas.AuditEntry.
// The zero value is ready to use. A Decoder holds no state between calls and
// is safe for concurrent use.
type Decoder struct {
	// MaxEntryBytes bounds the size of one entry, surrounding whitespace
	// excluded. Zero or less means DefaultMaxEntryBytes.
	MaxEntryBytes int
}

// Decode parses one audit entry. Surrounding whitespace is ignored. It
// rejects, with a *DecodeError, an empty or oversized line, anything that is
// not a single JSON object, a typed field holding the wrong JSON type, and an
// object without type, time or request (every entry Vault writes has them).
// Unknown fields are ignored, an unknown type ("kmip-request", …) is a valid
// entry, and an entry without request.id gets one derived from its bytes.
//
// request.data and response.data are kept raw; Normalize reads the few keys
// it needs from them only for the entries that need them.
func (d *Decoder) Decode(line []byte) (schemas.AuditEntry, error) {
	limit := DefaultMaxEntryBytes
	if d != nil && d.MaxEntryBytes > 0 {
		limit = d.MaxEntryBytes
	}
	b := bytes.TrimSpace(line)
	if len(b) == 0 {
		return schemas.AuditEntry{}, &DecodeError{Reason: "empty entry"}
	}
	if len(b) > limit {
		return schemas.AuditEntry{}, decodeErrorf("entry is %d bytes, over the %d byte limit", len(b), limit)
	}
	if string(b) == "null" {
		// encoding/json accepts null for a struct and leaves it zero.
		return schemas.AuditEntry{}, &DecodeError{Reason: "not a JSON object: got null"}
	}
	var e schemas.AuditEntry
	if err := jsonv1.Unmarshal(b, &e); err != nil {
		// Rare: let encoding/json, whose errors the reasons are worded
		// from, decide, and say why.
		e = schemas.AuditEntry{}
		if err := json.Unmarshal(b, &e); err != nil {
			return schemas.AuditEntry{}, &DecodeError{Reason: jsonErrorReason(err, "entry", "time")}
		}
	}
	switch {
	case e.Type == "":
		return schemas.AuditEntry{}, &DecodeError{Reason: "not a Vault audit entry: missing type"}
	case e.Time.IsZero():
		return schemas.AuditEntry{}, &DecodeError{Reason: "not a Vault audit entry: missing time"}
	case e.Request == nil:
		return schemas.AuditEntry{}, &DecodeError{Reason: "not a Vault audit entry: missing request"}
	case e.Request.ID == "":
		e.Request.ID, e.RequestIDDerived = derivedRequestID(b), true
	}
	return e, nil
}

// derivedRequestID names an entry Vault wrote without request.id: help
// operations are audited before Vault assigns one, and Enterprise's KMIP
// entries have none. The id hashes the entry's bytes (surrounding
// whitespace trimmed), so a redelivered line keeps its id and the
// idempotency keys built on it hold. It cannot pair a request entry with
// its response; nothing leaseguard judges needs that for these entries.
func derivedRequestID(entry []byte) string {
	sum := sha256.Sum256(entry)
	return "derived-" + hex.EncodeToString(sum[:16])
}

// DecodeLeaseEvent parses a LeaseEvent published by another producer on
// vault.leases.>. It is strict: one JSON object of at most
// MaxLeaseEventBytes, no unknown fields, nothing after the object, and the
// result must pass Validate. Every error is a *DecodeError.
func DecodeLeaseEvent(b []byte) (schemas.LeaseEvent, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return schemas.LeaseEvent{}, &DecodeError{Reason: "empty document"}
	}
	if len(b) > MaxLeaseEventBytes {
		return schemas.LeaseEvent{}, decodeErrorf("document is %d bytes, over the %d byte limit", len(b), MaxLeaseEventBytes)
	}
	if string(b) == "null" {
		return schemas.LeaseEvent{}, &DecodeError{Reason: "not a JSON object: got null"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ev schemas.LeaseEvent
	if err := dec.Decode(&ev); err != nil {
		return schemas.LeaseEvent{}, &DecodeError{Reason: jsonErrorReason(err, "document", "a time field")}
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) != 0 {
		return schemas.LeaseEvent{}, &DecodeError{Reason: "not JSON: data after the object"}
	}
	if err := ev.Validate(); err != nil {
		return schemas.LeaseEvent{}, decodeErrorf("invalid lease event: %v", err)
	}
	return ev, nil
}

// maxReasonBytes bounds a reason: parts of it (a number literal, an unknown
// field name) come from the input.
const maxReasonBytes = 200

// jsonErrorReason turns an encoding/json error into a dead-letter reason.
// what names the input ("entry", "document"); timeField names the time.Time
// field(s) of the target type.
func jsonErrorReason(err error, what, timeField string) string {
	r := jsonErrorPhrase(err, what, timeField)
	if len(r) <= maxReasonBytes {
		return r
	}
	cut := maxReasonBytes
	for cut > 0 && !utf8.RuneStart(r[cut]) {
		cut--
	}
	return r[:cut] + "…"
}

func jsonErrorPhrase(err error, what, timeField string) string {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		timeErr   *time.ParseError
	)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		// json.Decoder reports a cut-off input this way.
		return what + " looks truncated (unexpected end of JSON input)"
	case errors.As(err, &syntaxErr):
		if syntaxErr.Error() == "unexpected end of JSON input" {
			return what + " looks truncated (unexpected end of JSON input)"
		}
		return "not JSON: " + syntaxErr.Error()
	case errors.As(err, &typeErr):
		if typeErr.Type == reflect.TypeFor[time.Time]() {
			// A non-string time, as reported when encoding/json runs on
			// its v2 implementation.
			return timeField + ": not RFC 3339"
		}
		if typeErr.Field == "" {
			return "not a JSON object: got " + typeErr.Value
		}
		if n, ok := strings.CutPrefix(typeErr.Value, "number "); ok {
			return fmt.Sprintf("%s: number %s out of range", typeErr.Field, n)
		}
		return fmt.Sprintf("%s: want %s, got %s", typeErr.Field, jsonKind(typeErr.Type), typeErr.Value)
	case errors.As(err, &timeErr), strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"):
		// time.Time is the only field type with its own JSON parser that
		// can fail.
		return timeField + ": not RFC 3339"
	}
	return "not a valid " + what + ": " + strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names the JSON type a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.String()
}
