package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// referenceParse is what parseJSON must return: encoding/json's own
// decoding with UseNumber (which keeps the last of duplicate keys, so the
// inputs compared here are those where that does not matter).
func referenceParse(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the top-level value")
	}
	return v, nil
}

// canonicalEncodeString is the encoder's output for one string, which
// writeString's fast path must reproduce.
func canonicalEncodeString(t testing.TB, s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

var parseSeeds = []string{
	`{"b": 1, "a": {"d": [3, 2, {"z": null, "y": true}], "c": "x"}}`,
	`{"n": 1.50, "e": 1e3, "neg": -0, "big": 123456789012345678901234567890, "x": -1.5E-7}`,
	`{"s": "<a & b>\u00e9\n\"q\"", "t": "tab\there", "u": "\ud83d\ude00", "bad": "\ud800"}`,
	"{\"raw\": \"caf\xc3\xa9 \xff\xfe\"}",
	`[]`, `{}`, `[[], {}, [{}], ""]`, ` "top" `, `0`, `true`, `null`,
	"\n\t{ \"a\" :\r\n [ 1 , 2 ] }\n",
	`{"a":1,"a":2}`, `{"a":1} {}`, `{"a":`, `[1,]`, `{"a" 1}`, `01`, `"\x"`, `[1 2]`, ``, ` `,
	`{"":""}`, `{"a\"b":"c\\d"}`, `{"x":"\u0000\u001f\u007f\u2028"}`,
}

func TestParseJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, doc := range parseSeeds {
		checkParse(t, []byte(doc))
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, doc := range parseSeeds {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkParse(t, doc) })
}

func checkParse(t *testing.T, doc []byte) {
	t.Helper()
	got, err := parseJSON(doc)
	want, wantErr := referenceParse(doc)
	if wantErr != nil || !json.Valid(doc) {
		if err == nil {
			t.Errorf("parseJSON(%q) accepted it (encoding/json: %v)", doc, wantErr)
		}
		return
	}
	if err != nil {
		if hasDuplicateKey(doc) {
			return // refused on purpose
		}
		t.Errorf("parseJSON(%q): %v", doc, err)
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseJSON(%q) = %#v, want %#v", doc, got, want)
	}
}

// hasDuplicateKey reports whether some object of doc repeats a key,
// decoding it with encoding/json's token reader.
func hasDuplicateKey(doc []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(doc))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // next string token in this object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if s, ok := tok.(string); ok && top != nil && top.obj && top.key {
			if top.keys[s] {
				return true
			}
			top.keys[s] = true
			top.key = false
			continue
		}
		if top != nil && top.obj {
			top.key = true // a value was read (or opened)
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].obj {
				stack[len(stack)-1].key = true
			}
		}
	}
}

func TestWriteStringFastPath(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "DROP ROLE IF EXISTS \"v-x\"", "a\\b", "<&>", "\x00", "\x1f", "\x7f", "é", "\xff", "\u2028", "~ !#$%'()*+,-./:;=?@[]^_`{|}"} {
		var buf bytes.Buffer
		if err := writeString(&buf, s); err != nil {
			t.Fatal(err)
		}
		if want := canonicalEncodeString(t, s); buf.String() != want {
			t.Errorf("writeString(%q) = %s, want %s", s, buf.String(), want)
		}
	}
}
