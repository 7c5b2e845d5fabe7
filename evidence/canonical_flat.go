package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// canonicalEvent is the canonical form of an event document without its
// "hash": what the chain's hash covers. doc must be valid JSON (encoding/json
// wrote it, or json.Valid accepted it).
//
// It writes what writeCanonical writes for parseEncoded's tree, without the
// tree: doc is read once into a list of tokens (byte ranges of doc), each
// object's members are sorted as ranges, and a string already in canonical
// form is copied as written. Every event is canonicalised when it is built
// and again when the relay publishes it; the tree's maps and strings were
// most of that cost. A test holds the two forms equal.
func canonicalEvent(doc []byte) ([]byte, error) {
	if len(doc) > math.MaxInt32 {
		return nil, errors.New("event too large")
	}
	w := flatWriters.Get().(*flatWriter)
	defer w.release()
	if err := w.scan(doc); err != nil {
		return nil, err
	}
	if w.toks[0].kind != '{' {
		return nil, errors.New("event is not a JSON object")
	}
	w.skipKey = "hash"
	if err := w.write(0); err != nil {
		return nil, err
	}
	return bytes.Clone(w.out.Bytes()), nil
}

// token is one JSON value of a document, or an object's key: its first byte
// (kind), its bytes doc[start:end], and the index of the token after it and
// everything inside it.
type token struct {
	kind       byte
	start, end int32
	next       int32
}

// member is an object's member while its object is written: its key,
// decoded, and the index of its value's token.
type member struct {
	key   []byte
	plain bool // key is as written, and so is its canonical form
	val   int
}

// flatWriter holds one canonicalisation's buffers; they are reused
// (flatWriters): the writer of each event anew was a fifth of the time.
type flatWriter struct {
	parser  // the document and the position read to; its space()
	toks    []token
	members []member
	out     bytes.Buffer
	skipKey string
}

var flatWriters = sync.Pool{New: func() any { return &flatWriter{} }}

func (w *flatWriter) release() {
	if w.out.Cap() > 1<<20 {
		return // an outsized document's buffers are not kept
	}
	w.doc, w.toks, w.members = nil, w.toks[:0], w.members[:0]
	w.out.Reset()
	flatWriters.Put(w)
}

// scan reads doc into w.toks.
func (w *flatWriter) scan(doc []byte) error {
	w.doc, w.i = doc, 0
	w.value()
	w.space()
	if w.i != len(doc) {
		return errors.New("json: data after the top-level value")
	}
	return nil
}

// value reads the value at w.i, and what it holds, into w.toks.
func (w *flatWriter) value() {
	w.space()
	at := len(w.toks)
	c := w.doc[w.i]
	w.toks = append(w.toks, token{kind: c, start: int32(w.i)})
	switch c {
	case '{', '[':
		w.container(c)
	case '"':
		w.skipString()
	case 't', 'n':
		w.i += len("true")
	case 'f':
		w.i += len("false")
	default:
		for w.i < len(w.doc) && numberByte(w.doc[w.i]) {
			w.i++
		}
	}
	w.toks[at].end, w.toks[at].next = int32(w.i), int32(len(w.toks))
}

// container reads an object's members (key token, value tokens) or an
// array's elements, from its opening bracket to past its closing one.
func (w *flatWriter) container(open byte) {
	w.i++
	w.space()
	if c := w.doc[w.i]; c == '}' || c == ']' {
		w.i++
		return
	}
	for {
		if open == '{' {
			w.space()
			w.toks = append(w.toks, token{kind: '"', start: int32(w.i)})
			w.skipString()
			k := len(w.toks) - 1
			w.toks[k].end, w.toks[k].next = int32(w.i), int32(len(w.toks))
			w.space()
			w.i++ // ':'
		}
		w.value()
		w.space()
		c := w.doc[w.i]
		w.i++
		if c == '}' || c == ']' {
			return
		}
	}
}

// skipString moves past the string at w.i (its opening quote).
func (w *flatWriter) skipString() {
	w.i++
	for {
		switch w.doc[w.i] {
		case '"':
			w.i++
			return
		case '\\':
			w.i++
		}
		w.i++
	}
}

// write writes the canonical form of token t and what it holds.
func (w *flatWriter) write(t int) error {
	tk := w.toks[t]
	switch tk.kind {
	case '{':
		return w.writeObject(t)
	case '[':
		w.out.WriteByte('[')
		for c := t + 1; c < int(tk.next); c = int(w.toks[c].next) {
			if c > t+1 {
				w.out.WriteByte(',')
			}
			if err := w.write(c); err != nil {
				return err
			}
		}
		w.out.WriteByte(']')
	case '"':
		return w.writeString(tk)
	default: // numbers as written (see Canonical), true, false, null
		w.out.Write(w.doc[tk.start:tk.end])
	}
	return nil
}

// writeObject writes object t's members sorted by their keys' bytes; a key
// twice is refused, w.skipKey too. The top-level object leaves out
// w.skipKey.
func (w *flatWriter) writeObject(t int) error {
	base := len(w.members)
	defer func() { w.members = w.members[:base] }()
	for c := t + 1; c < int(w.toks[t].next); c = int(w.toks[c+1].next) {
		key, plain, err := w.key(w.toks[c])
		if err != nil {
			return err
		}
		w.members = append(w.members, member{key: key, plain: plain, val: c + 1})
	}
	ms := w.members[base:]
	slices.SortFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	for k := 1; k < len(ms); k++ {
		if bytes.Equal(ms[k-1].key, ms[k].key) {
			return fmt.Errorf("json: duplicate key %q", ms[k].key)
		}
	}
	w.out.WriteByte('{')
	first := true
	for k := base; k < len(w.members); k++ {
		m := w.members[k] // by index: writing a value may grow w.members
		if t == 0 && string(m.key) == w.skipKey {
			continue
		}
		if !first {
			w.out.WriteByte(',')
		}
		first = false
		if err := w.writeKey(m); err != nil {
			return err
		}
		w.out.WriteByte(':')
		if err := w.write(m.val); err != nil {
			return err
		}
	}
	w.out.WriteByte('}')
	return nil
}

// key is a key's decoded bytes, and whether they are as written: printable
// ASCII without a quote or backslash, which is also their canonical form.
func (w *flatWriter) key(tk token) (key []byte, plain bool, err error) {
	raw := w.doc[tk.start:tk.end]
	inner := raw[1 : len(raw)-1]
	if plainASCII(string(inner)) {
		return inner, true, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, false, fmt.Errorf("json: %w", err)
	}
	return []byte(s), false, nil
}

func (w *flatWriter) writeKey(m member) error {
	if !m.plain {
		return writeString(&w.out, string(m.key))
	}
	w.out.WriteByte('"')
	w.out.Write(m.key)
	w.out.WriteByte('"')
	return nil
}

// writeString writes a string value: as written when that is already the
// encoder's form of it (printable ASCII; escapes only \" \\ \n \r \t, the
// encoder's own for those characters), else decoded and encoded again.
func (w *flatWriter) writeString(tk token) error {
	raw := w.doc[tk.start:tk.end]
	if encodedAsCanonical(raw[1 : len(raw)-1]) {
		w.out.Write(raw)
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	return writeString(&w.out, s)
}

// encodedAsCanonical reports whether a string's bytes between its quotes
// are what the canonical encoder writes for the string they decode to.
func encodedAsCanonical(b []byte) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < 0x20 || c > 0x7e || c == '"' {
			return false
		}
		if c == '\\' {
			i++
			switch b[i] {
			case '"', '\\', 'n', 'r', 't':
			default:
				return false
			}
		}
	}
	return true
}
