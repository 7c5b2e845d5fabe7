package evidence

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestDataSchema: every event's dataschema is a schema of its data, as
// CloudEvents defines the attribute: compiled on its own from the schema
// file, it accepts the event's data, and a revocation's data does not pass
// for a finding's.
func TestDataSchema(t *testing.T) {
	t.Parallel()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	f, err := os.Open(filepath.Join("..", "schemas", "evidence.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("https://leaseguard.dev/schemas/evidence.v1.json", doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var revocationData json.RawMessage
	for _, tc := range ocsfCases() {
		ev := tc.build(t, ocsfTestBuilder())
		sch, err := c.Compile(ev.DataSchema)
		if err != nil {
			t.Fatalf("%s: dataschema %q: %v", tc.name, ev.DataSchema, err)
		}
		if err := validateDoc(sch, ev.Data); err != nil {
			t.Errorf("%s: data does not match its dataschema %s: %v", tc.name, ev.DataSchema, err)
		}
		seen[ev.Type] = true
		if ev.Type == TypeRevocation {
			revocationData = ev.Data
		}
	}
	if len(seen) != 5 {
		t.Errorf("event types covered: %v", seen)
	}
	finding, err := c.Compile("https://leaseguard.dev/schemas/evidence.v1.json#/$defs/detectionFindingCreate")
	if err != nil {
		t.Fatal(err)
	}
	if validateDoc(finding, revocationData) == nil {
		t.Error("a revocation's data passes for a finding's")
	}
}
