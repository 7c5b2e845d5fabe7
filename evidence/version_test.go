package evidence

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// TestProductVersion: every kind of event names the build that made it in
// metadata.product.version; a Builder without a Version leaves it out.
func TestProductVersion(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	decision := schemas.ApprovalDecision{
		PendingID: "216e34caed2d7caee8976a46c3c33762", Decision: schemas.ApprovalApproved, DecidedBy: "alice", DecidedAt: at,
		FindingID: "623da6c13eb1ac4adc657ff5e02c7171", Rule: "lease-expired-not-revoked", Severity: schemas.SeverityHigh,
		Database: "main", DBUser: "v-token-x", Summary: "expired", RequestedAt: at.Add(-time.Minute), ExpiresAt: at.Add(time.Hour),
	}
	build := map[string]func(Builder) (Event, error){
		"revocation": func(b Builder) (Event, error) {
			cmd := sampleCommand(1)
			return b.Revocation(cmd, sampleResult(cmd, schemas.OutcomeDropped), sampleLease(1))
		},
		"finding":  func(b Builder) (Event, error) { return b.Finding(sampleFinding(1), sampleLease(1)) },
		"approval": func(b Builder) (Event, error) { return b.Approval(decision) },
		"policy":   func(b Builder) (Event, error) { return b.Policy(samplePolicyChange()) },
	}
	for kind, f := range build {
		for _, v := range []string{"v9.8.7", ""} {
			ev, err := f(Builder{Source: "urn:leaseguard:test", Version: v, Clock: func() time.Time { return t0 }})
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			var data struct {
				Metadata struct {
					Product map[string]any `json:"product"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				t.Fatal(err)
			}
			got, ok := data.Metadata.Product["version"]
			switch {
			case v != "" && got != v:
				t.Errorf("%s: product.version %v, want %s", kind, got, v)
			case v == "" && ok:
				t.Errorf("%s: product.version %v without a Version", kind, got)
			}
		}
	}
}
