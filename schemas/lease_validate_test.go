package schemas_test

import (
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// validIssued is a lease event both Validate and the schema accept.
func validIssued() schemas.LeaseEvent {
	exp := t0.Add(10 * time.Minute)
	return schemas.LeaseEvent{
		Type:         schemas.LeaseEventType,
		Kind:         schemas.LeaseIssued,
		LeaseID:      "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1",
		Mount:        "postgres",
		Role:         "reporting",
		DBUser:       "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613",
		IssueTime:    &t0,
		ExpireTime:   &exp,
		ExpireSource: schemas.ExpireFromRoleDefault,
		TTLSeconds:   ptr(int64(600)),
		EventTime:    t0,
		Source:       schemas.SourceRef{Transport: "nats", Stream: "VAULT_AUDIT", Subject: "vault.audit.vault-0", Offset: 20},
	}
}

// TestLeaseEventValidate checks Validate's edge cases and, for each, whether
// the schema agrees. Where they differ the schema is the stricter: it also
// checks the shape of values (HMACs, the source, times never set), which
// Validate leaves to the producer.
func TestLeaseEventValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		edit        func(e *schemas.LeaseEvent)
		wantErr     string // substring of Validate's error; "" means valid
		schemaValid bool
	}{
		{"valid issued", func(*schemas.LeaseEvent) {}, "", true},
		{"type empty", func(e *schemas.LeaseEvent) { e.Type = "" }, "type", false},
		{"type of another version", func(e *schemas.LeaseEvent) { e.Type = "io.leaseguard.lease.v2" }, "type", false},
		{"kind empty", func(e *schemas.LeaseEvent) { e.Kind = "" }, "kind", false},
		{"kind unknown", func(e *schemas.LeaseEvent) { e.Kind = "created" }, "kind", false},
		{"kind upper case", func(e *schemas.LeaseEvent) { e.Kind = "ISSUED" }, "kind", false},
		{"event_time zero", func(e *schemas.LeaseEvent) { e.EventTime = time.Time{} }, "event_time", false},
		{"event_time in another zone", func(e *schemas.LeaseEvent) { e.EventTime = t0.In(cet) }, "", true},
		{"neither lease_id nor lease_prefix", func(e *schemas.LeaseEvent) { e.LeaseID = "" }, "lease_id is missing", false},
		{"lease_id and lease_prefix", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseRevoked
			e.LeasePrefix = "postgres/creds/reporting/"
		}, "exclusive", false},
		{"lease_prefix on issued", func(e *schemas.LeaseEvent) {
			e.LeaseID = ""
			e.LeasePrefix = "postgres/creds/reporting/"
		}, "lease_prefix", false},
		{"lease_prefix on expired", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseExpired
			e.LeaseID = ""
			e.LeasePrefix = "postgres/creds/"
		}, "lease_prefix", false},
		{"lease_prefix on revoked", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseRevoked
			e.LeaseID = ""
			e.LeasePrefix = "postgres/creds/reporting/"
			e.RevokeBy = schemas.RevokeByPrefix
		}, "", true},
		{"HMAC'd lease_id on revoked", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseRevoked
			e.LeaseID = hmacID
			e.LeaseIDHMAC = true
			e.RevokeBy = schemas.RevokeByBody
		}, "", true},
		{"HMAC'd lease_id on renewed", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseRenewed
			e.LeaseID = hmacID
			e.LeaseIDHMAC = true
		}, "HMAC", false},
		{"HMAC'd lease_id on expired", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseExpired
			e.LeaseID = hmacID
			e.LeaseIDHMAC = true
		}, "HMAC", false},
		{"ttl_seconds negative", func(e *schemas.LeaseEvent) { e.TTLSeconds = ptr(int64(-1)) }, "ttl_seconds", false},
		{"ttl_seconds zero", func(e *schemas.LeaseEvent) { e.TTLSeconds = ptr(int64(0)) }, "", true},
		{"ttl_seconds absent", func(e *schemas.LeaseEvent) { e.TTLSeconds = nil }, "", true},
		{"expire_source without expire_time", func(e *schemas.LeaseEvent) { e.ExpireTime = nil }, "expire_source", false},
		{"expire_time without expire_source", func(e *schemas.LeaseEvent) { e.ExpireSource = "" }, "", true},
		{"expired with a lease id", func(e *schemas.LeaseEvent) { e.Kind = schemas.LeaseExpired }, "", true},
		{"revoked by event from another producer", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseRevoked
			e.RevokeBy = schemas.RevokeByEvent
		}, "", true},

		// Validate accepts these; the schema does not.
		{"HMAC flag on a prefix revoke", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseRevoked
			e.LeaseID = ""
			e.LeasePrefix = "postgres/creds/reporting/"
			e.LeaseIDHMAC = true
		}, "", false},
		{"HMAC in lease_id without the flag", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseRevoked
			e.LeaseID = hmacID
		}, "", false},
		{"HMAC flag on a plain lease id", func(e *schemas.LeaseEvent) {
			e.Kind = schemas.LeaseRevoked
			e.LeaseIDHMAC = true
		}, "", false},
		{"HMAC in db_user without the flag", func(e *schemas.LeaseEvent) { e.DBUser = hmacUser }, "", false},
		{"revoke method on issued", func(e *schemas.LeaseEvent) { e.RevokeBy = schemas.RevokeByPath }, "", false},
		{"unknown expire_source", func(e *schemas.LeaseEvent) { e.ExpireSource = "guess" }, "", false},
		{"source without transport", func(e *schemas.LeaseEvent) { e.Source.Transport = "" }, "", false},
		{"issue_time never set", func(e *schemas.LeaseEvent) { e.IssueTime = &time.Time{} }, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := validIssued()
			c.edit(&e)
			err := e.Validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case c.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error about %q", c.wantErr)
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Errorf("Validate() = %v, want an error about %q", err, c.wantErr)
			}
			serr := schemas.ValidateValue("lease-event", e)
			if c.schemaValid && serr != nil {
				t.Errorf("schema: %v", serr)
			}
			if !c.schemaValid && serr == nil {
				t.Error("schema accepts it, want refused")
			}
			// Whatever Validate refuses, the schema refuses too.
			if err != nil && serr == nil {
				t.Error("Validate refuses what the schema accepts")
			}
		})
	}
}

func TestLeaseEventKindValid(t *testing.T) {
	t.Parallel()
	for _, k := range []schemas.LeaseEventKind{schemas.LeaseIssued, schemas.LeaseRenewed, schemas.LeaseRevoked, schemas.LeaseExpired} {
		if !k.Valid() {
			t.Errorf("%q not valid", k)
		}
	}
	for _, k := range []schemas.LeaseEventKind{"", "Issued", "revoke", "expired "} {
		if k.Valid() {
			t.Errorf("%q valid", k)
		}
	}
}

// Every lease event example passes Validate as well as the schema.
func TestLeaseEventExamplesValidate(t *testing.T) {
	t.Parallel()
	for path, name := range examples(t) {
		if name != "lease-event" {
			continue
		}
		var e schemas.LeaseEvent
		if err := decodeStrict(readFile(t, path), &e); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v", path, err)
		}
	}
}
