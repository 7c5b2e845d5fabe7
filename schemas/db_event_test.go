package schemas_test

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// The observer's documents get the checks the core schemas get in
// jsonschema_test.go and drift_test.go: examples exist and survive a strict
// trip through Go, populated values set every field and validate, and the
// schema properties are exactly the Go fields.

func dbGoType(name string) any {
	switch name {
	case "role-event":
		return new(schemas.RoleEvent)
	case "session-event":
		return new(schemas.SessionEvent)
	}
	return nil
}

func dbPopulated() map[string][]any {
	prev := t0.Add(-5 * time.Second)
	until := t0.Add(10 * time.Minute).In(cet)
	earlier := t0.Add(time.Minute)
	return map[string][]any{
		"role-event": {
			schemas.RoleEvent{
				Type: schemas.RoleEventType, ID: "c8e1a0f4b27d4d5e8f9a0b1c2d3e4f50", Kind: schemas.RoleChanged,
				Database: "main", OID: 16842, ObservedAt: t0, PreviousPassAt: &prev,
				Role:     schemas.RoleState{Name: "v-token-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613", ValidUntil: &until, CanLogin: true, Superuser: true},
				Previous: &schemas.RoleState{Name: "v-token-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613", ValidUntil: &earlier, CanLogin: true, Superuser: true},
				Managed:  true,
			},
			schemas.RoleEvent{
				Type: schemas.RoleEventType, ID: "0d4c6b1e9f2a4387b5c6d7e8f9a0b1c2", Kind: schemas.RoleAppeared,
				Database: "main", OID: 16390, ObservedAt: t0, Baseline: true,
				Role: schemas.RoleState{Name: "v-token-burst-Qm3xT8aZr1LwYc0pKd7N-1795630012", CanLogin: true}, Managed: true,
			},
		},
		"session-event": {
			schemas.SessionEvent{
				Type: schemas.SessionEventType, ID: "1f2e3d4c5b6a47988796a5b4c3d2e1f0", Kind: schemas.SessionGhost,
				Database: "main", ObservedAt: t0, PreviousPassAt: &prev, PID: 4711, BackendStart: t0.Add(-time.Hour),
				UserOID: 16842, Ghost: true, FormerUser: "v-token-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613",
				ClientAddr: "10.1.2.3", ClientPort: 52814, ApplicationName: "psql", Datname: "app", BackendType: "client backend",
			},
			schemas.SessionEvent{
				Type: schemas.SessionEventType, ID: "9e7d5c3b1a094f8e8d7c6b5a49382716", Kind: schemas.SessionStarted,
				Database: "main", ObservedAt: t0, Baseline: true, PID: 4712, BackendStart: t0.Add(-time.Hour),
				UserOID: 16842, User: "v-token-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613", ClientPort: -1,
			},
		},
	}
}

func TestDBEventExamplesRoundTrip(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for path, name := range examples(t) {
		v := dbGoType(name)
		if v == nil {
			continue
		}
		seen[name] = true
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			orig := readFile(t, path)
			if err := decodeStrict(orig, v); err != nil {
				t.Fatalf("decode into %T: %v", v, err)
			}
			out, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas.ValidateJSON(name, out); err != nil {
				t.Fatalf("re-marshalled %T does not validate: %v\n%s", v, err, out)
			}
			if !reflect.DeepEqual(normalise(t, orig), normalise(t, out)) {
				t.Fatalf("round trip changed the document:\n in: %s\nout: %s", orig, out)
			}
		})
	}
	for _, n := range []string{"role-event", "session-event"} {
		if !seen[n] {
			t.Errorf("no example for %s", n)
		}
	}
}

func TestDBEventPopulatedValues(t *testing.T) {
	t.Parallel()
	for name, values := range dbPopulated() {
		all, set := map[string]bool{}, map[string]bool{}
		for i, v := range values {
			if err := schemas.ValidateValue(name, v); err != nil {
				b, _ := json.Marshal(v)
				t.Errorf("%s value %d: %v\n%s", name, i, err, b)
			}
			walkFields(reflect.ValueOf(v), "", all, set)
		}
		for f := range all {
			if !set[f] {
				t.Errorf("%s: field %s is never set", name, f)
			}
		}
	}
}

func TestDBEventSchemaPropertiesMatchGoFields(t *testing.T) {
	t.Parallel()
	files := schemaFiles(t)
	for _, c := range []struct {
		schema, path string
		typ          reflect.Type
	}{
		{"role-event", "", reflect.TypeFor[schemas.RoleEvent]()},
		{"role-event", "$defs/roleState", reflect.TypeFor[schemas.RoleState]()},
		{"session-event", "", reflect.TypeFor[schemas.SessionEvent]()},
	} {
		props := lookup(t, files[c.schema], c.path+"/properties")
		var inSchema []string
		for k := range props {
			inSchema = append(inSchema, k)
		}
		slices.Sort(inSchema)
		if inGo := jsonNames(c.typ); !slices.Equal(inGo, inSchema) {
			t.Errorf("%s %s: schema properties %v, Go fields of %s %v", c.schema, c.path, inSchema, c.typ.Name(), inGo)
		}
	}
}

func TestDBEventSchemaCases(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, schema, example string
		edit                  func(d map[string]any)
		valid                 bool
	}{
		{"role: changed without previous", "role-event", "role-event-changed.json", func(d map[string]any) { delete(d, "previous") }, false},
		{"role: previous on an appearance", "role-event", "role-event-changed.json", func(d map[string]any) { d["kind"] = "appeared" }, false},
		{"role: baseline with a previous pass", "role-event", "role-event-baseline.json", func(d map[string]any) { d["previous_pass_at"] = "2026-11-25T17:59:55Z" }, false},
		{"role: baseline disappearance", "role-event", "role-event-baseline.json", func(d map[string]any) { d["kind"] = "disappeared" }, false},
		{"role: oid zero", "role-event", "role-event.json", func(d map[string]any) { d["oid"] = 0 }, false},
		{"role: name too long", "role-event", "role-event.json", func(d map[string]any) {
			obj(d, "role")["name"] = "v-0123456789012345678901234567890123456789012345678901234567890123"
		}, false},
		{"role: unknown field", "role-event", "role-event.json", func(d map[string]any) { d["rolsuper"] = true }, false},
		{"session: ghost with a user", "session-event", "session-event-ghost.json", func(d map[string]any) { d["user"] = "v-x" }, false},
		{"session: former user without ghost", "session-event", "session-event.json", func(d map[string]any) { d["former_user"] = "v-x" }, false},
		{"session: ghost kind, not a ghost", "session-event", "session-event-ghost.json", func(d map[string]any) { delete(d, "ghost"); delete(d, "former_user") }, false},
		{"session: ghost ends", "session-event", "session-event-ghost.json", func(d map[string]any) { d["kind"] = "ended" }, true},
		{"session: unix socket", "session-event", "session-event.json", func(d map[string]any) { delete(d, "client_addr"); d["client_port"] = -1 }, true},
		{"session: backend_start missing", "session-event", "session-event.json", func(d map[string]any) { delete(d, "backend_start") }, false},
		{"session: zero time", "session-event", "session-event.json", func(d map[string]any) { d["backend_start"] = "0001-01-01T00:00:00Z" }, false},
	}
	for _, c := range cases {
		err := schemas.ValidateJSON(c.schema, mutate(t, c.example, c.edit))
		if (err == nil) != c.valid {
			t.Errorf("%s: valid = %v, want %v (%v)", c.name, err == nil, c.valid, err)
		}
	}
}
