package schemas_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/leaseguard/leaseguard/schemas"
)

const idBase = "https://leaseguard.dev/schemas/"

// core are the schemas of this package's Go types. Each must follow the $id
// convention, have an example named after it and a Go type in goType.
// Schemas added by others (evidence, …) are embedded, compiled and checked
// against whatever examples they have.
var core = []string{"audit-entry", "lease-event", "finding", "revocation-command", "revocation-result"}

// schemaFiles reads the schema files as they are on disk: the same set the
// package embeds.
func schemaFiles(t *testing.T) map[string]map[string]any {
	t.Helper()
	paths, err := filepath.Glob("*.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[strings.TrimSuffix(p, ".schema.json")] = doc
	}
	return out
}

// examples maps each example file to the schema it illustrates: the longest
// schema name that is the file's base name or a prefix of it followed by '-'
// (audit-entry-hmac.json → audit-entry).
func examples(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("examples", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	names := schemas.Names()
	out := map[string]string{}
	for _, p := range paths {
		base := strings.TrimSuffix(filepath.Base(p), ".json")
		schema := ""
		for _, n := range names {
			if (base == n || strings.HasPrefix(base, n+"-")) && len(n) > len(schema) {
				schema = n
			}
		}
		if schema == "" {
			t.Errorf("example %s matches no schema", p)
			continue
		}
		out[p] = schema
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNamesMatchFiles(t *testing.T) {
	t.Parallel()
	files := schemaFiles(t)
	var want []string
	for n := range files {
		want = append(want, n)
	}
	slices.Sort(want)
	if got := schemas.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, files %v", got, want)
	}
	for _, n := range core {
		if !slices.Contains(want, n) {
			t.Errorf("schema %s is missing", n)
		}
	}
}

func TestSchemasAreWellFormed(t *testing.T) {
	t.Parallel()
	for name, doc := range schemaFiles(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := doc["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("$schema = %v, want draft 2020-12", got)
			}
			id, _ := doc["$id"].(string)
			if !strings.HasPrefix(id, "https://") {
				t.Errorf("$id = %q, want an absolute https URL", id)
			}
			rest, ok := strings.CutPrefix(id, idBase+name+".v")
			if slices.Contains(core, name) && (!ok || !strings.HasSuffix(rest, ".json")) {
				t.Errorf("$id = %q, want %s%s.v<N>.json", id, idBase, name)
			}
			got, err := schemas.SchemaID(name)
			if err != nil || got != id {
				t.Errorf("SchemaID(%q) = %q, %v; want %q", name, got, err, id)
			}
			if _, err := schemas.Compile(name); err != nil {
				t.Fatalf("Compile: %v", err)
			}
		})
	}
}

func TestEverySchemaHasAnExample(t *testing.T) {
	t.Parallel()
	ex := examples(t)
	for _, n := range core {
		if _, err := os.Stat(filepath.Join("examples", n+".json")); err != nil {
			t.Errorf("schema %s: no examples/%s.json", n, n)
		}
	}
	if _, ok := ex[filepath.Join("examples", "audit-entry-hmac.json")]; !ok {
		t.Error("examples/audit-entry-hmac.json is missing")
	}
}

func TestExamplesValidate(t *testing.T) {
	t.Parallel()
	for path, name := range examples(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			if err := schemas.ValidateJSON(name, readFile(t, path)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCompileCaches(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	got := make([]*jsonschema.Schema, 16)
	for i := range got {
		wg.Go(func() {
			s, err := schemas.Compile("lease-event")
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	for _, s := range got[1:] {
		if s != got[0] {
			t.Fatal("Compile returned different schemas for one name")
		}
	}
}

func TestValidateJSONErrors(t *testing.T) {
	t.Parallel()
	if _, err := schemas.Compile("no-such-schema"); !errors.Is(err, schemas.ErrUnknownSchema) {
		t.Errorf("Compile(unknown) = %v, want ErrUnknownSchema", err)
	}
	if err := schemas.ValidateJSON("no-such-schema", []byte(`{}`)); !errors.Is(err, schemas.ErrUnknownSchema) {
		t.Errorf("ValidateJSON(unknown) = %v, want ErrUnknownSchema", err)
	}
	if _, err := schemas.SchemaID("no-such-schema"); !errors.Is(err, schemas.ErrUnknownSchema) {
		t.Errorf("SchemaID(unknown) = %v, want ErrUnknownSchema", err)
	}
	for _, doc := range []string{``, `{`, `{"type":"request"} {}`, `not json`} {
		err := schemas.ValidateJSON("audit-entry", []byte(doc))
		var ve *jsonschema.ValidationError
		if err == nil || errors.As(err, &ve) {
			t.Errorf("ValidateJSON(%q) = %v, want a decoding error", doc, err)
		}
	}
	err := schemas.ValidateJSON("lease-event", []byte(`{"type":"io.leaseguard.lease.v1"}`))
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		t.Errorf("ValidateJSON(incomplete lease event) = %v, want a *jsonschema.ValidationError", err)
	}
}
