package schemas

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// HoldsSecretJSON is HoldsSecret of the value the JSON document doc decodes
// to, looked for in doc's own tokens: each key and string value is decoded
// only when it has an escape or a non-ASCII byte, and no tree is built. A
// key twice is looked at twice (the tree keeps one). doc must be valid
// JSON; for anything else the answer is a guess.
//
// A screen over the whole document (the one before, MayHoldSecret) could
// not tell a quoted identifier in a statement (\") from JSON inside a
// string; every revocation's evidence has one, and was decoded into a
// tree to be looked at.
func HoldsSecretJSON(doc []byte) bool {
	scratch := make([]byte, 0, 512)
	for i := 0; i < len(doc); {
		k := bytes.IndexByte(doc[i:], '"')
		if k < 0 {
			return false
		}
		start := i + k
		end, _ := stringEnd(doc, start+1)
		if end >= len(doc) {
			return true // not valid JSON: let the tree's look decide
		}
		var ok bool
		if scratch, ok = decodeString(scratch[:0], doc[start:end+1]); !ok {
			return true
		}
		i = end + 1
		if isKey(doc, i) && PasswordKey(scratch) || textHoldsSecret(scratch) {
			return true
		}
	}
	return false
}

// textHoldsSecret is LooksLikeSecret of s, made a string only when the
// screen lets it through. The screen holds for text without a quote, and
// a quote matters only to a "key": value, which needs a colon too.
func textHoldsSecret(s []byte) bool {
	if !textMayHoldSecret(s) && (bytes.IndexByte(s, '"') < 0 || bytes.IndexByte(s, ':') < 0) {
		return false
	}
	return LooksLikeSecret(string(s))
}

// decodeString appends to dst the string a JSON string literal (quotes
// included) decodes to. The escapes encoding/json writes but \u are
// decoded here; other literals by encoding/json.
func decodeString(dst, raw []byte) ([]byte, bool) {
	inner := raw[1 : len(raw)-1]
	for j := 0; j < len(inner); j++ {
		c := inner[j]
		if c >= utf8.RuneSelf {
			return decodeByJSON(dst, raw)
		}
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		j++
		switch e := inner[j]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		default: // \u: surrogates and invalid ones as encoding/json has them
			return decodeByJSON(dst, raw)
		}
	}
	return dst, true
}

func decodeByJSON(dst, raw []byte) ([]byte, bool) {
	var s string
	err := json.Unmarshal(raw, &s)
	return append(dst[:0], s...), err == nil
}

// isKey reports whether the string ending before doc[i] is an object's key:
// a colon follows it.
func isKey(doc []byte, i int) bool {
	for ; i < len(doc); i++ {
		switch doc[i] {
		case ' ', '\t', '\n', '\r':
		case ':':
			return true
		default:
			return false
		}
	}
	return false
}
