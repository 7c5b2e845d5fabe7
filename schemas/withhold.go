package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// Withhold withholds, in place, whatever looks like a secret in a decoded
// JSON document (map[string]any, []any, string, numbers, bools and nil, as
// encoding/json decodes them): a key that names a password (PasswordKey)
// or looks like a secret itself is removed with its value, and a string
// that looks like a secret (LooksLikeSecret) becomes Withheld. It returns
// the document and the JSON paths, from root, of what it withheld, in a
// deterministic order. A path never carries the secret.
//
// leaseguard's own documents — findings, evidence — are built from input
// anyone who can write to Vault's audit stream or name a database session
// chooses. A value that trips the secret check is withheld rather than
// letting it stop the document (and everything recorded with it).
func Withhold(v any, root string) (any, []string) {
	if !HoldsSecret(v) {
		return v, nil // most documents: no keys ordered, no path kept
	}
	w := withholder{root: root}
	v = w.walk(v, nil)
	return v, w.paths
}

// HoldsSecret reports whether Withhold would withhold anything in v: a key
// that names a password or looks like a secret, or a string RedactText
// would redact (a Vault token among them). It keeps no path and orders no
// keys, which is what a clean document costs.
func HoldsSecret(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if PasswordKey(k) || LooksLikeSecret(k) || HoldsSecret(c) {
				return true
			}
		}
	case []any:
		for _, c := range t {
			if HoldsSecret(c) {
				return true
			}
		}
	case string:
		return LooksLikeSecret(t)
	}
	return false
}

// withholder walks a document keeping the path to where it is as steps,
// and writes a path out only for what it withholds: most documents
// withhold nothing, and checking every path of every event for a secret
// was most of the cost of building evidence.
type withholder struct {
	root  string
	paths []string
}

// step is one step of a path: an object's key (which may be ""), or an
// array's index.
type step struct {
	key     string
	index   int
	inArray bool
}

func (w *withholder) walk(v any, at []step) any {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if PasswordKey(k) || LooksLikeSecret(k) {
				delete(t, k)
				w.withheld(append(at, step{key: k}))
				continue
			}
			t[k] = w.walk(t[k], append(at, step{key: k}))
		}
	case []any:
		for i, c := range t {
			t[i] = w.walk(c, append(at, step{index: i, inArray: true}))
		}
	case string:
		if LooksLikeSecret(t) {
			w.withheld(at)
			return Withheld
		}
	}
	return v
}

// withheld lists the path at. A key whose step makes the path look like
// a secret (keys harmless alone can spell a token when joined by dots) is
// written as Withheld, so that no path carries a secret.
func (w *withholder) withheld(at []step) {
	path := w.root
	for _, s := range at {
		if s.inArray {
			path = fmt.Sprintf("%s[%d]", path, s.index)
			continue
		}
		p := path + "." + s.key
		if LooksLikeSecret(p) {
			p = path + "." + Withheld
		}
		path = p
	}
	w.paths = append(w.paths, path)
}

// WithholdFinding returns f with whatever looks like a secret withheld
// (Withhold, on the finding as JSON) and, when something was, the JSON
// paths of what in Facts["withheld"]. A finding without one is returned
// as is. The state store and the evidence builder both apply it, so the
// stored finding and its evidence agree.
func WithholdFinding(f Finding) Finding {
	doc, err := json.Marshal(f)
	if err != nil || !HoldsSecretJSON(doc) {
		return f // an encoding error is the caller's to meet
	}
	v, err := decodeNumbers(doc)
	if err != nil {
		return f
	}
	v, paths := Withhold(v, "$")
	m, ok := v.(map[string]any)
	if len(paths) == 0 || !ok {
		return f
	}
	facts, _ := m["facts"].(map[string]any)
	if facts == nil {
		facts = map[string]any{}
		m["facts"] = facts
	}
	facts["withheld"] = paths
	doc, err = json.Marshal(m)
	if err != nil {
		return f
	}
	var out Finding
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return f
	}
	return out
}

func decodeNumbers(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}
