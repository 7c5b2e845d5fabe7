package schemas

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	testPW    = "A1a-p4ssw0rdValue1234"
	testToken = "hvs.CAESIJm0aWR9bWlzc2luZ1Rva2Vu"
	testOld   = "s.Xy7GmC1qPq0rS9tUvWxYz123"
)

func TestKeyNames(t *testing.T) {
	t.Parallel()
	for k, want := range map[string][2]bool{ // {PasswordKey, SecretKey}
		"password": {true, true}, "DB_Passwd": {true, true}, "passphrase": {true, true}, "new-Password": {true, true},
		"secret_id": {false, true}, "client_secret": {false, true}, "private_key": {false, true}, "api-key": {false, true},
		"client_token": {false, true}, "token": {false, true}, "X-Vault-Token": {false, true},
		"token_type": {false, false}, "token_ttl": {false, false}, "token_policies": {false, false},
		"accessor": {false, false}, "client_token_accessor": {false, false}, "secret_id_accessor": {false, false},
		"username": {false, false}, "lease_id": {false, false}, "secret": {false, true}, "mount_class": {false, false},
	} {
		if got := [2]bool{PasswordKey(k), SecretKey(k)}; got != want {
			t.Errorf("%q: PasswordKey, SecretKey = %v, want %v", k, got, want)
		}
		if SecretKey([]byte(k)) != want[1] {
			t.Errorf("%q as bytes disagrees", k)
		}
	}
}

func TestRedactText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"token " + testToken + " leaked", "token [redacted] leaked"},
		{"old token " + testOld + ".", "old token [redacted]."},
		{"lease postgres/creds/r/s.Xy7GmC1qPq0rS9tUvWxYz123", "lease postgres/creds/r/s.Xy7GmC1qPq0rS9tUvWxYz123"}, // a path, not a token
		{"ALTER ROLE x PASSWORD '" + testPW + "' VALID UNTIL 'y'", "ALTER ROLE x PASSWORD '[redacted]' VALID UNTIL 'y'"},
		{"ALTER ROLE x ENCRYPTED PASSWORD E'a\\'b''c' LOGIN", "ALTER ROLE x ENCRYPTED PASSWORD E'[redacted]' LOGIN"},
		{"CREATE ROLE x PASSWORD $p$" + testPW + "$p$", "CREATE ROLE x PASSWORD $p$[redacted]$p$"},
		{"CREATE ROLE x PASSWORD '" + testPW, "CREATE ROLE x PASSWORD '[redacted]"},
		{`{"type":"response","data":{"username":"v-x","password":"` + testPW, `{"type":"response","data":{"username":"v-x","password":"[redacted]`},
		{`{"password" : "` + testPW + `", "n": 1`, `{"password" : "[redacted]", "n": 1`},
		{`{"pass\u0077ord":"` + testPW + `"`, `{"pass\u0077ord":"[redacted]"`},
		{`{"password":"hmac-sha256:00ff","secret_id":"` + testPW + `"`, `{"password":"hmac-sha256:00ff","secret_id":"[redacted]"`},
		{`{"message":"{\"password\":\"` + testPW + `\",\"user\":\"u\"}"`, `{"message":"{\"password\":\"[redacted]\",\"user\":\"u\"}"`},
		{"postgres://app:" + testPW + "@db:5432/x", "postgres://app:[redacted]@db:5432/x"},
		{"host=db password=" + testPW + " user=u", "host=db password=[redacted] user=u"},
		{`{"username":"v-x","token_type":"service","password":""}`, `{"username":"v-x","token_type":"service","password":""}`},
		{"PASSWORD '[redacted]' and [redacted]", "PASSWORD '[redacted]' and [redacted]"},
	} {
		got, changed := RedactText(c.in)
		if got != c.want || changed != (c.in != c.want) {
			t.Errorf("RedactText(%q)\n = %q, %v\nwant %q", c.in, got, changed, c.want)
		}
		if LooksLikeSecret(got) {
			t.Errorf("redacted text still looks like a secret: %q", got)
		}
	}
}

func TestRedactJSON(t *testing.T) {
	t.Parallel()
	in := `{"time":"2026-11-25T19:00:00Z","type":"response","auth":{"client_token":"` + testToken + `","accessor":"hmac-sha256:aa","token_ttl":2764800,` +
		`"token_policies":["default"]},"request":{"id":"r1","data":{"note":"a & b <c>","passwords":["x1","hmac-sha256:bb"],"n":1.50}},` +
		`"response":{"data":{"username":"hmac-sha256:cc","password":"` + testPW + `","config":"{\"secret_key\":\"k\"}"},"secret":{"lease_id":"postgres/creds/r/ABC"}}}`
	out, changed := Redact([]byte(in))
	if !changed || !HasSecret([]byte(in)) {
		t.Fatal("nothing redacted")
	}
	if strings.Contains(string(out), testToken) || strings.Contains(string(out), testPW) || strings.Contains(string(out), `\"k\"`) {
		t.Errorf("secret left: %s", out)
	}
	for _, keep := range []string{`"accessor":"hmac-sha256:aa"`, `"token_ttl":2764800`, `"token_policies":["default"]`, `"note":"a & b <c>"`,
		`"passwords":["[redacted]","hmac-sha256:bb"]`, `"n":1.50`, `"username":"hmac-sha256:cc"`, `"lease_id":"postgres/creds/r/ABC"`,
		`"client_token":"[redacted]"`, `"password":"[redacted]"`} {
		if !strings.Contains(string(out), keep) {
			t.Errorf("redacted entry lacks %s: %s", keep, out)
		}
	}
	again, changedAgain := Redact(out)
	if changedAgain || string(again) != string(out) {
		t.Errorf("redacting twice changed it again: %s", again)
	}
	if out2, _ := Redact([]byte(in)); string(out2) != string(out) {
		t.Error("redaction is not deterministic")
	}
}

// JSONHasSecret (one pass, no decoding) agrees with Redact on every line
// of the real Vault log, and on each with a secret planted.
func TestJSONHasSecretAgreesWithRedact(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../ingest/testdata/vault-1.21-audit.log")
	if err != nil {
		t.Fatal(err)
	}
	plants := []func(string) string{
		func(s string) string { return s },
		func(s string) string {
			return strings.Replace(s, `"remote_address":"`, `"remote_address":"`+testToken+` `, 1)
		},
		func(s string) string {
			return strings.Replace(s, `"client_token":"hmac-sha256:`, `"client_token":"x`, 1)
		},
		func(s string) string { return strings.Replace(s, `"path":"`, `"path":"{\"token\":\"x\"}`, 1) },
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		for i, plant := range plants {
			l := plant(line)
			if l == line && i > 0 {
				continue
			}
			_, changed := Redact([]byte(l))
			if has := JSONHasSecret([]byte(l)); has != changed || (i > 0 && !has) {
				t.Errorf("plant %d: JSONHasSecret = %v, Redact changed %v: %.200s", i, has, changed, l)
			}
			n++
		}
	}
	if n < 50 {
		t.Errorf("only %d lines checked", n)
	}
}

func TestWithholdFinding(t *testing.T) {
	t.Parallel()
	f := Finding{Type: FindingType, ID: "f1", Rule: "ghost-session", Severity: SeverityHigh, Mode: ModeObserve,
		DetectedAt: time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC), DBUser: "v-x", Summary: "ghost of v-x",
		Facts: map[string]any{
			"application_name": "x PASSWORD 'hunter2'", "pid": 4242, "big": int64(1) << 60,
			"sessions":       []map[string]any{{"application_name": "psql " + testToken, "pid": 1}},
			"db_password_ok": true,
		}, Action: ActionNone}
	got := WithholdFinding(f)
	doc, _ := json.Marshal(got)
	if strings.Contains(string(doc), "hunter2") || strings.Contains(string(doc), testToken) || strings.Contains(string(doc), `password_ok":`) {
		t.Errorf("finding keeps a secret: %s", doc)
	}
	want := `"withheld":["$.facts.application_name","$.facts.db_password_ok","$.facts.sessions[0].application_name"]`
	if !strings.Contains(string(doc), want) || !strings.Contains(string(doc), `"big":1152921504606846976`) ||
		!strings.Contains(string(doc), `"application_name":"`+Withheld+`"`) || got.DBUser != "v-x" {
		t.Errorf("withheld finding = %s", doc)
	}
	clean := f
	clean.Facts = map[string]any{"pid": 1}
	if g := WithholdFinding(clean); g.Facts["withheld"] != nil || g.Facts["pid"] != 1 {
		t.Errorf("a clean finding changed: %+v", g)
	}
	if g := WithholdFinding(got); len(g.Facts["withheld"].([]any)) != 3 {
		t.Errorf("withholding twice changed the list: %v", g.Facts["withheld"])
	}
}

func BenchmarkJSONHasSecret(b *testing.B) {
	raw, err := os.ReadFile("../ingest/testdata/vault-1.21-audit.log")
	if err != nil {
		b.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	line := []byte(lines[19])
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if JSONHasSecret(line) {
			b.Fatal("secret in a clean line")
		}
	}
}
