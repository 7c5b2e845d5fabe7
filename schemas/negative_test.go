package schemas_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/leaseguard/leaseguard/schemas"
)

// mutate decodes an example, applies edit to the decoded document and
// encodes it again.
func mutate(t *testing.T, example string, edit func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join("examples", example)), &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func obj(doc map[string]any, key string) map[string]any { return doc[key].(map[string]any) }

func TestSchemaCases(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		schema  string
		example string
		edit    func(doc map[string]any)
		valid   bool
	}{
		// audit-entry: tolerant.
		{"audit: unknown top-level field", "audit-entry", "audit-entry.json",
			func(d map[string]any) { d["kmip_operation"] = map[string]any{"x": 1} }, true},
		{"audit: unknown nested fields", "audit-entry", "audit-entry.json", func(d map[string]any) {
			obj(d, "request")["mount_is_external_plugin"] = false
			obj(d, "request")["something_new"] = []any{1, "two"}
			obj(d, "response")["supplemental_audit_data"] = map[string]any{"k": "v"}
			obj(obj(d, "response"), "secret")["renewable"] = true
			obj(d, "auth")["entity_created"] = true
		}, true},
		{"audit: unknown entry type", "audit-entry", "audit-entry.json",
			func(d map[string]any) { d["type"] = "kmip-response" }, true},
		{"audit: request entry without response", "audit-entry", "audit-entry.json",
			func(d map[string]any) { d["type"] = "request"; delete(d, "response") }, true},
		{"audit: sys/audit/test entry", "audit-entry", "audit-entry.json", func(d map[string]any) {
			for k := range d {
				delete(d, k)
			}
			d["time"] = "2026-11-25T19:23:31.271320831Z"
			d["type"] = "request"
			d["request"] = map[string]any{"id": "5ab5759c-a302-0bb4-aa40-9526e73a66a3", "namespace": map[string]any{"id": "root"}, "operation": "update", "path": "sys/audit/test"}
		}, true},
		{"audit: nulls from older versions", "audit-entry", "audit-entry.json", func(d map[string]any) {
			obj(d, "auth")["metadata"] = nil
			obj(d, "auth")["policies"] = nil
			obj(d, "request")["data"] = nil
			obj(d, "request")["namespace"] = nil
			obj(d, "response")["secret"] = nil
		}, true},
		{"audit: nested data values hashed", "audit-entry", "audit-entry.json", func(d map[string]any) {
			obj(d, "request")["data"] = map[string]any{
				"lease_id":  "hmac-sha256:6103d880693b4a9744815e59658063faae02c97b4e70893060b0452cc5234fc9",
				"increment": 1200,
				"sync":      false,
				"options":   map[string]any{"file_path": "hmac-sha256:ef5ff3e5b25f5a48513ec1122963f4367410f06a97c6eeec610e6d04ff1e93ce", "list": []any{"a", nil}},
			}
		}, true},
		{"audit: missing type", "audit-entry", "audit-entry.json",
			func(d map[string]any) { delete(d, "type") }, false},
		{"audit: missing time", "audit-entry", "audit-entry.json",
			func(d map[string]any) { delete(d, "time") }, false},
		{"audit: time not RFC 3339", "audit-entry", "audit-entry.json",
			func(d map[string]any) { d["time"] = "2026-11-25 19:23:33" }, false},
		{"audit: missing request", "audit-entry", "audit-entry.json",
			func(d map[string]any) { delete(d, "request") }, false},
		{"audit: without request.id (help, KMIP)", "audit-entry", "audit-entry.json",
			func(d map[string]any) { delete(obj(d, "request"), "id") }, true},
		{"audit: metadata holding a list", "audit-entry", "audit-entry.json",
			func(d map[string]any) { obj(d, "auth")["metadata"] = map[string]any{"cidrs": []any{"10.0.0.0/8"}} }, true},
		{"audit: remote_port a string", "audit-entry", "audit-entry.json",
			func(d map[string]any) { obj(d, "request")["remote_port"] = "35424" }, false},
		{"audit: truncated HMAC in data", "audit-entry", "audit-entry.json",
			func(d map[string]any) { obj(obj(d, "response"), "data")["password"] = "hmac-sha256:f97523620719" }, false},
		{"audit: truncated HMAC deep in data", "audit-entry", "audit-entry.json", func(d map[string]any) {
			obj(obj(d, "response"), "data")["nested"] = map[string]any{"list": []any{"hmac-sha256:XYZ"}}
		}, false},
		{"audit: data an array", "audit-entry", "audit-entry.json",
			func(d map[string]any) { obj(d, "response")["data"] = []any{"x"} }, false},

		// lease-event: strict.
		{"lease: unknown kind", "lease-event", "lease-event.json",
			func(d map[string]any) { d["kind"] = "created" }, false},
		{"lease: extra field", "lease-event", "lease-event.json",
			func(d map[string]any) { d["lease_duration"] = 600 }, false},
		{"lease: extra field in source", "lease-event", "lease-event.json",
			func(d map[string]any) { obj(d, "source")["ack"] = true }, false},
		{"lease: wrong type", "lease-event", "lease-event.json",
			func(d map[string]any) { d["type"] = "io.leaseguard.lease.v2" }, false},
		{"lease: unknown expire_source", "lease-event", "lease-event.json",
			func(d map[string]any) { d["expire_source"] = "guess" }, false},
		{"lease: unknown revoke_method", "lease-event", "lease-event-revoked-path.json",
			func(d map[string]any) { d["revoke_method"] = "cli" }, false},
		{"lease: unknown transport", "lease-event", "lease-event.json",
			func(d map[string]any) { obj(d, "source")["transport"] = "http" }, false},
		{"lease: missing source", "lease-event", "lease-event.json",
			func(d map[string]any) { delete(d, "source") }, false},
		{"lease: missing event_time", "lease-event", "lease-event.json",
			func(d map[string]any) { delete(d, "event_time") }, false},
		{"lease: event_time not a date-time", "lease-event", "lease-event.json",
			func(d map[string]any) { d["event_time"] = "1795634613" }, false},
		{"lease: no lease_id nor lease_prefix", "lease-event", "lease-event.json",
			func(d map[string]any) { delete(d, "lease_id") }, false},
		{"lease: empty lease_id", "lease-event", "lease-event.json",
			func(d map[string]any) { d["lease_id"] = "" }, false},
		{"lease: lease_id and lease_prefix", "lease-event", "lease-event-revoke-prefix.json",
			func(d map[string]any) { d["lease_id"] = "database/creds/readonly/dSvKHqLbMgDfh8z9xsfQveTX" }, false},
		{"lease: prefix on issued", "lease-event", "lease-event-revoke-prefix.json",
			func(d map[string]any) { d["kind"] = "issued"; delete(d, "revoke_method") }, false},
		{"lease: revoke_method on issued", "lease-event", "lease-event.json",
			func(d map[string]any) { d["revoke_method"] = "event" }, false},
		{"lease: HMAC'd lease id on renewed", "lease-event", "lease-event-revoked-body.json",
			func(d map[string]any) { d["kind"] = "renewed"; delete(d, "revoke_method") }, false},
		{"lease: HMAC'd lease id not flagged", "lease-event", "lease-event-revoked-body.json",
			func(d map[string]any) { delete(d, "lease_id_hmac"); d["revoke_method"] = "event" }, false},
		{"lease: flagged lease id not an HMAC", "lease-event", "lease-event-revoked-path.json",
			func(d map[string]any) { d["lease_id_hmac"] = true; d["revoke_method"] = "event" }, false},
		{"lease: lease_id_hmac false is fine", "lease-event", "lease-event.json",
			func(d map[string]any) { d["lease_id_hmac"] = false }, true},
		{"lease: revoke by body with a plain id", "lease-event", "lease-event-revoked-path.json",
			func(d map[string]any) { d["revoke_method"] = "body" }, false},
		{"lease: revoke by path with an HMAC", "lease-event", "lease-event-revoked-body.json",
			func(d map[string]any) { d["revoke_method"] = "path" }, false},
		{"lease: revoke-force without prefix", "lease-event", "lease-event-revoked-path.json",
			func(d map[string]any) { d["revoke_method"] = "revoke-force" }, false},
		{"lease: revoke-force with prefix", "lease-event", "lease-event-revoke-prefix.json",
			func(d map[string]any) { d["revoke_method"] = "revoke-force" }, true},
		{"lease: HMAC'd user not flagged", "lease-event", "lease-event-issued-hmac.json",
			func(d map[string]any) { delete(d, "db_user_hmac") }, false},
		{"lease: flagged user not an HMAC", "lease-event", "lease-event.json",
			func(d map[string]any) { d["db_user_hmac"] = true }, false},
		{"lease: expire_source without expire_time", "lease-event", "lease-event.json",
			func(d map[string]any) { delete(d, "expire_time") }, false},
		{"lease: negative ttl", "lease-event", "lease-event.json",
			func(d map[string]any) { d["ttl_seconds"] = -1 }, false},
		{"lease: fractional ttl", "lease-event", "lease-event.json",
			func(d map[string]any) { d["ttl_seconds"] = 1.5 }, false},
		{"lease: null expire_time", "lease-event", "lease-event.json",
			func(d map[string]any) { d["expire_time"] = nil }, false},

		// finding.
		{"finding: extra field", "finding", "finding.json",
			func(d map[string]any) { d["ttl"] = 1 }, false},
		{"finding: unknown severity", "finding", "finding.json",
			func(d map[string]any) { d["severity"] = "urgent" }, false},
		{"finding: unknown mode", "finding", "finding.json",
			func(d map[string]any) { d["mode"] = "dry-run" }, false},
		{"finding: revocation without command", "finding", "finding.json",
			func(d map[string]any) { delete(d, "command_id") }, false},
		{"finding: revocation in observe mode", "finding", "finding.json",
			func(d map[string]any) { d["mode"] = "observe" }, false},
		{"finding: revocation out of scope", "finding", "finding.json",
			func(d map[string]any) { d["in_scope"] = false }, false},
		{"finding: command without revocation", "finding", "finding-observe.json",
			func(d map[string]any) { d["command_id"] = "216e34caed2d7caee8976a46c3c33762" }, false},
		{"finding: out of scope, observed", "finding", "finding-observe.json",
			func(d map[string]any) { d["in_scope"] = false; d["mode"] = "enforce" }, true},
		{"finding: approval requested in enforce mode", "finding", "finding-approve.json",
			func(d map[string]any) { d["mode"] = "enforce" }, false},
		{"finding: approval requested out of scope", "finding", "finding-approve.json",
			func(d map[string]any) { d["in_scope"] = false }, false},
		{"finding: approval without pending revocation", "finding", "finding-approve.json",
			func(d map[string]any) { delete(d, "command_id") }, false},
		{"finding: approve mode, observed out of scope", "finding", "finding-observe.json",
			func(d map[string]any) { d["in_scope"] = false; d["mode"] = "approve" }, true},
		{"finding: pilot ghost session", "finding", "finding-pilot.json",
			func(d map[string]any) { d["action"] = "would_terminate"; d["rule"] = "ghost-session" }, true},
		{"finding: pilot in approve mode", "finding", "finding-pilot.json",
			func(d map[string]any) { d["mode"] = "approve" }, true},
		{"finding: pilot in scope", "finding", "finding-pilot.json",
			func(d map[string]any) { d["in_scope"] = true }, false},
		{"finding: pilot in observe mode", "finding", "finding-pilot.json",
			func(d map[string]any) { d["mode"] = "observe" }, false},
		{"finding: pilot with a command", "finding", "finding-pilot.json",
			func(d map[string]any) { d["command_id"] = "216e34caed2d7caee8976a46c3c33762" }, false},
		{"finding: unknown would action", "finding", "finding-pilot.json",
			func(d map[string]any) { d["action"] = "would_shout" }, false},
		{"finding: rule name with spaces", "finding", "finding.json",
			func(d map[string]any) { d["rule"] = "Lease Expired" }, false},

		// revocation-command.
		{"command: extra field", "revocation-command", "revocation-command.json",
			func(d map[string]any) { d["force"] = true }, false},
		{"command: unsigned", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "key_id"); delete(d, "signature") }, true},
		{"command: signature without key", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "key_id") }, false},
		{"command: key without signature", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "signature") }, false},
		{"command: short signature", "revocation-command", "revocation-command.json",
			func(d map[string]any) { d["signature"] = "c2lnbmF0dXJl" }, false},
		{"command: key id upper case", "revocation-command", "revocation-command.json",
			func(d map[string]any) { d["key_id"] = "80898A946096B8FB" }, false},
		{"command: user name over 63 bytes", "revocation-command", "revocation-command.json",
			func(d map[string]any) {
				d["db_user"] = "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613-and-then-some"
			}, false},
		{"command: missing reason", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "reason") }, false},
		{"command: version 1", "revocation-command", "revocation-command.json",
			func(d map[string]any) { d["type"] = "io.leaseguard.revocation_command.v1" }, false},
		{"command: no lifetime", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "expires_at") }, false},
		{"command: no nonce", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "nonce") }, false},
		{"command: no target identity", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "target") }, false},
		{"command: no role oid", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "role_oid") }, false},
		{"command: no corroboration", "revocation-command", "revocation-command.json",
			func(d map[string]any) { delete(d, "corroboration") }, false},
		{"command: corroborated by the bus", "revocation-command", "revocation-command.json",
			func(d map[string]any) { d["corroboration"].(map[string]any)["source"] = "audit_log" }, false},
		{"command: unknown action", "revocation-command", "revocation-command.json",
			func(d map[string]any) { d["action"] = "disable" }, false},
		{"command: termination without session", "revocation-command", "revocation-command.json",
			func(d map[string]any) { d["action"] = "terminate_session" }, false},
		{"command: drop naming a session", "revocation-command", "revocation-command.json",
			func(d map[string]any) {
				d["session"] = map[string]any{"pid": 1, "backend_start": "2026-11-25T19:00:00Z", "user_oid": 5}
			}, false},

		// revocation-result.
		{"result: extra field", "revocation-result", "revocation-result.json",
			func(d map[string]any) { d["evidence"] = "x" }, false},
		{"result: unknown outcome", "revocation-result", "revocation-result.json",
			func(d map[string]any) { d["outcome"] = "revoked" }, false},
		{"result: dropped but role present", "revocation-result", "revocation-result.json",
			func(d map[string]any) { d["role_absent_after"] = false }, false},
		{"result: dropped but sessions left", "revocation-result", "revocation-result.json",
			func(d map[string]any) { d["sessions_left_after"] = 1 }, false},
		{"result: refused without guard", "revocation-result", "revocation-result-refused.json",
			func(d map[string]any) { delete(d, "guard") }, false},
		{"result: refused but executed", "revocation-result", "revocation-result-refused.json",
			func(d map[string]any) { d["statements"] = []any{`DROP ROLE "reporting_owner"`} }, false},
		{"result: guard on a drop", "revocation-result", "revocation-result.json",
			func(d map[string]any) { d["guard"] = "protected" }, false},
		{"result: failed without reason", "revocation-result", "revocation-result.json", func(d map[string]any) {
			d["outcome"] = "failed"
			d["role_absent_after"] = false
		}, false},
		{"result: failed with reason", "revocation-result", "revocation-result.json", func(d map[string]any) {
			d["outcome"] = "failed"
			d["role_absent_after"] = false
			d["sqlstate"] = "2BP01"
			d["reason"] = "role owns objects"
		}, true},
		{"result: bad sqlstate", "revocation-result", "revocation-result.json",
			func(d map[string]any) { d["sqlstate"] = "2bp1" }, false},
		{"result: negative sessions", "revocation-result", "revocation-result.json",
			func(d map[string]any) { d["sessions_terminated"] = -1 }, false},
		{"result: empty statements", "revocation-result", "revocation-result-refused.json",
			func(d map[string]any) { d["statements"] = []any{} }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			doc := mutate(t, c.example, c.edit)
			err := schemas.ValidateJSON(c.schema, doc)
			if c.valid && err != nil {
				t.Fatalf("want valid, got %v\n%s", err, doc)
			}
			if !c.valid && err == nil {
				t.Fatalf("want invalid, got valid\n%s", doc)
			}
		})
	}
}

// An AuditEntry with unknown fields still decodes into the Go type, and what
// Go writes back still validates.
func TestAuditEntryUnknownFieldsDecode(t *testing.T) {
	t.Parallel()
	doc := mutate(t, "audit-entry-hmac.json", func(d map[string]any) {
		d["forwarded_from"] = "vault-1.internal:8201"
		obj(d, "request")["request_uri"] = "/v1/database/creds/readonly"
	})
	if err := schemas.ValidateJSON("audit-entry", doc); err != nil {
		t.Fatal(err)
	}
	var e schemas.AuditEntry
	if err := json.Unmarshal(doc, &e); err != nil {
		t.Fatal(err)
	}
	if err := schemas.ValidateValue("audit-entry", e); err != nil {
		t.Fatal(err)
	}
}

// An AuditEntry whose body Go keeps as JSON null still writes a valid entry.
func TestAuditEntryNullData(t *testing.T) {
	t.Parallel()
	doc := mutate(t, "audit-entry.json", func(d map[string]any) { obj(d, "response")["data"] = nil })
	var e schemas.AuditEntry
	if err := json.Unmarshal(doc, &e); err != nil {
		t.Fatal(err)
	}
	if err := schemas.ValidateValue("audit-entry", e); err != nil {
		t.Fatal(err)
	}
}
