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
	var paths []string
	v = withhold(v, root, &paths)
	return v, paths
}

func withhold(v any, path string, paths *[]string) any {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "." + k
			if LooksLikeSecret(p) {
				p = path + "." + Withheld
			}
			if PasswordKey(k) || LooksLikeSecret(k) {
				delete(t, k)
				*paths = append(*paths, p)
				continue
			}
			t[k] = withhold(t[k], p, paths)
		}
	case []any:
		for i, c := range t {
			t[i] = withhold(c, fmt.Sprintf("%s[%d]", path, i), paths)
		}
	case string:
		if LooksLikeSecret(t) {
			*paths = append(*paths, path)
			return Withheld
		}
	}
	return v
}

// WithholdFinding returns f with whatever looks like a secret withheld
// (Withhold, on the finding as JSON) and, when something was, the JSON
// paths of what in Facts["withheld"]. A finding without one is returned
// as is. The state store and the evidence builder both apply it, so the
// stored finding and its evidence agree.
func WithholdFinding(f Finding) Finding {
	doc, err := json.Marshal(f)
	if err != nil || !MayHoldSecret(doc) {
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
