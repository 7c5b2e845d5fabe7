package schemas_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// These tests keep the Go types and the JSON Schemas in step: what Go writes
// must validate, what the examples say must survive a trip through Go, and
// every field of a Go type must be a property of its schema.

// goType returns a pointer to a fresh value of the Go type of a schema.
func goType(t *testing.T, name string) any {
	t.Helper()
	switch name {
	case "audit-entry":
		return new(schemas.AuditEntry)
	case "lease-event":
		return new(schemas.LeaseEvent)
	case "finding":
		return new(schemas.Finding)
	case "revocation-command":
		return new(schemas.RevocationCommand)
	case "revocation-result":
		return new(schemas.RevocationResult)
	}
	return nil
}

// strict schemas refuse unknown fields, so a document decoded into its Go
// type and encoded again must come out unchanged.
var strict = map[string]bool{
	"lease-event":        true,
	"finding":            true,
	"revocation-command": true,
	"revocation-result":  true,
}

func normalise(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestExamplesRoundTripThroughGo(t *testing.T) {
	t.Parallel()
	for path, name := range examples(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			v := goType(t, name)
			if v == nil {
				// Not one of this package's types; validated above.
				return
			}
			orig := readFile(t, path)
			decode := json.Unmarshal
			if strict[name] {
				decode = decodeStrict
			}
			if err := decode(orig, v); err != nil {
				t.Fatalf("decode into %T: %v", v, err)
			}
			out, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas.ValidateJSON(name, out); err != nil {
				t.Fatalf("re-marshalled %T does not validate: %v\n%s", v, err, out)
			}
			if strict[name] && !reflect.DeepEqual(normalise(t, orig), normalise(t, out)) {
				t.Fatalf("round trip changed the document:\n in: %s\nout: %s", orig, out)
			}
		})
	}
}

// The audit examples must keep what leaseguard reads from them.
func TestAuditExamplesKeepLeaseFacts(t *testing.T) {
	t.Parallel()
	for file, wantHMAC := range map[string]bool{"audit-entry.json": false, "audit-entry-hmac.json": true} {
		var e schemas.AuditEntry
		if err := json.Unmarshal(readFile(t, filepath.Join("examples", file)), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type != schemas.AuditTypeResponse || e.Request == nil || e.Response == nil || e.Response.Secret == nil {
			t.Fatalf("%s: not a response with a secret: %+v", file, e)
		}
		if !strings.Contains(e.Request.Path, "/creds/") || !strings.HasPrefix(e.Response.Secret.LeaseID, e.Request.Path+"/") {
			t.Errorf("%s: lease id %q does not extend path %q", file, e.Response.Secret.LeaseID, e.Request.Path)
		}
		var data struct {
			Username string `json:"username"`
		}
		if err := json.Unmarshal(e.Response.Data, &data); err != nil {
			t.Fatal(err)
		}
		if schemas.IsHMAC(data.Username) != wantHMAC {
			t.Errorf("%s: username %q, want HMAC %v", file, data.Username, wantHMAC)
		}
		if e.Time.IsZero() || e.Time.Nanosecond() == 0 {
			t.Errorf("%s: time %v, want nanoseconds", file, e.Time)
		}
	}
}

var (
	cet      = time.FixedZone("CET", 3600)
	t0       = time.Date(2026, 11, 25, 19, 23, 33, 507975384, time.UTC)
	hmacUser = "hmac-sha256:e28fb435e0050fa0ede7357ac61e91a0fe7d94fdd30e61eadbc862b720f910b8"
	hmacID   = "hmac-sha256:6082040f8bda66987c495bcc77f5f369fa6638d3553f1fac0467eda8313f08f0"
	hmacAcc  = "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5"
)

func ptr[T any](v T) *T { return &v }

// populated holds, per schema, Go values that together set every field of
// the type (some fields exclude each other, so one value cannot).
func populated() map[string][]any {
	return map[string][]any{
		"audit-entry": {
			schemas.AuditEntry{
				Time: t0,
				Type: schemas.AuditTypeResponse,
				Auth: &schemas.AuditAuth{
					ClientToken:    "hmac-sha256:b056e18ae5848fec282b16b66a5ed14fa914658c929fc43c20200c5c13a4dbc6",
					Accessor:       hmacAcc,
					DisplayName:    "userpass-alice",
					Policies:       []string{"default", "rep"},
					TokenPolicies:  []string{"default", "rep"},
					EntityID:       "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
					TokenType:      "service",
					TokenTTL:       2764800,
					TokenIssueTime: "2026-11-25T19:23:33Z",
				},
				Request: &schemas.AuditRequest{
					ID:                  "4212eee2-8290-1b2a-c91e-d7d62037a171",
					ClientID:            "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
					Operation:           "read",
					MountPoint:          "postgres/",
					MountType:           "database",
					MountAccessor:       "database_0f55551a",
					MountClass:          "secret",
					ClientToken:         "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
					ClientTokenAccessor: hmacAcc,
					Namespace:           &schemas.AuditNamespace{ID: "root", Path: "ns1/"},
					Path:                "postgres/creds/reporting",
					Data:                json.RawMessage(`{"ttl":"hmac-sha256:1f12df7937f4bf01069cf3d459e532fb3dc95549927ab8f22aa40cd53055a6be","n":3,"nested":{"a":[true,null,"x"]}}`),
					RemoteAddress:       "2001:db8::7",
					RemotePort:          35424,
				},
				Response: &schemas.AuditResponse{
					MountPoint:    "postgres/",
					MountType:     "database",
					MountAccessor: "database_0f55551a",
					Secret:        &schemas.AuditSecret{LeaseID: "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1"},
					Data:          json.RawMessage(`{"username":"` + hmacUser + `","password":"hmac-sha256:f975236207194dee6ecc77694f17226fbaf4664d2ae76803f003c2919f0cefdf"}`),
				},
				Error: "1 error occurred:\n\t* permission denied\n\n",
			},
		},
		"lease-event": {
			// Everything but lease_prefix, which excludes lease_id.
			schemas.LeaseEvent{
				Type:           schemas.LeaseEventType,
				Kind:           schemas.LeaseRevoked,
				LeaseID:        hmacID,
				LeaseIDHMAC:    true,
				RevokeBy:       schemas.RevokeByBody,
				Mount:          "postgres",
				Role:           "reporting",
				Namespace:      "root",
				Database:       "main",
				DBUser:         hmacUser,
				DBUserHMAC:     true,
				IssueTime:      ptr(t0.Add(-time.Minute)),
				ExpireTime:     ptr(t0.Add(9 * time.Minute).In(cet)),
				ExpireSource:   schemas.ExpireFromValidUntil,
				TTLSeconds:     ptr(int64(600)),
				EventTime:      t0,
				EntityID:       "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
				TokenAccessor:  hmacAcc,
				DisplayName:    "userpass-alice",
				RemoteAddress:  "127.0.0.1",
				VaultRequestID: "6d8926cd-fe2c-4a94-5d68-f1fa1b1032f5",
				Source: schemas.SourceRef{
					Transport: "kafka",
					Stream:    "vault-audit",
					Subject:   "vault.audit.vault-0",
					Partition: 3,
					Offset:    1184203,
				},
			},
			schemas.LeaseEvent{
				Type:        schemas.LeaseEventType,
				Kind:        schemas.LeaseRevoked,
				LeasePrefix: "postgres/creds/reporting/",
				RevokeBy:    schemas.RevokeByForce,
				EventTime:   t0,
				Source:      schemas.SourceRef{Transport: "nats", Stream: "VAULT_AUDIT", Offset: 1},
			},
		},
		"finding": {
			schemas.Finding{
				Type:       schemas.FindingType,
				ID:         "623da6c13eb1ac4adc657ff5e02c7171",
				Rule:       "lease-expired-not-revoked",
				Severity:   schemas.SeverityCritical,
				Mode:       schemas.ModeEnforce,
				InScope:    true,
				DetectedAt: t0.In(cet),
				Database:   "main",
				DBUser:     "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613",
				LeaseID:    "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1",
				Mount:      "postgres",
				Role:       "reporting",
				EntityID:   "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
				Summary:    "lease expired and its user still exists",
				Facts: map[string]any{
					"expire_time":   t0,
					"expire_source": schemas.ExpireFromValidUntil,
					"grace_seconds": 30,
					"sessions":      []int{4711},
				},
				Action:    schemas.ActionRevocationRequested,
				CommandID: "216e34caed2d7caee8976a46c3c33762",
			},
		},
		"revocation-command": {
			schemas.RevocationCommand{
				Type:      schemas.RevocationCommandType,
				ID:        "216e34caed2d7caee8976a46c3c33762",
				Action:    schemas.ActionDropRole,
				IssuedAt:  t0,
				ExpiresAt: t0.Add(10 * time.Minute),
				Nonce:     "3f1c6d0b9e2a47c58d6e0f1a2b3c4d5e",
				Issuer:    "operator",
				Actor:     "alice@example.com",
				Rule:      "manual-revocation",
				FindingID: "623da6c13eb1ac4adc657ff5e02c7171",
				Database:  "main",
				Target:    schemas.TargetIdentity{SystemIdentifier: "7716256923339417742", DatabaseOID: 16384},
				DBUser:    "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613",
				RoleOID:   24601,
				LeaseID:   "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1",
				Reason:    "credential leaked in a CI log",
				Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByOperator, CheckedAt: t0,
					Detail: "requested by alice@example.com"},
				Emergency: true,
				KeyID:     "80898a946096b8fb",
				Signature: "egfkozXx0833gM4fB8Qye0EcBJ2PH7LLLh5B2-1Vmojmab2FzONbQcgr7GRkXmtbZxB0y_TsHD4fvOVpLL7Q2A",
			},
			// A ghost session's termination names the session, and no role.
			schemas.RevocationCommand{
				Type: schemas.RevocationCommandType, ID: "5f1e0b9c7a2d48e3b6c4a0d9e8f7b312", Action: schemas.ActionTerminateSession,
				IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute), Nonce: "0123456789abcdef0123456789abcdef",
				Issuer: "detector", Rule: "ghost-session", Database: "main",
				Target:  schemas.TargetIdentity{SystemIdentifier: "7716256923339417742", DatabaseOID: 16384},
				Session: &schemas.SessionRef{PID: 4711, BackendStart: t0.Add(-time.Hour), UserOID: 24601},
				Reason:  "ghost session",
				Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByDatabase, CheckedAt: t0,
					Detail: "pg_stat_activity shows pid 4711 running as role oid 24601, which no role in pg_roles has"},
			},
		},
		"revocation-result": {
			schemas.RevocationResult{
				CommandID:          "216e34caed2d7caee8976a46c3c33762",
				Database:           "main",
				DBUser:             "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613",
				Outcome:            schemas.OutcomeFailed,
				Reason:             "role owns objects in another database",
				SQLState:           "2BP01",
				Statements:         []string{`ALTER ROLE "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613" NOLOGIN`, `DROP ROLE "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613"`},
				SessionsTerminated: 2,
				ReassignedTo:       "leaseguard",
				Definers:           []string{"view app.v"},
				RoleAbsentAfter:    false,
				SessionsLeftAfter:  1,
				StartedAt:          t0,
				FinishedAt:         t0.Add(27 * time.Millisecond).In(cet),
			},
			// A command refused before it was recorded is keyed by its hash.
			schemas.RevocationResult{
				CommandID:   "forged-216e34caed2d7caee8976a46c3c33762",
				CommandHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
				Database:    "main", DBUser: "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613",
				Outcome: schemas.OutcomeRefused, Guard: "signature", Reason: "unsigned",
				StartedAt: t0, FinishedAt: t0,
			},
			// Guard is set on refusals only.
			schemas.RevocationResult{
				CommandID:         "5f1e0b9c7a2d48e3b6c4a0d9e8f7b312",
				Database:          "main",
				DBUser:            "postgres",
				Outcome:           schemas.OutcomeRefused,
				Guard:             "superuser",
				Reason:            "role is a superuser",
				SessionsLeftAfter: 3,
				StartedAt:         t0,
				FinishedAt:        t0,
			},
			// RoleAbsentAfter is true after a drop.
			schemas.RevocationResult{
				CommandID:       "216e34caed2d7caee8976a46c3c33762",
				Database:        "main",
				DBUser:          "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613",
				Outcome:         schemas.OutcomeDropped,
				Statements:      []string{`DROP ROLE "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613"`},
				RoleAbsentAfter: true,
				StartedAt:       t0,
				FinishedAt:      t0.Add(time.Millisecond),
			},
		},
	}
}

func TestPopulatedValuesValidate(t *testing.T) {
	t.Parallel()
	for name, values := range populated() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for i, v := range values {
				if err := schemas.ValidateValue(name, v); err != nil {
					b, _ := json.Marshal(v)
					t.Errorf("value %d: %v\n%s", i, err, b)
				}
			}
		})
	}
}

// TestPopulatedValuesSetEveryField makes the test above worth something: a
// field added to a Go type must be set here, and so must validate.
func TestPopulatedValuesSetEveryField(t *testing.T) {
	t.Parallel()
	pop := populated()
	for _, n := range core {
		if goType(t, n) == nil {
			t.Errorf("schema %s: add its Go type to goType", n)
		}
		if len(pop[n]) == 0 {
			t.Errorf("no populated value for %s", n)
		}
	}
	for name, values := range pop {
		all := map[string]bool{}
		set := map[string]bool{}
		for _, v := range values {
			walkFields(reflect.ValueOf(v), "", all, set)
		}
		if len(all) < 5 {
			t.Errorf("%s: only %d fields found", name, len(all))
		}
		for f := range all {
			if !set[f] {
				t.Errorf("%s: field %s is never set", name, f)
			}
		}
	}
}

var ourPkg = reflect.TypeFor[schemas.LeaseEvent]().PkgPath()

// walkFields records every field path of v's type in all, and the non-zero
// ones in set, descending into this package's structs (through pointers).
func walkFields(v reflect.Value, prefix string, all, set map[string]bool) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() || sf.Tag.Get("json") == "-" {
			continue // not on the wire
		}
		path := prefix + sf.Name
		all[path] = true
		fv := v.Field(i)
		if !fv.IsZero() {
			set[path] = true
		}
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Struct || ft.PkgPath() != ourPkg {
			continue
		}
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				fv = reflect.New(ft).Elem()
			} else {
				fv = fv.Elem()
			}
		}
		walkFields(fv, path+".", all, set)
	}
}

// jsonNames lists the JSON names of a struct type's fields.
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// lookup follows a slash-separated path of keys and array indexes in a
// decoded schema.
func lookup(t *testing.T, doc map[string]any, path string) map[string]any {
	t.Helper()
	var cur any = doc
	for _, k := range strings.Split(path, "/") {
		if k == "" {
			continue
		}
		switch c := cur.(type) {
		case map[string]any:
			cur = c[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(c) {
				t.Fatalf("schema path %q: bad index %q", path, k)
			}
			cur = c[i]
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("schema path %q is not an object", path)
	}
	return m
}

func TestSchemaPropertiesMatchGoFields(t *testing.T) {
	t.Parallel()
	files := schemaFiles(t)
	cases := []struct {
		schema, path string
		typ          reflect.Type
		exact        bool // strict schemas: the same names; tolerant ones: the Go names are a subset
	}{
		{"lease-event", "", reflect.TypeFor[schemas.LeaseEvent](), true},
		{"lease-event", "$defs/source", reflect.TypeFor[schemas.SourceRef](), true},
		{"finding", "", reflect.TypeFor[schemas.Finding](), true},
		{"revocation-command", "", reflect.TypeFor[schemas.RevocationCommand](), true},
		{"revocation-result", "", reflect.TypeFor[schemas.RevocationResult](), true},
		{"audit-entry", "", reflect.TypeFor[schemas.AuditEntry](), false},
		{"audit-entry", "$defs/auth", reflect.TypeFor[schemas.AuditAuth](), false},
		{"audit-entry", "$defs/request", reflect.TypeFor[schemas.AuditRequest](), false},
		{"audit-entry", "$defs/namespace", reflect.TypeFor[schemas.AuditNamespace](), false},
		{"audit-entry", "$defs/response", reflect.TypeFor[schemas.AuditResponse](), false},
		{"audit-entry", "$defs/response/properties/secret/anyOf/0", reflect.TypeFor[schemas.AuditSecret](), false},
	}
	for _, c := range cases {
		props := lookup(t, files[c.schema], c.path+"/properties")
		var inSchema []string
		for k := range props {
			inSchema = append(inSchema, k)
		}
		slices.Sort(inSchema)
		inGo := jsonNames(c.typ)
		for _, n := range inGo {
			if !slices.Contains(inSchema, n) {
				t.Errorf("%s %s: Go field %s.%s has no schema property", c.schema, c.path, c.typ.Name(), n)
			}
		}
		if c.exact {
			for _, n := range inSchema {
				if !slices.Contains(inGo, n) {
					t.Errorf("%s %s: schema property %s has no field in %s", c.schema, c.path, n, c.typ.Name())
				}
			}
		}
	}
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
