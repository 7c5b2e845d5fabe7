package evidence

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

func TestApproval(t *testing.T) {
	t.Parallel()
	b := Builder{Source: "urn:leaseguard:test"}
	at := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	base := schemas.ApprovalDecision{
		PendingID: "216e34caed2d7caee8976a46c3c33762", DecidedBy: "alice", DecidedAt: at, Comment: "INC-7",
		FindingID: "623da6c13eb1ac4adc657ff5e02c7171", Rule: "lease-expired-not-revoked", Severity: schemas.SeverityHigh,
		Database: "main", DBUser: "v-token-x", LeaseID: "database/creds/ro/abc", Summary: "expired",
		RequestedAt: at.Add(-time.Minute), ExpiresAt: at.Add(time.Hour),
	}
	for _, tt := range []struct {
		decision schemas.ApprovalState
		status   int
		by       string
	}{
		{schemas.ApprovalApproved, 2, "alice"},
		{schemas.ApprovalRejected, 3, "alice"},
		{schemas.ApprovalExpired, 3, DecidedBySystem},
	} {
		t.Run(string(tt.decision), func(t *testing.T) {
			d := base
			d.Decision, d.DecidedBy = tt.decision, tt.by
			ev, err := b.Approval(d)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas.ValidateJSON("evidence", raw); err != nil {
				t.Fatalf("approval evidence does not match the schema: %v\n%s", err, raw)
			}
			var data struct {
				StatusID int `json:"status_id"`
				TypeUID  int `json:"type_uid"`
				Actor    struct {
					User struct{ Name string } `json:"user"`
				} `json:"actor"`
				Unmapped map[string]any `json:"unmapped"`
			}
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				t.Fatal(err)
			}
			if ev.Type != TypeApproval || ev.Subject != "main/v-token-x" || data.StatusID != tt.status || data.TypeUID != 200402 ||
				data.Actor.User.Name != tt.by || data.Unmapped["decided_by"] != tt.by || data.Unmapped["decision"] != string(tt.decision) {
				t.Errorf("event %+v data %s", ev, ev.Data)
			}
			again, _ := b.Approval(d)
			if again.ID != ev.ID {
				t.Error("approval evidence id is not deterministic")
			}
		})
	}
	for name, mod := range map[string]func(*schemas.ApprovalDecision){
		"pending":  func(d *schemas.ApprovalDecision) { d.Decision = schemas.ApprovalPending },
		"no actor": func(d *schemas.ApprovalDecision) { d.Decision, d.DecidedBy = schemas.ApprovalApproved, "" },
		"no user":  func(d *schemas.ApprovalDecision) { d.Decision, d.DBUser = schemas.ApprovalRejected, "" },
	} {
		d := base
		mod(&d)
		if _, err := b.Approval(d); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", name, err)
		}
	}
	d := base
	d.Decision, d.Comment = schemas.ApprovalRejected, "the token was hvs.CAESIJlWx0123456789abcdefghij"
	ev, err := b.Approval(d)
	if err != nil || strings.Contains(string(ev.Data), "hvs.") || !strings.Contains(string(ev.Data), `"withheld":["$.data.status_detail","$.data.unmapped.comment"]`) {
		t.Errorf("a comment carrying a token: err = %v, data %s", err, ev.Data)
	}
}
