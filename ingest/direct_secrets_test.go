package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/bus"
)

// secretLine is an audit entry as a mount tuned with
// audit_non_hmac_response_keys=username,password and a device with
// log_raw write it: the password and the client token in clear.
func secretLine(id, pw, token string) string {
	return fmt.Sprintf(`{"time":"2026-11-25T19:00:00Z","type":"response",`+
		`"auth":{"client_token":%q,"accessor":"hmac-sha256:aa11","token_type":"service"},`+
		`"request":{"id":%q,"client_token":%q,"path":"postgres/creds/reporting","data":{"note":"a & b <c>"}},`+
		`"response":{"data":{"username":"hmac-sha256:0011","password":%q},"secret":{"lease_id":"postgres/creds/reporting/ABC"}}}`,
		token, id, token, pw)
}

// checkRedacted checks a stored entry: no secret, every secret-bearing
// field "[redacted]", everything else as Vault wrote it.
func checkRedacted(t *testing.T, stored string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(stored, s) {
			t.Errorf("stored entry keeps a secret: %s", stored)
		}
	}
	var e struct {
		Auth    map[string]any `json:"auth"`
		Request struct {
			ClientToken string         `json:"client_token"`
			Data        map[string]any `json:"data"`
		} `json:"request"`
		Response struct {
			Data   map[string]any `json:"data"`
			Secret map[string]any `json:"secret"`
		} `json:"response"`
	}
	if err := json.Unmarshal([]byte(stored), &e); err != nil {
		t.Fatalf("stored entry is not JSON: %v", err)
	}
	if e.Auth["client_token"] != "[redacted]" || e.Request.ClientToken != "[redacted]" || e.Response.Data["password"] != "[redacted]" {
		t.Errorf("secret fields not redacted: %s", stored)
	}
	if e.Auth["accessor"] != "hmac-sha256:aa11" || e.Auth["token_type"] != "service" || e.Response.Data["username"] != "hmac-sha256:0011" ||
		e.Response.Secret["lease_id"] != "postgres/creds/reporting/ABC" || !strings.Contains(stored, `"note":"a & b <c>"`) {
		t.Errorf("fields that are not secret changed: %s", stored)
	}
}

// The file source redacts secret-bearing fields before an entry enters the
// audit stream, keeps entries without one byte for byte, and dead-letters
// bad lines redacted. Message ids stay deterministic: a second follower
// reading the same file from the start (offset lost) publishes only
// duplicates.
func TestAuditFileRedactsSecretsBeforePublishing(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	path := filepath.Join(t.TempDir(), "audit.log")
	pw, pw2, pw3 := "A1a-fileSecretPassword01", "A1a-fileSecretPassword02", "A1a-fileSecretPassword03"
	token := "hvs.CAESIFileSecretToken00001"
	clean := entries("file-clean", 1)[0]
	oversize := `{"type":"response","response":{"data":{"password":"` + pw2 + `"}},"pad":"` + strings.Repeat("z", 3000) + `"}`
	cut := `{"type":"response","response":{"data":{"password":"` + pw3
	appendFile(t, path, lines(secretLine("f-1", pw, token), clean, oversize, cut, "raw token "+token))
	f1 := startFollower(t, js, newLedger(t), path, nil)
	waitUntil(t, "two entries and three dead letters", 20*time.Second, func() bool {
		return len(streamMessages(t, js, directStream, "vault.audit.file")) == 2 &&
			len(streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit")) == 3
	})
	f1.stop(t)
	got := dataOf(streamMessages(t, js, directStream, "vault.audit.file"))
	checkRedacted(t, got[0], pw, token)
	if got[1] != clean {
		t.Errorf("an entry without secrets changed: %s", got[1])
	}
	checkDeadLetters(t, streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit"), pw2, pw3, token)

	st2 := newLedger(t)
	startFollower(t, js, st2, path, nil)
	waitUntil(t, "the second follower's offset at the end", 20*time.Second, func() bool {
		o, err := st2.AuditFileOffset(context.Background(), path)
		return err == nil && o.Offset == fileSize(t, path)
	})
	if n, d := len(streamMessages(t, js, directStream, "vault.audit.file")), len(streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit")); n != 2 || d != 3 {
		t.Errorf("re-reading the file stored %d entries and %d dead letters, want 2 and 3 (ids not deterministic)", n, d)
	}
}

// The socket source does the same: redacted before storing, the same
// line twice is one message, bad lines dead-lettered redacted.
func TestAuditSocketRedactsSecretsBeforePublishing(t *testing.T) {
	t.Parallel()
	js := directStreams(t, 2*time.Minute)
	addr := startSocket(t, js, nil)
	pw, pw2, pw3 := "A1a-sockSecretPassword01", "A1a-sockSecretPassword02", "A1a-sockSecretPassword03"
	token := "hvs.CAESISockSecretToken00001"
	clean := entries("sock-clean", 1)[0]
	oversize := `{"type":"response","response":{"data":{"password":"` + pw2 + `"}},"pad":"` + strings.Repeat("z", 3000) + `"}`
	c := dial(t, addr)
	send(t, c, lines(secretLine("s-1", pw, token), secretLine("s-1", pw, token), clean, oversize, "raw token "+token)+
		`{"type":"response","response":{"data":{"password":"`+pw3)
	_ = c.Close() // the partial line is dead-lettered last
	waitUntil(t, "three dead letters", 20*time.Second, func() bool {
		return len(streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit")) == 3
	})
	got := dataOf(streamMessages(t, js, directStream, "vault.audit.socket"))
	if len(got) != 2 || got[1] != clean {
		t.Fatalf("%d entries stored, want 2 (the repeated line is a duplicate), the clean one unchanged", len(got))
	}
	checkRedacted(t, got[0], pw, token)
	checkDeadLetters(t, streamMessages(t, js, bus.DefaultDeadLetterStream, directDL+".audit"), pw2, pw3, token)
}

func checkDeadLetters(t *testing.T, dls []stored, secrets ...string) {
	t.Helper()
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dls))
	}
	for i, d := range dls {
		for _, s := range secrets {
			if strings.Contains(d.data, s) || strings.Contains(d.reason, s) {
				t.Errorf("dead letter %d keeps a secret: %.120s", i, d.data)
			}
		}
		if d.reason == "" || !strings.Contains(d.data, "[redacted]") {
			t.Errorf("dead letter %d: reason %q, body %.120s", i, d.reason, d.data)
		}
	}
}
