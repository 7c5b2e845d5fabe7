package evidence

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

func samplePolicyChange() schemas.PolicyChange {
	at := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	return schemas.PolicyChange{
		Version: 2, Kind: schemas.PolicyExpand, Actor: "alice", Reason: "pilot signed off: CHG-1", ChangedAt: at,
		Scope: "db:orders", Modes: map[string]schemas.Mode{"lease-expired-not-revoked": schemas.ModeEnforce},
		Previous: &schemas.PolicyState{Version: 1, Scope: "",
			Modes: map[string]schemas.Mode{"lease-expired-not-revoked": schemas.ModeEnforce}},
	}
}

// TestPolicyEvidence: a change of the enforcement policy is an OCSF Entity
// Management event naming the actor, with the reason as its comment and the
// policy before and after; the schema accepts it; its id is deterministic.
func TestPolicyEvidence(t *testing.T) {
	t.Parallel()
	b := Builder{Source: "urn:leaseguard:test"}
	first := samplePolicyChange()
	first.Version, first.Kind, first.Previous, first.Actor = 1, schemas.PolicyConfiguration, nil, "configuration"
	for name, tt := range map[string]struct {
		c       schemas.PolicyChange
		typeUID int
	}{"expand": {samplePolicyChange(), 300403}, "configuration": {first, 300401}} {
		ev, err := b.Policy(tt.c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemas.ValidateJSON("evidence", raw); err != nil {
			t.Fatalf("%s: policy evidence does not match the schema: %v\n%s", name, err, raw)
		}
		var data struct {
			TypeUID int    `json:"type_uid"`
			Comment string `json:"comment"`
			Actor   struct {
				User struct{ Name string } `json:"user"`
			} `json:"actor"`
			Entity       struct{ Version string } `json:"entity"`
			EntityResult struct {
				Version string
				Data    struct{ Scope string }
			} `json:"entity_result"`
			Unmapped schemas.PolicyChange `json:"unmapped"`
		}
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if ev.Type != TypePolicy || data.TypeUID != tt.typeUID || data.Actor.User.Name != tt.c.Actor || data.Comment != tt.c.Reason ||
			data.EntityResult.Data.Scope != tt.c.Scope || data.Unmapped.Version != tt.c.Version {
			t.Errorf("%s: event %+v data %s", name, ev, ev.Data)
		}
		if again, _ := b.Policy(tt.c); again.ID != ev.ID {
			t.Errorf("%s: policy evidence id is not deterministic", name)
		}
	}
	for name, mod := range map[string]func(*schemas.PolicyChange){
		"no actor":   func(c *schemas.PolicyChange) { c.Actor = "" },
		"no reason":  func(c *schemas.PolicyChange) { c.Reason = " " },
		"no version": func(c *schemas.PolicyChange) { c.Version = 0 },
		"no time":    func(c *schemas.PolicyChange) { c.ChangedAt = time.Time{} },
		"bad kind":   func(c *schemas.PolicyChange) { c.Kind = "shrug" },
	} {
		c := samplePolicyChange()
		mod(&c)
		if _, err := b.Policy(c); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", name, err)
		}
	}
}

// TestPilotFindingEvidence: a pilot finding says so in OCSF (its types
// carry "Pilot") and in unmapped.action, and validates.
func TestPilotFindingEvidence(t *testing.T) {
	t.Parallel()
	f := sampleFinding(3)
	f.InScope, f.Action, f.CommandID = false, schemas.ActionWouldDrop, ""
	ev, err := Builder{Source: "urn:leaseguard:test"}.Finding(f, sampleLease(3))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ev)
	if err := schemas.ValidateJSON("evidence", raw); err != nil {
		t.Fatalf("pilot finding evidence does not validate: %v\n%s", err, raw)
	}
	var data struct {
		FindingInfo struct{ Types []string } `json:"finding_info"`
		Unmapped    struct{ Action string }  `json:"unmapped"`
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(data.FindingInfo.Types, "Pilot") || data.Unmapped.Action != schemas.ActionWouldDrop {
		t.Errorf("pilot finding data %s", ev.Data)
	}
	bad := []byte(`{"action":"would_shout"}`)
	if err := schemas.ValidateJSON("evidence", []byte(replaceAction(t, raw, bad))); err == nil {
		t.Error("an unknown finding action validates")
	}
}

// replaceAction sets data.unmapped.action of an encoded event.
func replaceAction(t *testing.T, raw, action []byte) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var a map[string]any
	_ = json.Unmarshal(action, &a)
	doc["data"].(map[string]any)["unmapped"].(map[string]any)["action"] = a["action"]
	out, _ := json.Marshal(doc)
	return string(out)
}
