package export

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/evidence"
)

const siemDocs = "../../docs/siem"

// emitted flattens the exported events into the paths they carry, array
// elements by index (evidences.0.src_endpoint.ip), each with the values
// seen there.
func emitted(t *testing.T) map[string][]any {
	t.Helper()
	paths := map[string][]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(prefix+"."+k, e)
			}
		case []any:
			for i, e := range v {
				walk(prefix+"."+strconv.Itoa(i), e)
			}
		}
		paths[prefix] = append(paths[prefix], v)
	}
	for _, ev := range chainEvents(t) {
		x, err := evidence.Unwrap(mustMarshal(t, ev))
		if err != nil {
			t.Fatal(err)
		}
		var m any
		if err := json.Unmarshal(x.OCSF, &m); err != nil {
			t.Fatal(err)
		}
		walk("ocsf", m)
	}
	return paths
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var (
	// ctx.ocsf?.finding_info?.analytic?.uid, ctx.ocsf.evidences[0].src_endpoint?.ip
	painlessPath = regexp.MustCompile(`ctx\.ocsf((?:\??\.[a-z_]+|\[\d+\])+)`)
	// a path compared with a literal: ctx.ocsf?.class_uid == 3001
	painlessEq = regexp.MustCompile(`ctx\.ocsf((?:\??\.[a-z_]+|\[\d+\])+)\s*==\s*('[^']*'|\d+|true|false)`)
	mustache   = regexp.MustCompile(`\{\{\{?\s*([a-z_.0-9]+)\s*\}?\}\}`)
)

func painlessToPath(s string) string {
	s = strings.ReplaceAll(s, "?.", ".")
	s = regexp.MustCompile(`\[(\d+)\]`).ReplaceAllString(s, ".$1")
	return "ocsf" + s
}

// pipelineRefs lists the fields one processor reads, and the literal values
// its condition compares them with.
func pipelineRefs(typ string, p map[string]any) (refs []string, eqs map[string]string) {
	eqs = map[string]string{}
	// In a set processor, field is what it writes; elsewhere, what it reads.
	if s, ok := p["field"].(string); ok && typ != "set" {
		refs = append(refs, s)
	}
	if s, ok := p["copy_from"].(string); ok {
		refs = append(refs, s)
	}
	if v, ok := p["value"].(string); ok {
		for _, m := range mustache.FindAllStringSubmatch(v, -1) {
			refs = append(refs, m[1])
		}
	}
	if cond, ok := p["if"].(string); ok {
		for _, m := range painlessPath.FindAllStringSubmatchIndex(cond, -1) {
			path := cond[m[2]:m[3]]
			if m[1] < len(cond) && cond[m[1]] == '(' {
				// a method call (evidences.size()): the path is before it
				path = path[:strings.LastIndex(path, ".")]
			}
			refs = append(refs, painlessToPath(path))
		}
		for _, m := range painlessEq.FindAllStringSubmatch(cond, -1) {
			eqs[painlessToPath(m[1])] = strings.Trim(m[2], "'")
		}
	}
	return refs, eqs
}

// TestElasticPipelineNamesEmittedFields: the ingest pipeline is valid JSON
// of known processors, and every processor reads the line (message) or a
// field leaseguard's exported events carry; every literal a condition
// compares a field with is a value leaseguard emits there.
func TestElasticPipelineNamesEmittedFields(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(siemDocs, "elastic-ingest-pipeline.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pipeline struct {
		Description string                      `json:"description"`
		Processors  []map[string]map[string]any `json:"processors"`
		OnFailure   []map[string]map[string]any `json:"on_failure"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pipeline); err != nil {
		t.Fatalf("the pipeline is not the JSON of an ingest pipeline: %v", err)
	}
	paths := emitted(t)
	known := map[string]bool{"json": true, "rename": true, "set": true, "date": true, "convert": true, "remove": true}
	if len(pipeline.Processors) == 0 {
		t.Fatal("no processors")
	}
	for i, proc := range pipeline.Processors {
		if len(proc) != 1 {
			t.Errorf("processor %d has %d types", i, len(proc))
			continue
		}
		for typ, p := range proc {
			if !known[typ] {
				t.Errorf("processor %d: unknown type %q", i, typ)
			}
			refs, eqs := pipelineRefs(typ, p)
			named := false
			for _, r := range refs {
				switch {
				case r == "message":
					named = true
				case strings.HasPrefix(r, "ocsf."):
					if _, ok := paths[r]; !ok {
						t.Errorf("processor %d (%s %v): %s is not a field leaseguard emits", i, typ, p["field"], r)
						continue
					}
					named = true
				}
			}
			if !named {
				t.Errorf("processor %d (%s %v) reads no field leaseguard emits", i, typ, p["field"])
			}
			for path, lit := range eqs {
				if !seen(paths[path], lit) {
					t.Errorf("processor %d: %s is never %s in leaseguard's events (seen %v)", i, path, lit, paths[path])
				}
			}
		}
	}
}

func seen(values []any, lit string) bool {
	for _, v := range values {
		if fmt.Sprint(v) == lit {
			return true
		}
	}
	return false
}

// TestUnwrapJQMatchesExport: the jq program the recipes give for a live
// stream makes the same plain OCSF as the export.
func TestUnwrapJQMatchesExport(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatal("jq is needed to check the recipes' unwrap.jq: apt-get install jq")
	}
	evs := chainEvents(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "jq", "-c", "-f", filepath.Join(siemDocs, "unwrap.jq"))
	cmd.Stdin = bytes.NewReader(chainFile(t, evs))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jq: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(evs) {
		t.Fatalf("jq wrote %d lines for %d events", len(lines), len(evs))
	}
	for i, ev := range evs {
		x, err := evidence.Unwrap(mustMarshal(t, ev))
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal([]byte(lines[i]), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(x.OCSF, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("seq %d: jq and the export differ:\n%s\n%s", ev.ChainSeq, lines[i], x.OCSF)
		}
	}
}

// TestParquetColumnsDocumented: docs/siem/README.md lists every Parquet
// column the writer makes, and no other.
func TestParquetColumnsDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(siemDocs, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| (?:INT32|INT64|STRING|TIMESTAMP)").FindAllStringSubmatch(string(raw), -1) {
		documented = append(documented, m[1])
	}
	var columns []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("parquet"), ",")
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
				walk(prefix+name+".", ft)
				continue
			}
			columns = append(columns, prefix+name)
		}
	}
	walk("", reflect.TypeOf(Row{}))
	sort.Strings(documented)
	sort.Strings(columns)
	if !reflect.DeepEqual(documented, columns) {
		t.Errorf("README.md documents columns\n  %v\nthe writer makes\n  %v", documented, columns)
	}
}
