package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// fixturePath is a copy of the shared Vault 1.21.0 fixture, so that the
// tests need nothing outside the repository.
const fixturePath = "testdata/vault-1.21-audit.log"

// fixtureLines returns the lines of the Vault 1.21.0 fixture.
func fixtureLines(tb testing.TB) [][]byte {
	tb.Helper()
	f, err := os.Open(fixturePath)
	if err != nil {
		tb.Fatalf("open fixture: %v", err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), DefaultMaxEntryBytes)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	return lines
}

// fixtureLine returns line n (1-based) of the fixture.
func fixtureLine(tb testing.TB, n int) []byte {
	tb.Helper()
	lines := fixtureLines(tb)
	if n < 1 || n > len(lines) {
		tb.Fatalf("fixture has %d lines, no line %d", len(lines), n)
	}
	return lines[n-1]
}

// requireDecodeError fails unless err is a *DecodeError with a reason.
func requireDecodeError(tb testing.TB, err error) *DecodeError {
	tb.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		tb.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	if de.Reason == "" {
		tb.Fatalf("DecodeError has an empty reason")
	}
	if de.Error() != de.Reason {
		tb.Fatalf("Error() = %q, want the reason %q", de.Error(), de.Reason)
	}
	return de
}

func TestDecodeFixtureEntry(t *testing.T) {
	t.Parallel()
	var d Decoder
	// Line 20: alice's first creds read, the response.
	e, err := d.Decode(fixtureLine(t, 20))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	wantTime := time.Date(2026, 11, 25, 19, 23, 33, 507975384, time.UTC)
	if !e.Time.Equal(wantTime) {
		t.Errorf("Time = %v, want %v", e.Time, wantTime)
	}
	if e.Type != schemas.AuditTypeResponse {
		t.Errorf("Type = %q", e.Type)
	}
	if e.Auth == nil || e.Auth.DisplayName != "userpass-alice" || e.Auth.EntityID != "ffe23c2c-69ab-e043-c810-bf24e5df3f4b" ||
		e.Auth.TokenTTL != 2764800 || len(e.Auth.Policies) != 2 {
		t.Errorf("Auth = %+v", e.Auth)
	}
	r := e.Request
	if r.ID != "4212eee2-8290-1b2a-c91e-d7d62037a171" || r.Operation != "read" || r.MountPoint != "postgres/" ||
		r.MountType != "database" || r.Path != "postgres/creds/reporting" || r.RemoteAddress != "127.0.0.1" ||
		r.RemotePort != 35424 || r.Namespace == nil || r.Namespace.ID != "root" || r.Namespace.Path != "" {
		t.Errorf("Request = %+v", r)
	}
	if e.Response == nil || e.Response.Secret == nil ||
		e.Response.Secret.LeaseID != "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1" || e.Response.MountType != "database" {
		t.Fatalf("Response = %+v", e.Response)
	}
	var data map[string]string
	if err := json.Unmarshal(e.Response.Data, &data); err != nil || data["username"] != "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613" {
		t.Errorf("Response.Data = %s (%v)", e.Response.Data, err)
	}
}

func TestDecodeAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		line     string
		wantType string
	}{
		{
			name:     "audit test entry with almost no fields",
			line:     `{"request":{"id":"5ab5759c-a302-0bb4-aa40-9526e73a66a3","namespace":{"id":"root"},"operation":"update","path":"sys/audit/test"},"time":"2026-11-25T19:23:31.271320831Z","type":"request"}`,
			wantType: "request",
		},
		{
			name:     "surrounding whitespace and CRLF",
			line:     " \t{\"request\":{\"id\":\"r1\",\"path\":\"sys/audit/test\"},\"time\":\"2026-11-25T19:23:31Z\",\"type\":\"request\"}\r\n",
			wantType: "request",
		},
		{
			name:     "unknown fields are ignored",
			line:     `{"request":{"id":"r1","path":"x","wrap_ttl":30,"headers":{"x":["y"]},"future":{"a":[1,2]}},"forwarded_from":"node2","time":"2026-11-25T19:23:31Z","type":"response","response":{"warnings":["w"],"redirect":"","data":{"a":1}},"new_top_level":true}`,
			wantType: "response",
		},
		{
			name:     "unknown type is a valid entry",
			line:     `{"time":"2026-11-25T19:23:31.5Z","type":"kmip-request","request":{"id":"k1","operation":"","path":"kmip/scope/s1/role/r1"}}`,
			wantType: "kmip-request",
		},
		{
			name:     "time with an offset",
			line:     `{"time":"2026-11-25T20:23:31.000000001+01:00","type":"request","request":{"id":"r1"}}`,
			wantType: "request",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d Decoder
			e, err := d.Decode([]byte(tt.line))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if e.Type != tt.wantType {
				t.Errorf("Type = %q, want %q", e.Type, tt.wantType)
			}
		})
	}
}

// malformedCases are lines every audit decoder must reject, with the reason
// it must give (exact, or a prefix when prefix is set).
func malformedCases(tb testing.TB) []struct {
	name   string
	line   []byte
	reason string
	prefix bool
} {
	issue := fixtureLine(tb, 20)
	return []struct {
		name   string
		line   []byte
		reason string
		prefix bool
	}{
		{name: "empty", line: []byte(""), reason: "empty entry"},
		{name: "blank", line: []byte(" \r\n"), reason: "empty entry"},
		{name: "not JSON", line: []byte("Nov 25 19:23:31 vault[42]: hello"), reason: "not JSON: invalid character 'N' looking for beginning of value"},
		{name: "JSON array", line: []byte(`[{"type":"request"}]`), reason: "not a JSON object: got array"},
		{name: "JSON string", line: []byte(`"request"`), reason: "not a JSON object: got string"},
		{name: "JSON null", line: []byte(`null`), reason: "not a JSON object: got null"},
		{name: "truncated line", line: issue[:500], reason: "entry looks truncated (unexpected end of JSON input)"},
		{name: "two entries on one line", line: append(append(bytes.Clone(issue), ' '), issue...), reason: "not JSON: invalid character '{' after top-level value"},
		{name: "time is a number", line: []byte(`{"time":5,"type":"request","request":{"id":"r1"}}`), reason: "time: not RFC 3339"},
		{name: "time is not RFC 3339", line: []byte(`{"time":"2026-11-25 19:23:31","type":"request","request":{"id":"r1"}}`), reason: "time: not RFC 3339"},
		{name: "time is empty", line: []byte(`{"time":"","type":"request","request":{"id":"r1"}}`), reason: "time: not RFC 3339"},
		{name: "request is a string", line: []byte(`{"time":"2026-11-25T19:23:31Z","type":"request","request":"x"}`), reason: "request: want object, got string"},
		{name: "request.id is a number", line: []byte(`{"time":"2026-11-25T19:23:31Z","type":"request","request":{"id":5}}`), reason: "request.id: want string, got number"},
		{name: "remote_port is a string", line: []byte(`{"time":"2026-11-25T19:23:31Z","type":"request","request":{"id":"r1","remote_port":"5555"}}`), reason: "request.remote_port: want number, got string"},
		{name: "remote_port out of range", line: []byte(`{"time":"2026-11-25T19:23:31Z","type":"request","request":{"id":"r1","remote_port":1e99}}`), reason: "request.remote_port: number 1e99 out of range"},
		{name: "policies is a string", line: []byte(`{"time":"2026-11-25T19:23:31Z","type":"request","auth":{"policies":"root"},"request":{"id":"r1"}}`), reason: "auth.policies: want array, got string"},
		{name: "secret is an array", line: []byte(`{"time":"2026-11-25T19:23:31Z","type":"response","request":{"id":"r1"},"response":{"secret":[]}}`), reason: "response.secret: want object, got array"},
		{name: "type is a number", line: []byte(`{"time":"2026-11-25T19:23:31Z","type":1,"request":{"id":"r1"}}`), reason: "type: want string, got number"},
		{name: "missing type", line: []byte(`{"time":"2026-11-25T19:23:31Z","request":{"id":"r1","path":"sys/audit/test"}}`), reason: "not a Vault audit entry: missing type"},
		{name: "missing time", line: []byte(`{"type":"request","request":{"id":"r1"}}`), reason: "not a Vault audit entry: missing time"},
		{name: "null time", line: []byte(`{"time":null,"type":"request","request":{"id":"r1"}}`), reason: "not a Vault audit entry: missing time"},
		{name: "missing request", line: []byte(`{"time":"2026-11-25T19:23:31Z","type":"response","response":{}}`), reason: "not a Vault audit entry: missing request"},
		{name: "binary", line: []byte("\x00\x01\xff{"), reason: "not JSON: ", prefix: true},
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for _, tt := range malformedCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d Decoder
			e, err := d.Decode(tt.line)
			if err == nil {
				t.Fatalf("Decode accepted %q as %+v", tt.line, e)
			}
			de := requireDecodeError(t, err)
			if tt.prefix && !strings.HasPrefix(de.Reason, tt.reason) || !tt.prefix && de.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", de.Reason, tt.reason)
			}
		})
	}
}

func TestDecodeSizeLimit(t *testing.T) {
	t.Parallel()
	entry := func(size int) []byte {
		head := `{"time":"2026-11-25T19:23:31Z","type":"request","request":{"id":"r1","data":{"pad":"`
		tail := `"}}}`
		return []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
	}

	d := Decoder{MaxEntryBytes: 65536}
	_, err := d.Decode(entry(70000))
	if de := requireDecodeError(t, err); de.Reason != "entry is 70000 bytes, over the 65536 byte limit" {
		t.Errorf("reason = %q", de.Reason)
	}
	if _, err := d.Decode(entry(65536)); err != nil {
		t.Errorf("an entry of exactly the limit: %v", err)
	}
	// Surrounding whitespace does not count.
	if _, err := d.Decode(append(entry(65536), "\r\n"...)); err != nil {
		t.Errorf("an entry of exactly the limit plus a line end: %v", err)
	}

	var zero Decoder // 1 MiB
	if _, err := zero.Decode(entry(DefaultMaxEntryBytes)); err != nil {
		t.Errorf("zero Decoder, 1 MiB entry: %v", err)
	}
	_, err = zero.Decode(entry(DefaultMaxEntryBytes + 1))
	if de := requireDecodeError(t, err); de.Reason != "entry is 1048577 bytes, over the 1048576 byte limit" {
		t.Errorf("reason = %q", de.Reason)
	}
}

func TestDecodeLeaseEvent(t *testing.T) {
	t.Parallel()
	issued := time.Date(2026, 11, 25, 19, 23, 33, 0, time.UTC)
	expires := issued.Add(10 * time.Minute)
	ttl := int64(600)
	valid := schemas.LeaseEvent{
		Type:         schemas.LeaseEventType,
		Kind:         schemas.LeaseIssued,
		LeaseID:      "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1",
		Mount:        "postgres",
		Role:         "reporting",
		Database:     "main",
		DBUser:       "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613",
		IssueTime:    &issued,
		ExpireTime:   &expires,
		ExpireSource: schemas.ExpireFromEvent,
		TTLSeconds:   &ttl,
		EventTime:    issued,
		Source:       schemas.SourceRef{Transport: "nats", Stream: "VAULT_LEASES", Subject: "vault.leases.issued", Offset: 9},
	}
	doc, err := json.Marshal(valid)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeLeaseEvent(append(doc, '\n'))
	if err != nil {
		t.Fatalf("DecodeLeaseEvent: %v", err)
	}
	if got.LeaseID != valid.LeaseID || !got.EventTime.Equal(issued) || got.IssueTime == nil || !got.ExpireTime.Equal(expires) ||
		*got.TTLSeconds != 600 || got.Source != valid.Source || got.Database != "main" {
		t.Errorf("got %+v", got)
	}

	minimal := `{"type":"io.leaseguard.lease.v1","kind":"revoked","lease_prefix":"postgres/creds/","revoke_method":"revoke-prefix","event_time":"2026-11-25T19:23:34Z","source":{"transport":"kafka","offset":3}}`
	if _, err := DecodeLeaseEvent([]byte(minimal)); err != nil {
		t.Errorf("minimal document: %v", err)
	}

	const unknownField = `not a valid document: unknown field "`
	tests := []struct {
		name   string
		doc    string
		reason string
	}{
		{"empty", "  ", "empty document"},
		{"not JSON", "lease issued", "not JSON: invalid character 'l' looking for beginning of value"},
		{"array", `[` + string(doc) + `]`, "not a JSON object: got array"},
		{"truncated", string(doc[:len(doc)/2]), "document looks truncated (unexpected end of JSON input)"},
		{"unknown field", strings.Replace(minimal, `"kind"`, `"ttl":600,"kind"`, 1), `not a valid document: unknown field "ttl"`},
		{"trailing data", minimal + ` {}`, "not JSON: data after the object"},
		{"wrong type", strings.Replace(minimal, `"offset":3`, `"offset":"3"`, 1), "source.offset: want number, got string"},
		{"bad time", strings.Replace(minimal, `2026-11-25T19:23:34Z`, `yesterday`, 1), "a time field: not RFC 3339"},
		{"fails Validate", strings.Replace(minimal, `"revoked"`, `"deleted"`, 1), `invalid lease event: kind "deleted" is not issued, renewed, revoked or expired`},
		{"prefix on an issued event", strings.Replace(minimal, `"revoked"`, `"issued"`, 1), "invalid lease event: lease_prefix is only valid on a revoked event"},
		{"null", "null", "not a JSON object: got null"},
		{"long unknown field", `{"` + strings.Repeat("x", 1000) + `":1}`, unknownField + strings.Repeat("x", maxReasonBytes-len(unknownField)) + "…"},
		{"oversize", `{"type":"` + strings.Repeat("x", MaxLeaseEventBytes) + `"}`, "document is 65547 bytes, over the 65536 byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeLeaseEvent([]byte(tt.doc))
			if de := requireDecodeError(t, err); de.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", de.Reason, tt.reason)
			}
		})
	}
}
