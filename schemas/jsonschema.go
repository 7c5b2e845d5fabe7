package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON Schemas of the wire formats, one file per document type, named
// <name>.schema.json. A file added here is picked up by the pattern: it is
// embedded, registered under its $id and compiled by name, with nothing else
// to change.
//
//go:embed *.schema.json
var schemaFiles embed.FS

const schemaSuffix = ".schema.json"

// ErrUnknownSchema is returned for a name no embedded schema has.
var ErrUnknownSchema = errors.New("unknown schema")

// registry compiles the embedded schemas on demand and keeps them. The
// compiled schemas depend on the embedded files only, so one registry per
// process is enough; Compile and Validate are safe for concurrent use.
type registry struct {
	once sync.Once
	err  error
	ids  map[string]string // name → $id

	mu       sync.Mutex // guards compiler, which is not safe for concurrent use, and compiled
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

var embedded registry

// load registers every embedded schema with one compiler, under its $id, so
// that schemas may $ref each other (an evidence envelope may refer to
// finding.v1.json) without any network access.
func (r *registry) load() error {
	r.once.Do(func() {
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		// Format is only an annotation in draft 2020-12; asserting it makes
		// "date-time" and friends checks, which is what catches a time
		// written in the wrong layout.
		c.AssertFormat()
		ids := map[string]string{}
		files, err := fs.Glob(schemaFiles, "*"+schemaSuffix)
		if err != nil {
			r.err = err
			return
		}
		for _, file := range files {
			name := strings.TrimSuffix(file, schemaSuffix)
			b, err := schemaFiles.ReadFile(file)
			if err != nil {
				r.err = fmt.Errorf("read schema %s: %w", name, err)
				return
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				r.err = fmt.Errorf("decode schema %s: %w", name, err)
				return
			}
			obj, _ := doc.(map[string]any)
			id, _ := obj["$id"].(string)
			if id == "" {
				r.err = fmt.Errorf("schema %s has no $id", name)
				return
			}
			if err := c.AddResource(id, doc); err != nil {
				r.err = fmt.Errorf("add schema %s: %w", name, err)
				return
			}
			ids[name] = id
		}
		r.compiler = c
		r.ids = ids
		r.compiled = map[string]*jsonschema.Schema{}
	})
	return r.err
}

func (r *registry) compile(name string) (*jsonschema.Schema, error) {
	if err := r.load(); err != nil {
		return nil, err
	}
	id, ok := r.ids[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownSchema, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.compiled[name]; ok {
		return s, nil
	}
	s, err := r.compiler.Compile(id)
	if err != nil {
		return nil, fmt.Errorf("compile schema %s: %w", name, err)
	}
	r.compiled[name] = s
	return s, nil
}

// Names lists the embedded schemas by name ("audit-entry", "lease-event",
// …), sorted; nil if the embedded files cannot be read, a build defect the
// tests catch (Compile returns the error).
func Names() []string {
	if err := embedded.load(); err != nil {
		return nil
	}
	names := make([]string, 0, len(embedded.ids))
	for n := range embedded.ids {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// SchemaID returns the $id of the named schema, e.g.
// "https://leaseguard.dev/schemas/lease-event.v1.json", for use as a
// CloudEvents dataschema.
func SchemaID(name string) (string, error) {
	if err := embedded.load(); err != nil {
		return "", err
	}
	id, ok := embedded.ids[name]
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownSchema, name)
	}
	return id, nil
}

// Compile returns the compiled schema of the given name: the file name
// without ".schema.json", e.g. "lease-event". Schemas are compiled once and
// cached; the result is safe for concurrent use.
func Compile(name string) (*jsonschema.Schema, error) {
	return embedded.compile(name)
}

// ValidateJSON validates one JSON document against the named schema. A
// document that is not JSON yields a decoding error; one that breaks the
// schema yields an error wrapping *jsonschema.ValidationError (use errors.As
// for the details).
func ValidateJSON(name string, doc []byte) error {
	s, err := Compile(name)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("decode %s document: %w", name, err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ValidateValue marshals v with encoding/json and validates the result
// against the named schema: a producer's check that what it is about to
// publish is what the schema promises.
func ValidateValue(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s document: %w", name, err)
	}
	return ValidateJSON(name, b)
}
