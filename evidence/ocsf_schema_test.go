package evidence

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A conformance validator for OCSF events, written from the schema's own
// rules (the way the OCSF server resolves and validates an event) and run on
// the vendored files in testdata/ocsf-<version>:
//
//   - a class "extends" its parent (a class or base_event), an object its
//     parent object; the child's attribute entries are merged over the
//     parent's, key by key ("profile": null in a child takes an attribute
//     out of its profile);
//   - "$include" in an attributes map merges other files' attributes in
//     under the file's own; a file whose "meta" is "profile" tags each
//     attribute it brings with "profile": <name>;
//   - every attribute entry is merged over its dictionary entry, which
//     gives its type, is_array, enum and sibling;
//   - an attribute tagged with a profile exists only when the event lists
//     that profile in metadata.profiles; with the datetime profile every
//     timestamp_t attribute X gains X_dt (datetime_t);
//   - "requirement" is required, recommended or optional; "constraints"
//     (at_least_one, just_one) name alternatives;
//   - "@deprecated" marks an attribute that should no longer be used.
//
// Everything found is a failure here, including what the server only warns
// about (a missing recommended attribute, a deprecated one), except the
// missing recommended attributes listed, with their reason, in
// ocsfRecommendedWaived.

// ocsfSchemaDir holds the pinned OCSF version's vendored files.
const ocsfSchemaDir = "testdata/ocsf-1.8.0"

type ocsfAttr = map[string]any

type ocsfSchema struct {
	t       testing.TB
	dir     string
	version string
	dict    map[string]ocsfAttr
	types   map[string]ocsfAttr
	// loaded are the files read, relative to dir.
	loaded map[string]bool
	// missing are files the schema refers to that are not vendored; the
	// next validation reports them.
	missing []string
	// waiverUsed are the waivers that excused a missing attribute.
	waiverUsed map[string]bool
	cache      map[string]*ocsfItem
}

// ocsfItem is a resolved class or object.
type ocsfItem struct {
	name, caption string
	uid           int
	category      string
	attrs         map[string]ocsfAttr
	profiles      []string
	constraints   map[string][]string
}

func loadOCSFSchema(t testing.TB, dir string) *ocsfSchema {
	t.Helper()
	s := &ocsfSchema{t: t, dir: dir, loaded: map[string]bool{}, cache: map[string]*ocsfItem{}, waiverUsed: map[string]bool{}}
	d := s.file("dictionary.json")
	s.dict = attrMap(d["attributes"])
	s.types = attrMap(d["types"].(map[string]any)["attributes"])
	s.version, _ = s.file("version.json")["version"].(string)
	return s
}

func (s *ocsfSchema) file(rel string) map[string]any {
	s.t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.dir, filepath.FromSlash(rel)))
	if err != nil {
		// Called from a subtest; report it there (validateOCSF) rather
		// than end the parent test.
		s.missing = append(s.missing, fmt.Sprintf("OCSF schema file %s is not vendored (copy it from the tag): %v", rel, err))
		return map[string]any{}
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		s.t.Fatalf("OCSF schema file %s: %v", rel, err)
	}
	s.loaded[rel] = true
	return m
}

func (s *ocsfSchema) exists(rel string) bool {
	_, err := os.Stat(filepath.Join(s.dir, filepath.FromSlash(rel)))
	return err == nil
}

func attrMap(v any) map[string]ocsfAttr {
	out := map[string]ocsfAttr{}
	m, _ := v.(map[string]any)
	for k, a := range m {
		if am, ok := a.(map[string]any); ok {
			out[k] = am
		}
	}
	return out
}

// merge returns base with over's keys laid on top, recursively for maps
// (a null in over replaces).
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, bok := out[k].(map[string]any)
		om, ook := v.(map[string]any)
		if bok && ook {
			out[k] = merge(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}

// ownAttrs are the attributes a file defines, its $include files' first.
func (s *ocsfSchema) ownAttrs(raw map[string]any) map[string]ocsfAttr {
	attrs, _ := raw["attributes"].(map[string]any)
	out := map[string]ocsfAttr{}
	incs, _ := attrs["$include"].([]any)
	for _, inc := range incs {
		f := s.file(inc.(string))
		profile := ""
		if f["meta"] == "profile" {
			profile, _ = f["name"].(string)
		}
		for k, a := range attrMap(f["attributes"]) {
			if profile != "" {
				if _, set := a["profile"]; !set {
					a = merge(a, ocsfAttr{"profile": profile})
				}
			}
			out[k] = merge(out[k], a)
		}
	}
	for k, a := range attrMap(attrs) {
		out[k] = merge(out[k], a)
	}
	return out
}

// class resolves the class file at rel (e.g. "events/iam/account_change.json").
func (s *ocsfSchema) class(rel string) *ocsfItem {
	if it, ok := s.cache[rel]; ok {
		return it
	}
	raw := s.file(rel)
	it := &ocsfItem{attrs: map[string]ocsfAttr{}}
	if parent, _ := raw["extends"].(string); parent != "" {
		p := s.class(s.classPath(rel, parent))
		*it = *p
		it.attrs = maps.Clone(p.attrs)
		it.profiles = slices.Clone(p.profiles)
	}
	s.fill(it, raw)
	if c, ok := raw["category"].(string); ok {
		it.category = c
	}
	s.cache[rel] = it
	return it
}

// classPath finds a parent class: beside the child, or at the top of events.
func (s *ocsfSchema) classPath(child, parent string) string {
	near := path.Join(path.Dir(child), parent+".json")
	if s.exists(near) {
		return near
	}
	return path.Join("events", parent+".json")
}

func (s *ocsfSchema) object(name string) *ocsfItem {
	rel := path.Join("objects", name+".json")
	if it, ok := s.cache[rel]; ok {
		return it
	}
	raw := s.file(rel)
	it := &ocsfItem{attrs: map[string]ocsfAttr{}}
	if parent, _ := raw["extends"].(string); parent != "" {
		p := s.object(parent)
		it.attrs = maps.Clone(p.attrs)
		it.profiles = slices.Clone(p.profiles)
		it.constraints = p.constraints
	}
	s.fill(it, raw)
	if name == "observable" {
		s.observableTypes(it)
	}
	s.cache[rel] = it
	return it
}

// observableTypes completes observable.type_id's enum as the server does:
// the file holds only Unknown and Other; every dictionary type with an
// "observable" number adds its own.
func (s *ocsfSchema) observableTypes(it *ocsfItem) {
	enum := map[string]any{}
	for _, t := range s.types {
		if id, ok := t["observable"].(float64); ok {
			enum[strconv.Itoa(int(id))] = map[string]any{"caption": t["caption"]}
		}
	}
	it.attrs["type_id"] = merge(it.attrs["type_id"], ocsfAttr{"enum": enum})
}

func (s *ocsfSchema) fill(it *ocsfItem, raw map[string]any) {
	it.name, _ = raw["name"].(string)
	it.caption, _ = raw["caption"].(string)
	if uid, ok := raw["uid"].(float64); ok {
		it.uid = int(uid)
	}
	for k, a := range s.ownAttrs(raw) {
		it.attrs[k] = merge(it.attrs[k], a)
	}
	for _, p := range asSlice(raw["profiles"]) {
		if !slices.Contains(it.profiles, p.(string)) {
			it.profiles = append(it.profiles, p.(string))
		}
	}
	if c, ok := raw["constraints"].(map[string]any); ok {
		it.constraints = map[string][]string{}
		for k, v := range c {
			for _, n := range asSlice(v) {
				it.constraints[k] = append(it.constraints[k], n.(string))
			}
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// def is an attribute's full definition: its dictionary entry under the
// class's or object's entry.
func (s *ocsfSchema) def(it *ocsfItem, name string) (ocsfAttr, bool) {
	a, ok := it.attrs[name]
	if !ok {
		return nil, false
	}
	return merge(s.dict[name], a), true
}

// ocsfCheck collects what is wrong with one event.
type ocsfCheck struct {
	s        *ocsfSchema
	profiles []string
	problems []string
}

func (c *ocsfCheck) fail(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// validateOCSF checks one event's data against the class it names, the
// classes given by class_uid in files.
func validateOCSF(s *ocsfSchema, files map[int]string, data []byte, waived map[string]string) []string {
	var ev map[string]any
	if err := json.Unmarshal(data, &ev); err != nil {
		return []string{err.Error()}
	}
	c := &ocsfCheck{s: s}
	uid, _ := ev["class_uid"].(float64)
	rel, ok := files[int(uid)]
	if !ok {
		return []string{fmt.Sprintf("class_uid %v: no vendored class", ev["class_uid"])}
	}
	cls := s.class(rel)
	c.checkProfiles(cls, ev)
	c.checkClassification(cls, ev)
	c.object(cls.name, cls, ev, waived)
	c.checkObservables(cls, ev)
	c.problems = append(c.problems, s.missing...)
	s.missing = nil
	return c.problems
}

// checkObservables: each observable names an attribute of the event (a
// dotted path; [n] picks an array element), has its value, and has the
// type_id of the attribute's type (or of the attribute itself, where the
// schema makes an attribute observable).
func (c *ocsfCheck) checkObservables(cls *ocsfItem, ev map[string]any) {
	for i, o := range asSlice(ev["observables"]) {
		obs, _ := o.(map[string]any)
		name, _ := obs["name"].(string)
		def, val, ok := c.lookup(cls, ev, name)
		if !ok {
			c.fail("observables[%d]: %q names no attribute of the event", i, name)
			continue
		}
		if fmt.Sprint(val) != fmt.Sprint(obs["value"]) {
			c.fail("observables[%d]: value %v, but %s is %v", i, obs["value"], name, val)
		}
		want, ok := def["observable"].(float64)
		if !ok {
			typ, _ := def["type"].(string)
			want, ok = c.s.types[typ]["observable"].(float64)
		}
		if !ok {
			c.fail("observables[%d]: %s is not observable", i, name)
		} else if got, _ := obs["type_id"].(float64); got != want {
			c.fail("observables[%d]: type_id %v, want %v for %s", i, obs["type_id"], want, name)
		}
	}
}

// lookup follows a dotted path through the event and the schema.
func (c *ocsfCheck) lookup(it *ocsfItem, v map[string]any, path string) (ocsfAttr, any, bool) {
	parts := strings.Split(path, ".")
	var cur any = v
	var def ocsfAttr
	for n, part := range parts {
		key, idx, indexed := strings.Cut(strings.TrimSuffix(part, "]"), "[")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, nil, false
		}
		if def, ok = c.s.def(it, key); !ok {
			return nil, nil, false
		}
		if cur, ok = m[key]; !ok {
			return nil, nil, false
		}
		if indexed {
			i, err := strconv.Atoi(idx)
			arr, _ := cur.([]any)
			if err != nil || i < 0 || i >= len(arr) {
				return nil, nil, false
			}
			cur = arr[i]
		}
		if n < len(parts)-1 {
			typ, _ := def["type"].(string)
			if strings.HasSuffix(typ, "_t") || typ == "object" {
				return nil, nil, false
			}
			it = c.s.object(typ)
		}
	}
	return def, cur, true
}

// checkProfiles: metadata.profiles names profiles that exist and that the
// class supports.
func (c *ocsfCheck) checkProfiles(cls *ocsfItem, ev map[string]any) {
	md, _ := ev["metadata"].(map[string]any)
	for _, p := range asSlice(md["profiles"]) {
		name, _ := p.(string)
		c.profiles = append(c.profiles, name)
		switch {
		case !c.s.exists("profiles/" + name + ".json"):
			c.fail("metadata.profiles: unknown profile %q", name)
		case !slices.Contains(cls.profiles, name):
			c.fail("metadata.profiles: class %s does not support profile %q", cls.name, name)
		default:
			c.s.file("profiles/" + name + ".json")
		}
	}
	if v, _ := md["version"].(string); v != c.s.version {
		c.fail("metadata.version %q is not the vendored schema's %s", v, c.s.version)
	}
}

// checkClassification: the uids and names follow from the class, its
// category and the activity.
func (c *ocsfCheck) checkClassification(cls *ocsfItem, ev map[string]any) {
	cats := c.s.file("categories.json")
	cat, _ := attrMap(cats["attributes"])[cls.category]
	catUID := int(cat["uid"].(float64))
	classUID := catUID*1000 + cls.uid
	num := func(k string) int { v, _ := ev[k].(float64); return int(v) }
	str := func(k string) string { v, _ := ev[k].(string); return v }
	if num("category_uid") != catUID || str("category_name") != cat["caption"] {
		c.fail("category %d %q, want %d %q", num("category_uid"), str("category_name"), catUID, cat["caption"])
	}
	if num("class_uid") != classUID || str("class_name") != cls.caption {
		c.fail("class %d %q, want %d %q", num("class_uid"), str("class_name"), classUID, cls.caption)
	}
	if want := classUID*100 + num("activity_id"); num("type_uid") != want {
		c.fail("type_uid %d, want %d", num("type_uid"), want)
	}
	act, _ := c.s.def(cls, "activity_id")
	caption := enumCaption(act, strconv.Itoa(num("activity_id")))
	if want := cls.caption + ": " + caption; str("type_name") != want {
		c.fail("type_name %q, want %q", str("type_name"), want)
	}
}

func enumCaption(def ocsfAttr, key string) string {
	e, _ := def["enum"].(map[string]any)
	v, _ := e[key].(map[string]any)
	s, _ := v["caption"].(string)
	return s
}

// object checks the attributes of v against it, at path p.
func (c *ocsfCheck) object(p string, it *ocsfItem, v map[string]any, waived map[string]string) {
	for k, val := range v {
		c.attribute(p+"."+k, it, k, val, v, waived)
	}
	names := make([]string, 0, len(it.attrs))
	for k := range it.attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		def, _ := c.s.def(it, k)
		if _, present := v[k]; present || !c.applies(def) {
			continue
		}
		switch def["requirement"] {
		case "required":
			c.fail("%s.%s: required attribute missing", p, k)
		case "recommended":
			if c.satisfiedByConstraint(it, k, v) {
				continue
			}
			key := it.name + "." + k
			if _, ok := waived[key]; !ok {
				c.fail("%s.%s: recommended attribute missing (%s)", p, k, key)
			}
			c.s.waiverUsed[key] = true
		}
	}
	for kind, group := range it.constraints {
		n := 0
		for _, k := range group {
			if _, ok := v[k]; ok {
				n++
			}
		}
		if (kind == "at_least_one" && n == 0) || (kind == "just_one" && n != 1) {
			c.fail("%s: constraint %s %v not met", p, kind, group)
		}
	}
}

// satisfiedByConstraint: a recommended attribute that is one of several
// alternatives is not missing when another of them is present.
func (c *ocsfCheck) satisfiedByConstraint(it *ocsfItem, k string, v map[string]any) bool {
	for _, group := range it.constraints {
		if !slices.Contains(group, k) {
			continue
		}
		for _, o := range group {
			if _, ok := v[o]; ok {
				return true
			}
		}
	}
	return false
}

// applies: an attribute of a profile exists only when the profile is
// declared.
func (c *ocsfCheck) applies(def ocsfAttr) bool {
	p, _ := def["profile"].(string)
	return p == "" || slices.Contains(c.profiles, p)
}

func (c *ocsfCheck) attribute(p string, it *ocsfItem, k string, val any, parent map[string]any, waived map[string]string) {
	def, ok := c.s.def(it, k)
	if !ok {
		def, ok = c.datetimeSibling(it, k)
	}
	if !ok {
		c.fail("%s: unknown attribute", p)
		return
	}
	if !c.applies(def) {
		c.fail("%s: unknown attribute (it belongs to profile %q, which metadata.profiles does not declare)", p, def["profile"])
		return
	}
	if dep, ok := def["@deprecated"].(map[string]any); ok {
		c.fail("%s: deprecated since %v: %v", p, dep["since"], dep["message"])
	}
	if def["is_array"] == true {
		arr, ok := val.([]any)
		if !ok {
			c.fail("%s: want an array", p)
			return
		}
		for i, e := range arr {
			c.value(fmt.Sprintf("%s[%d]", p, i), def, e, waived)
		}
		return
	}
	c.value(p, def, val, waived)
	if it.uid != 0 && (k == "class_uid" || k == "category_uid") {
		// The server makes these enums from the class and its category;
		// checkClassification checks them.
		return
	}
	c.enum(p, def, val, parent)
}

// datetimeSibling: with the datetime profile, X_dt accompanies every
// timestamp_t attribute X.
func (c *ocsfCheck) datetimeSibling(it *ocsfItem, k string) (ocsfAttr, bool) {
	base, ok := strings.CutSuffix(k, "_dt")
	if !ok {
		return nil, false
	}
	def, ok := c.s.def(it, base)
	if !ok || def["type"] != "timestamp_t" {
		return nil, false
	}
	return ocsfAttr{"type": "datetime_t", "profile": "datetime", "requirement": "optional"}, true
}

// value checks one value against the attribute's type.
func (c *ocsfCheck) value(p string, def ocsfAttr, val any, waived map[string]string) {
	typ, _ := def["type"].(string)
	if !strings.HasSuffix(typ, "_t") {
		m, ok := val.(map[string]any)
		if !ok {
			c.fail("%s: want an object (%s)", p, typ)
			return
		}
		if typ != "object" {
			c.object(p, c.s.object(typ), m, waived)
		}
		return
	}
	c.scalar(p, typ, val)
}

func (c *ocsfCheck) scalar(p, typ string, val any) {
	t := c.s.types[typ]
	base := typ
	if b, ok := t["type"].(string); ok {
		base = b
	}
	switch base {
	case "string_t":
		s, ok := val.(string)
		if !ok {
			c.fail("%s: want a string (%s), got %T", p, typ, val)
			return
		}
		if re, ok := t["regex"].(string); ok && !regexp.MustCompile(re).MatchString(s) {
			c.fail("%s: %q is not a valid %s", p, s, typ)
		}
	case "integer_t", "long_t":
		f, ok := val.(float64)
		if !ok || f != math.Trunc(f) {
			c.fail("%s: want an integer (%s), got %v", p, typ, val)
			return
		}
		if base == "integer_t" && (f > math.MaxInt32 || f < math.MinInt32) {
			c.fail("%s: %v is out of range for %s", p, f, typ)
		}
		if r := asSlice(t["range"]); len(r) == 2 && (f < r[0].(float64) || f > r[1].(float64)) {
			c.fail("%s: %v is out of range %v for %s", p, f, r, typ)
		}
	case "float_t":
		if _, ok := val.(float64); !ok {
			c.fail("%s: want a number (%s), got %T", p, typ, val)
		}
	case "boolean_t":
		if _, ok := val.(bool); !ok {
			c.fail("%s: want a boolean, got %T", p, val)
		}
	case "json_t":
	default:
		c.fail("%s: type %s is not known to the dictionary", p, typ)
	}
}

// enum: the value is one of the enum's keys, and a sibling (the caption
// attribute of an *_id) agrees with the caption, unless the value is Other
// (99), whose sibling is free text.
func (c *ocsfCheck) enum(p string, def ocsfAttr, val any, parent map[string]any) {
	e, ok := def["enum"].(map[string]any)
	if !ok {
		return
	}
	key := fmt.Sprint(val)
	if f, ok := val.(float64); ok {
		key = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if _, ok := e[key]; !ok {
		c.fail("%s: %s is not in the enum", p, key)
		return
	}
	sib, _ := def["sibling"].(string)
	if sib == "" {
		return
	}
	got, present := parent[sib]
	want := enumCaption(def, key)
	switch {
	case !present:
		c.fail("%s: sibling %s missing (want %q)", p, sib, want)
	case key != "99" && got != want:
		c.fail("%s: sibling %s is %q, want %q", p, sib, got, want)
	}
}
