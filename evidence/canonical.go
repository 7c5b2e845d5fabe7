package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"unicode/utf8"
)

// Canonical returns the canonical encoding of one JSON value, the form the
// hash chain is computed over. It is JSON with:
//
//   - object keys sorted by their UTF-8 bytes, each key once (a document with
//     a duplicate key is rejected: two readers could see different values);
//   - no whitespace between tokens;
//   - strings re-encoded by encoding/json without HTML escaping (so "<", ">"
//     and "&" appear as themselves; control characters, U+2028 and U+2029
//     are \u-escaped; invalid UTF-8 becomes U+FFFD);
//   - numbers exactly as written in the input (decoded with UseNumber and
//     written back verbatim: 1.50 stays 1.50). leaseguard writes only integers
//     and Go-formatted floats; an intermediary that rewrites numbers breaks
//     verification, one that reorders keys or reformats whitespace does not.
//
// This is close to, but not, RFC 8785 (JCS): JCS sorts keys by UTF-16 code
// units and normalises numbers.
func Canonical(doc []byte) ([]byte, error) {
	v, err := parseJSON(doc)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parseJSON decodes one JSON value into map[string]any, []any, string,
// json.Number, bool and nil, rejecting duplicate keys and trailing data.
//
// The document is checked with json.Valid (encoding/json's own scanner and
// nesting limit), then read by a small parser that may assume it is valid:
// every event is parsed when built, when stored and when hashed, and
// json.Decoder.Token made that the largest cost of recording evidence.
// Strings with escapes or non-UTF-8 bytes are decoded by encoding/json, so
// values are exactly what json.Unmarshal would give.
func parseJSON(doc []byte) (any, error) {
	if !json.Valid(doc) {
		var v any
		err := json.Unmarshal(doc, &v)
		if err == nil {
			err = errors.New("invalid document")
		}
		return nil, fmt.Errorf("json: %w", err)
	}
	return parseEncoded(doc)
}

// parseEncoded is parseJSON for a document encoding/json just encoded,
// which is valid by construction: it skips json.Valid, a third of a parse.
func parseEncoded(doc []byte) (any, error) {
	p := parser{doc: doc}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.doc) {
		return nil, errors.New("json: data after the top-level value")
	}
	return v, nil
}

// parser reads a document json.Valid accepted (or encoding/json wrote).
type parser struct {
	doc []byte
	i   int
}

func (p *parser) space() {
	for p.i < len(p.doc) {
		switch p.doc[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value() (any, error) {
	p.space()
	switch c := p.doc[p.i]; c {
	case '{':
		p.i++
		m := map[string]any{}
		p.space()
		if p.doc[p.i] == '}' {
			p.i++
			return m, nil
		}
		for {
			p.space()
			k, err := p.string()
			if err != nil {
				return nil, err
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("json: duplicate key %q", k)
			}
			p.space()
			p.i++ // ':'
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			m[k] = v
			p.space()
			c := p.doc[p.i]
			p.i++
			if c == '}' {
				return m, nil
			}
		}
	case '[':
		p.i++
		a := []any{}
		p.space()
		if p.doc[p.i] == ']' {
			p.i++
			return a, nil
		}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			p.space()
			c := p.doc[p.i]
			p.i++
			if c == ']' {
				return a, nil
			}
		}
	case '"':
		return p.string()
	case 't':
		p.i += len("true")
		return true, nil
	case 'f':
		p.i += len("false")
		return false, nil
	case 'n':
		p.i += len("null")
		return nil, nil
	default:
		start := p.i
		for p.i < len(p.doc) && numberByte(p.doc[p.i]) {
			p.i++
		}
		return json.Number(p.doc[start:p.i]), nil
	}
}

func numberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// string reads the string at p.i (its opening quote).
func (p *parser) string() (string, error) {
	start := p.i
	p.i++
	plain := true
	for {
		c := p.doc[p.i]
		if c == '"' {
			break
		}
		if c == '\\' {
			plain = false
			p.i++ // the escaped character; \u's hex digits are plain
		} else if c >= utf8.RuneSelf {
			plain = false
		}
		p.i++
	}
	p.i++
	raw := p.doc[start:p.i]
	if plain {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return s, nil
}

func writeCanonical(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeString(buf, k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeCanonical(buf, v[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case string:
		return writeString(buf, v)
	case json.Number:
		buf.WriteString(string(v))
	case bool:
		buf.WriteString(fmt.Sprint(v))
	case nil:
		buf.WriteString("null")
	default:
		return fmt.Errorf("json: unexpected %T", v)
	}
	return nil
}

func writeString(buf *bytes.Buffer, s string) error {
	if plainASCII(s) {
		// What the encoder below writes for such a string.
		buf.WriteByte('"')
		buf.WriteString(s)
		buf.WriteByte('"')
		return nil
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode appends a newline
	return nil
}

// plainASCII reports whether s is printable ASCII with no quote or
// backslash: encoding/json writes such a string between quotes unchanged.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// encodeJSON is json.Marshal without HTML escaping: "<", ">" and "&" in
// statements and messages stay readable in the outbox and the SIEM. (The
// hash does not depend on it; see Canonical.)
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
