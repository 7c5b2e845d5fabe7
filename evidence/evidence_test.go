package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/schemas"
)

// ocsfView is the part of the data the tests look at.
type ocsfView struct {
	ClassUID     int    `json:"class_uid"`
	CategoryUID  int    `json:"category_uid"`
	ActivityID   int    `json:"activity_id"`
	TypeUID      int    `json:"type_uid"`
	SeverityID   int    `json:"severity_id"`
	StatusID     int    `json:"status_id"`
	StatusCode   string `json:"status_code"`
	StatusDetail string `json:"status_detail"`
	Time         int64  `json:"time"`
	Message      string `json:"message"`
	SrcEndpoint  any    `json:"src_endpoint"`
	Metadata     struct {
		Version        string   `json:"version"`
		UID            string   `json:"uid"`
		CorrelationUID string   `json:"correlation_uid"`
		LogName        string   `json:"log_name"`
		LogProvider    string   `json:"log_provider"`
		Profiles       []string `json:"profiles"`
		Product        struct {
			Name       string `json:"name"`
			VendorName string `json:"vendor_name"`
			Version    string `json:"version"`
		} `json:"product"`
	} `json:"metadata"`
	User struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"user"`
	Actor struct {
		User struct {
			Name   string `json:"name"`
			TypeID int    `json:"type_id"`
		} `json:"user"`
		AppName   string `json:"app_name"`
		InvokedBy string `json:"invoked_by"`
	} `json:"actor"`
	FindingInfo struct {
		UID   string   `json:"uid"`
		Title string   `json:"title"`
		Desc  string   `json:"desc"`
		Types []string `json:"types"`
	} `json:"finding_info"`
	Evidences []struct {
		SrcEndpoint struct {
			IP   string `json:"ip"`
			Port int    `json:"port"`
		} `json:"src_endpoint"`
	} `json:"evidences"`
	Unmapped map[string]any `json:"unmapped"`
}

func view(t *testing.T, ev Event) ocsfView {
	t.Helper()
	var v ocsfView
	if err := json.Unmarshal(ev.Data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRevocationEvent(t *testing.T) {
	t.Parallel()
	sch := evidenceSchema(t)
	tests := []struct {
		outcome  schemas.Outcome
		status   int
		severity int
		code     string
		detail   string
	}{
		{schemas.OutcomeDropped, 1, 1, "dropped", `leaseguard dropped database user "v-approle-reporting-avBCPAqNnSFaMO7m0001-1795634398" on "main"`},
		{schemas.OutcomeAlreadyAbsent, 1, 1, "already_absent", `database user "v-approle-reporting-avBCPAqNnSFaMO7m0001-1795634398" on "main" was already absent`},
		{schemas.OutcomeRefused, 2, 3, "refused", "role has rolsuper"},
		{schemas.OutcomeFailed, 2, 4, "failed", "role owns objects in another database"},
	}
	for _, tt := range tests {
		t.Run(string(tt.outcome), func(t *testing.T) {
			t.Parallel()
			cmd := sampleCommand(1)
			res := sampleResult(cmd, tt.outcome)
			ev, err := testBuilder().Revocation(cmd, res, sampleLease(1))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte("revocation|" + cmd.ID + "|" + string(tt.outcome)))
			if want := hex.EncodeToString(sum[:]); ev.ID != want {
				t.Errorf("id = %s, want %s", ev.ID, want)
			}
			if ev.SpecVersion != "1.0" || ev.Type != TypeRevocation || ev.Source != "urn:leaseguard:test" ||
				ev.DataContentType != "application/json" ||
				ev.DataSchema != "https://leaseguard.dev/schemas/evidence.v1.json#/$defs/accountChangeDelete" {
				t.Errorf("envelope = %+v", ev)
			}
			if ev.Subject != "main/"+cmd.DBUser {
				t.Errorf("subject = %q", ev.Subject)
			}
			if !ev.Time.Equal(res.FinishedAt) {
				t.Errorf("time = %s, want the result's finish time %s", ev.Time, res.FinishedAt)
			}
			v := view(t, ev)
			if v.ClassUID != 3001 || v.CategoryUID != 3 || v.ActivityID != 6 || v.TypeUID != 300106 {
				t.Errorf("classification = %d/%d/%d/%d", v.ClassUID, v.CategoryUID, v.ActivityID, v.TypeUID)
			}
			if v.StatusID != tt.status || v.SeverityID != tt.severity {
				t.Errorf("status_id %d severity_id %d, want %d %d", v.StatusID, v.SeverityID, tt.status, tt.severity)
			}
			if v.Time != res.FinishedAt.UnixMilli() {
				t.Errorf("time = %d", v.Time)
			}
			if v.Metadata.Version != "1.8.0" || v.Metadata.Product.Name != "leaseguard" || v.Metadata.UID != ev.ID ||
				v.Metadata.CorrelationUID != cmd.ID || v.Metadata.LogName != "leaseguard evidence" ||
				v.Metadata.LogProvider != "leaseguard" || len(v.Metadata.Profiles) != 1 || v.Metadata.Profiles[0] != "datetime" {
				t.Errorf("metadata = %+v", v.Metadata)
			}
			// user.uid is the role's OID, never the lease id.
			if v.User.Name != cmd.DBUser || v.User.UID != "24601" {
				t.Errorf("user = %+v", v.User)
			}
			if v.Actor.User.Name != "detector" || v.Actor.User.TypeID != 3 || v.Actor.AppName != "leaseguard" || v.Actor.InvokedBy != "" {
				t.Errorf("actor = %+v", v.Actor)
			}
			if v.StatusCode != tt.code || v.StatusDetail != tt.detail {
				t.Errorf("status_code %q status_detail %q, want %q %q", v.StatusCode, v.StatusDetail, tt.code, tt.detail)
			}
			if v.SrcEndpoint != nil {
				t.Errorf("src_endpoint = %v; the lease's client is not the source of the deletion", v.SrcEndpoint)
			}
			u := v.Unmapped
			for k, want := range map[string]any{
				"rule": cmd.Rule, "command_id": cmd.ID, "finding_id": cmd.FindingID, "lease_id": cmd.LeaseID,
				"vault_request_id": sampleLease(1).VaultRequestID, "entity_id": sampleLease(1).EntityID,
				"database": "main", "outcome": string(tt.outcome), "role_absent_after": res.RoleAbsentAfter,
				"sessions_terminated": float64(res.SessionsTerminated), "sessions_left_after": float64(res.SessionsLeftAfter),
				"duration_ms": float64(180), "lease_remote_address": "10.20.30.40:51234",
			} {
				if u[k] != want {
					t.Errorf("unmapped.%s = %v, want %v", k, u[k], want)
				}
			}
			if _, ok := u["statements"].([]any); !ok {
				t.Errorf("unmapped.statements = %v, want an array", u["statements"])
			}
			if tt.outcome == schemas.OutcomeFailed && u["sqlstate"] != "2BP01" {
				t.Errorf("sqlstate not carried: unmapped %v", u["sqlstate"])
			}
			if tt.outcome == schemas.OutcomeRefused && u["guard"] != "superuser" {
				t.Errorf("guard = %v", u["guard"])
			}

			again, err := testBuilder().Revocation(cmd, res, sampleLease(1))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustJSON(t, ev), mustJSON(t, again)) {
				t.Error("building the same revocation twice gave different events")
			}
			if err := validateDoc(sch, mustJSON(t, ev)); err != nil {
				t.Errorf("schema: %v", err)
			}
		})
	}
}

func TestFindingEvent(t *testing.T) {
	t.Parallel()
	sch := evidenceSchema(t)
	for _, tt := range []struct {
		sev  schemas.Severity
		want int
	}{
		{schemas.SeverityInfo, 1}, {schemas.SeverityLow, 2}, {schemas.SeverityMedium, 3},
		{schemas.SeverityHigh, 4}, {schemas.SeverityCritical, 5}, {"bogus", 0},
	} {
		t.Run(string(tt.sev), func(t *testing.T) {
			t.Parallel()
			f := sampleFinding(3)
			f.Severity = tt.sev
			ev, err := testBuilder().Finding(f, sampleLease(3))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte("finding|" + f.ID))
			if ev.ID != hex.EncodeToString(sum[:]) || ev.Type != TypeFinding || ev.Subject != "main/"+f.DBUser {
				t.Errorf("envelope = %+v", ev)
			}
			v := view(t, ev)
			if v.ClassUID != 2004 || v.CategoryUID != 2 || v.ActivityID != 1 || v.TypeUID != 200401 {
				t.Errorf("classification = %d/%d/%d/%d", v.ClassUID, v.CategoryUID, v.ActivityID, v.TypeUID)
			}
			if v.SeverityID != tt.want || v.StatusID != 1 {
				t.Errorf("severity_id %d status_id %d", v.SeverityID, v.StatusID)
			}
			fi := v.FindingInfo
			if fi.UID != f.ID || fi.Title != f.Rule || fi.Desc != f.Summary || len(fi.Types) != 1 || fi.Types[0] != f.Rule {
				t.Errorf("finding_info = %+v", fi)
			}
			if len(v.Evidences) != 1 || v.Evidences[0].SrcEndpoint.IP != "10.20.30.40" || v.Evidences[0].SrcEndpoint.Port != 51234 {
				t.Errorf("evidences = %+v", v.Evidences)
			}
			u := v.Unmapped
			if u["rule"] != f.Rule || u["mode"] != "enforce" || u["in_scope"] != true ||
				u["action"] != "revocation_requested" || u["command_id"] != f.CommandID {
				t.Errorf("unmapped = %v", u)
			}
			if facts, _ := u["facts"].(map[string]any); facts["expire_source"] != "pg_valid_until" {
				t.Errorf("facts = %v", u["facts"])
			}
			if err := validateDoc(sch, mustJSON(t, ev)); err != nil {
				t.Errorf("schema: %v", err)
			}
		})
	}
}

func TestFindingWithoutUser(t *testing.T) {
	t.Parallel()
	f := schemas.Finding{
		ID: "f-1", Rule: "irrevocable_leases", Severity: schemas.SeverityMedium, Mode: schemas.ModeObserve,
		Summary: "3 irrevocable leases on postgres/", Action: schemas.ActionNone,
	}
	ev, err := testBuilder().Finding(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Subject != "" {
		t.Errorf("subject = %q, want none", ev.Subject)
	}
	if !ev.Time.Equal(t0) {
		t.Errorf("time = %s, want the builder clock (no detected_at)", ev.Time)
	}
	if err := validateDoc(evidenceSchema(t), mustJSON(t, ev)); err != nil {
		t.Errorf("schema: %v", err)
	}
}

func TestBuilderRejects(t *testing.T) {
	t.Parallel()
	cmd := sampleCommand(1)
	res := sampleResult(cmd, schemas.OutcomeDropped)
	tests := []struct {
		name  string
		build func() error
	}{
		{"no source", func() error {
			_, err := Builder{}.Revocation(cmd, res, nil)
			return err
		}},
		{"result for another command", func() error {
			r := res
			r.CommandID = "cmd-other"
			_, err := testBuilder().Revocation(cmd, r, nil)
			return err
		}},
		{"result for another user", func() error {
			r := res
			r.DBUser = "someone-else"
			_, err := testBuilder().Revocation(cmd, r, nil)
			return err
		}},
		{"unknown outcome", func() error {
			r := res
			r.Outcome = "vanished"
			_, err := testBuilder().Revocation(cmd, r, nil)
			return err
		}},
		{"lease context disagrees", func() error {
			lc := sampleLease(2)
			_, err := testBuilder().Revocation(cmd, res, lc)
			return err
		}},
		{"finding without id", func() error {
			f := sampleFinding(1)
			f.ID = ""
			_, err := testBuilder().Finding(f, nil)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.build(); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("err = %v, want ErrInvalidInput", err)
			}
		})
	}
}

// samplePassword is a password a careless caller might pass along. It must
// never appear in an event.
const samplePassword = "A1a-Sup3rS3cret-pw"

func TestNoSecretInEvents(t *testing.T) {
	t.Parallel()
	b := testBuilder()
	cmd := sampleCommand(5)

	t.Run("built events carry none", func(t *testing.T) {
		for _, ev := range sampleEvents(t, 8) {
			doc := mustJSON(t, ev)
			if bytes.Contains(bytes.ToLower(doc), []byte("password")) || bytes.Contains(doc, []byte(samplePassword)) {
				t.Errorf("event %s mentions a password: %s", ev.ID, doc)
			}
		}
	})

	// A field that looks like a secret is withheld, not a reason to refuse
	// the event: the value becomes the marker, and the event lists where —
	// a finding in its facts (as the state store keeps it), anything else
	// in unmapped.withheld.
	token := "hvs.CAESIJ8vR2kPq0aLx7WnZq8vR2kPq0aLx7Wn"
	tests := []struct {
		name   string
		build  func() (Event, error)
		secret string
		// list is where the paths are, want the paths.
		list string
		want []string
	}{
		{"facts key password", func() (Event, error) {
			f := sampleFinding(5)
			f.Facts = map[string]any{"creation": map[string]any{"Password": samplePassword}}
			return b.Finding(f, nil)
		}, samplePassword, "facts", []string{"$.facts.creation.Password"}},
		{"facts key db_passwd", func() (Event, error) {
			f := sampleFinding(5)
			f.Facts = map[string]any{"db_passwd": samplePassword}
			return b.Finding(f, nil)
		}, samplePassword, "facts", []string{"$.facts.db_passwd"}},
		{"statement sets a password", func() (Event, error) {
			res := sampleResult(cmd, schemas.OutcomeFailed)
			res.Statements = []string{`ALTER ROLE "x" WITH PASSWORD '` + samplePassword + `'`}
			return b.Revocation(cmd, res, nil)
		}, samplePassword, "unmapped", []string{"$.data.unmapped.statements[0]"}},
		{"reason carries an encrypted password", func() (Event, error) {
			res := sampleResult(cmd, schemas.OutcomeFailed)
			res.Reason = `syntax error near ENCRYPTED PASSWORD E'` + samplePassword + `'`
			return b.Revocation(cmd, res, nil)
		}, samplePassword, "unmapped", []string{"$.data.status_detail", "$.data.unmapped.reason"}},
		{"vault token in facts", func() (Event, error) {
			f := sampleFinding(5)
			f.Facts = map[string]any{"token": token}
			return b.Finding(f, nil)
		}, token, "facts", []string{"$.facts.token"}},
		{"legacy vault token in summary", func() (Event, error) {
			f := sampleFinding(5)
			f.Summary = "client used s.Zq8vR2kPq0aLx7WnZq8vR2kP to read creds"
			return b.Finding(f, nil)
		}, "s.Zq8vR2kPq0aLx7WnZq8vR2kP", "facts", []string{"$.summary"}},
		{"token as the lease's remote address", func() (Event, error) {
			lc := sampleLease(5)
			lc.RemoteAddress = token
			return b.Finding(sampleFinding(5), lc)
		}, token, "unmapped", []string{"$.data.unmapped.lease_remote_address"}},
		{"token as the lease id, in the finding and its lease", func() (Event, error) {
			f := sampleFinding(5)
			f.LeaseID = "postgres/creds/reporting/" + token
			lc := sampleLease(5)
			lc.LeaseID = f.LeaseID
			return b.Finding(f, lc)
		}, token, "both", nil},
		{"token as the user of a revocation", func() (Event, error) {
			c := cmd
			c.DBUser = token
			res := sampleResult(c, schemas.OutcomeRefused)
			return b.Revocation(c, res, nil)
		}, token, "unmapped", []string{"$.subject", "$.data.message", "$.data.observables[0].value", "$.data.unmapped.db_user", "$.data.user.name"}},
	}
	sch := evidenceSchema(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := tt.build()
			if err != nil {
				t.Fatalf("err = %v, want the secret withheld", err)
			}
			doc := mustJSON(t, ev)
			if strings.Contains(string(doc), tt.secret) {
				t.Errorf("event keeps the secret: %s", doc)
			}
			if _, err := prepare(ev, false); err != nil {
				t.Errorf("the built event does not pass the outbox's check: %v", err)
			}
			if err := validateDoc(sch, doc); err != nil {
				t.Errorf("schema: %v", err)
			}
			var data struct {
				Unmapped struct {
					Withheld []string `json:"withheld"`
					Facts    struct {
						Withheld []string `json:"withheld"`
					} `json:"facts"`
				} `json:"unmapped"`
			}
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{"unmapped": data.Unmapped.Withheld, "facts": data.Unmapped.Facts.Withheld}
			if tt.list == "both" {
				if len(got["unmapped"]) == 0 || len(got["facts"]) == 0 {
					t.Errorf("withheld = %v", got)
				}
				return
			}
			if strings.Join(got[tt.list], " ") != strings.Join(tt.want, " ") {
				t.Errorf("withheld = %v, want %s: %v", got, tt.list, tt.want)
			}
		})
	}

	t.Run("the outbox refuses an event that still carries one", func(t *testing.T) {
		ev, err := b.Finding(sampleFinding(5), nil)
		if err != nil {
			t.Fatal(err)
		}
		ev.Subject = token
		if _, err := prepare(ev, false); !errors.Is(err, ErrSecret) || strings.Contains(err.Error(), "hvs.") {
			t.Errorf("err = %v, want ErrSecret without the secret", err)
		}
	})

	t.Run("hmac and password-free text pass", func(t *testing.T) {
		f := sampleFinding(5)
		f.Summary = "password authentication failed for user \"v-x\" after expiry"
		f.Facts = map[string]any{"client_token": "hmac-sha256:9f86d081884c7d659a2feaa0c55ad015", "token_ttl": 3600}
		if _, err := b.Finding(f, nil); err != nil {
			t.Errorf("err = %v", err)
		}
	})
}

func TestSchemaRejects(t *testing.T) {
	t.Parallel()
	sch := evidenceSchema(t)
	base := sealAll(t, sampleEvents(t, 2))
	mutate := func(ev Event, f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(mustJSON(t, ev), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		return mustJSON(t, m)
	}
	tests := map[string][]byte{
		"wrong class": mutate(base[0], func(m map[string]any) { m["data"].(map[string]any)["class_uid"] = 3002 }),
		"password key deep in facts": mutate(base[1], func(m map[string]any) {
			m["data"].(map[string]any)["unmapped"].(map[string]any)["facts"] = map[string]any{"x": []any{map[string]any{"PassWord": "x"}}}
		}),
		"uppercase extension":   mutate(base[0], func(m map[string]any) { m["chainSeq"] = 1 }),
		"hash without chainseq": mutate(base[0], func(m map[string]any) { delete(m, "chainseq") }),
		"bad hash":              mutate(base[0], func(m map[string]any) { m["hash"] = "md5:abc" }),
		"no subject":            mutate(base[0], func(m map[string]any) { delete(m, "subject") }),
		"bad time":              mutate(base[0], func(m map[string]any) { m["time"] = "yesterday" }),
	}
	for name, doc := range tests {
		err := validateDoc(sch, doc)
		if err == nil {
			t.Errorf("%s: schema accepted %s", name, doc)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
	for _, ev := range base {
		if err := validateDoc(sch, mustJSON(t, ev)); err != nil {
			t.Errorf("sealed event: %v", err)
		}
	}
}

func TestEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		ip   string
		port int
	}{
		{"10.1.2.3", "10.1.2.3", 0},
		{"10.1.2.3:8200", "10.1.2.3", 8200},
		{"::1", "::1", 0},
		{"[2001:db8::7]:443", "2001:db8::7", 443},
		{"vault.internal:8200", "", 0},
		{"", "", 0},
	}
	for _, tt := range tests {
		ep := endpoint(tt.in)
		switch {
		case tt.ip == "" && ep != nil:
			t.Errorf("endpoint(%q) = %+v, want nil", tt.in, ep)
		case tt.ip != "" && (ep == nil || ep.IP != tt.ip || ep.Port != tt.port):
			t.Errorf("endpoint(%q) = %+v, want %s port %d", tt.in, ep, tt.ip, tt.port)
		}
	}
}

func TestSchemaID(t *testing.T) {
	t.Parallel()
	id, err := schemas.SchemaID("evidence")
	if err != nil {
		t.Fatal(err)
	}
	if id != SchemaID {
		t.Errorf("evidence.schema.json has $id %s, the events say dataschema %s", id, SchemaID)
	}
}
