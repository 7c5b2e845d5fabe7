package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
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
func parseJSON(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	v, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("json: data after the top-level value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		m := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("json: %w", err)
			}
			k, ok := kt.(string)
			if !ok {
				return nil, errors.New("json: object key is not a string")
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("json: duplicate key %q", k)
			}
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, fmt.Errorf("json: %w", err)
		}
		return m, nil
	case '[':
		a := []any{}
		for dec.More() {
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, fmt.Errorf("json: %w", err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("json: unexpected %v", d)
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
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode appends a newline
	return nil
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
