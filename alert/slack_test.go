package alert

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

func TestSlackTriggerAndResolve(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sl := newReceiver(t)
	sl.setBody(func(*http.Request) string { return "ok" })
	cfg := fastConfig()
	cfg.SlackWebhookURL = sl.srv.URL + "/services/T0001/B0001/hookS3CR3T"
	r.start(cfg)

	user := "v-token-app-" + pgtest.Suffix()
	f := r.finding("orphan-role", schemas.SeverityHigh, "appdb", user)
	f.Summary = "role <" + user + "> & no lease"
	r.insert(f)
	waitFor(t, 5*time.Second, "the trigger message", func() bool { return len(sl.docs()) >= 1 })

	msg := sl.docs()[0]
	text := str(msg, "text")
	if !strings.Contains(text, ":rotating_light:") || !strings.Contains(text, "HIGH") ||
		!strings.Contains(text, "orphan-role") || !strings.Contains(text, user) {
		t.Errorf("trigger text %q", text)
	}
	var blocks []slackBlock
	raw, _ := json.Marshal(msg["blocks"])
	if err := json.Unmarshal(raw, &blocks); err != nil || len(blocks) != 3 {
		t.Fatalf("trigger blocks %s: %v", raw, err)
	}
	if blocks[0].Type != "section" || blocks[0].Text == nil || blocks[0].Text.Type != "mrkdwn" ||
		!strings.Contains(blocks[0].Text.Text, "role &lt;"+user+"&gt; &amp; no lease") {
		t.Errorf("first block %+v: want the summary, escaped", blocks[0])
	}
	var fields []string
	for _, f := range blocks[1].Fields {
		fields = append(fields, f.Text)
	}
	for _, want := range []string{"appdb", user, f.LeaseID, "orphan-role", "revocation_requested"} {
		if !strings.Contains(strings.Join(fields, "\n"), want) {
			t.Errorf("fields %q lack %q", fields, want)
		}
	}
	if blocks[2].Type != "context" || len(blocks[2].Elements) != 1 {
		t.Errorf("context block %+v", blocks[2])
	}
	if p := sl.pathsSeen()[0]; p != "/services/T0001/B0001/hookS3CR3T" {
		t.Errorf("posted to %q", p)
	}

	r.revoked("appdb", user, schemas.OutcomeAlreadyAbsent)
	waitFor(t, 5*time.Second, "the resolve message", func() bool { return len(sl.docs()) >= 2 })
	res := sl.docs()[1]
	if text := str(res, "text"); !strings.Contains(text, "Resolved") || !strings.Contains(text, user) {
		t.Errorf("resolve text %q", text)
	}
	raw, _ = json.Marshal(res["blocks"])
	if !strings.Contains(string(raw), "already_absent") {
		t.Errorf("resolve blocks do not say why: %s", raw)
	}
	r.quiet()
	if n := len(sl.docs()); n != 2 {
		t.Errorf("%d messages, want one on trigger and one on resolve", n)
	}
}
