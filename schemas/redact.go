package schemas

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Redact returns b with every secret it carries replaced by Redacted, and
// whether there was one. A JSON document (an audit entry, a lease event, a
// revocation command) is re-encoded only when it holds a secret (see
// JSONHasSecret), so a clean one is returned as is: in it, a string under
// a secret-named key (SecretKey) that is not already an HMAC
// ("hmac-sha256:…") is redacted, and so is whatever RedactText redacts in
// any string. Anything that is not valid JSON — a line cut short, a
// truncated envelope, plain text — is redacted as text (RedactText).
// Redaction is deterministic: the same input gives the same output.
func Redact(b []byte) ([]byte, bool) {
	if json.Valid(b) {
		if !JSONHasSecret(b) {
			return b, false
		}
		if out, err := redactJSON(b); err == nil {
			return out, true
		}
	}
	out, changed := RedactText(string(b))
	if !changed {
		return b, false
	}
	return []byte(out), true
}

// HasSecret reports whether Redact would change b.
func HasSecret(b []byte) bool {
	if json.Valid(b) {
		return JSONHasSecret(b)
	}
	return LooksLikeSecret(string(b))
}

// redactJSON decodes one JSON value, redacts it and encodes it again
// (numbers as written, no HTML escaping).
func redactJSON(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v = redactValue(false, v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// redactValue redacts v, a value under a key that names a secret when
// secretKey is set (array elements take their array's key).
func redactValue(secretKey bool, v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			t[k] = redactValue(SecretKey(k), c)
		}
	case []any:
		for i, c := range t {
			t[i] = redactValue(secretKey, c)
		}
	case string:
		if secretKey && secretValue(t) {
			return Redacted
		}
		if out, changed := RedactText(t); changed {
			return out
		}
	}
	return v
}

// secretValue reports whether a string under a secret-named key is to be
// redacted: it is not empty, not an HMAC, not already redacted.
func secretValue[T string | []byte](v T) bool {
	n := len(HMACPrefix)
	return len(v) > 0 && (len(v) < n || string(v[:n]) != HMACPrefix) && string(v) != Redacted
}

// JSONHasSecret reports whether the JSON document b holds a secret as
// Redact defines it. It reads b in one pass without decoding it (ingest
// asks this of every entry): it follows which key each string value
// belongs to, and looks closer only at strings that could hold something
// RedactText redacts. b is assumed to be valid JSON; for anything else the
// answer is a guess.
func JSONHasSecret(b []byte) bool {
	type frame struct{ object, secretKey bool }
	var buf [16]frame
	stack := buf[:0]
	secretKey, expectKey := false, false
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{':
			stack = append(stack, frame{object: true, secretKey: secretKey})
			expectKey = true
		case '[':
			stack = append(stack, frame{secretKey: secretKey})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			expectKey = false
		case ',':
			if n := len(stack); n > 0 {
				if stack[n-1].object {
					expectKey = true
				} else {
					secretKey = stack[n-1].secretKey
				}
			}
		case '"':
			end, escaped := stringEnd(b, i+1)
			raw := b[i+1 : end]
			i = end
			if expectKey {
				secretKey, expectKey = keyIsSecret(raw, escaped), false
				continue
			}
			if valueIsSecret(raw, escaped, secretKey) {
				return true
			}
		}
	}
	return false
}

// stringEnd returns the index of the quote closing the JSON string that
// starts at b[start] (len(b) when none), and whether it has escapes.
func stringEnd(b []byte, start int) (int, bool) {
	escaped := false
	for j := start; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b), escaped || bytes.IndexByte(b[j:], '\\') >= 0
		}
		bs := bytes.IndexByte(b[j:j+k], '\\')
		if bs < 0 {
			return j + k, escaped
		}
		escaped = true
		j += bs + 2 // skip the escaped character
	}
	return len(b), escaped
}

func keyIsSecret(raw []byte, escaped bool) bool {
	if escaped {
		var k string
		if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &k) == nil {
			return SecretKey(k)
		}
	}
	return SecretKey(raw)
}

func valueIsSecret(raw []byte, escaped, secretKey bool) bool {
	if secretKey && secretValue(raw) {
		return true
	}
	if escaped {
		var v string
		if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &v) != nil {
			return true // not valid JSON after all: let Redact decide as text
		}
		return LooksLikeSecret(v)
	}
	return textMayHoldSecret(raw) && LooksLikeSecret(string(raw))
}

// textMayHoldSecret is a cheap screen: text without a quote for which it
// is false holds nothing RedactText redacts (no token shape, no "passw",
// "pwd" or "://"). It looks only at dots, colons and p's. A dot counts
// only where a token can start (tokenStartAt), so that names such as
// actor.user.name pass, and "://" only where a user and password can
// follow (userinfoAt). The text must be as the patterns will see it: a
// JSON string decoded first (HoldsSecretJSON).
func textMayHoldSecret[T string | []byte](s T) bool {
	for i := 0; i < len(s); {
		k := indexAny3(s[i:])
		if k < 0 {
			return false
		}
		i += k
		switch s[i] {
		case '.':
			if i > 0 && i+1 < len(s) && tokenStartAt(s, i) {
				return true
			}
		case ':':
			if i+2 < len(s) && s[i+1] == '/' && s[i+2] == '/' && userinfoAt(s, i+3) {
				return true
			}
		default:
			if foldAt(s, i, "passw") || foldAt(s, i, "pwd") {
				return true
			}
		}
		i++
	}
	return false
}

// userinfoAt reports whether the authority of a URL starting at i can hold
// a password as urlPassword finds one: a colon, then an @, before any
// character that ends the user information there (a slash, a quote, a
// backslash, or what RE2's \s matches: tab, newline, form feed, carriage
// return, space; not vertical tab).
func userinfoAt[T string | []byte](s T, i int) bool {
	colon := false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '@':
			return colon
		case c == ':':
			colon = true
		case c == '/' || c == '"' || c == '\'' || c == '\\' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			return false
		}
	}
	return false
}

// indexAny3 returns the index of the first '.', ':', 'p' or 'P' in s, or -1.
func indexAny3[T string | []byte](s T) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '.', ':', 'p', 'P':
			return i
		}
	}
	return -1
}

// foldAt reports whether s has the lowercase ASCII word w at i, in any case.
func foldAt[T string | []byte](s T, i int, w string) bool {
	if len(s)-i < len(w) {
		return false
	}
	for j := 0; j < len(w); j++ {
		c := s[i+j]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[j] {
			return false
		}
	}
	return true
}

// RedactText redacts secrets in text that is not (or not only) a valid
// JSON document: Vault tokens; the value of a statement that sets a
// password (PASSWORD '…'), of password=…, of a URL's password; and the
// string value of a secret-named key ("password": "…", also escaped, as
// JSON inside a JSON string is, and also when the closing quote was cut
// off: the rest of the text is redacted). HMACs are kept. It reports
// whether anything was redacted.
func RedactText(s string) (string, bool) {
	changed := false
	for _, step := range []func(string) (string, bool){
		redactTokens, redactSQLPasswords, redactKeyValues, redactURLPasswords, redactAssignedPasswords,
	} {
		var c bool
		s, c = step(s)
		changed = changed || c
	}
	return s, changed
}

func redactTokens(s string) (string, bool) {
	if !mayHoldToken(s) {
		return s, false
	}
	out := hvToken.ReplaceAllString(s, Redacted)
	out = legacyToken.ReplaceAllString(out, "${1}"+Redacted)
	return out, out != s
}

// redactSQLPasswords redacts the quoted value after PASSWORD: a string
// literal (a doubled quote stands for one; E'…' also escapes with a
// backslash) or a dollar-quoted string, to its closing quote or the end
// of the text.
func redactSQLPasswords(s string) (string, bool) {
	if !containsFold(s, "password") {
		return s, false
	}
	var b strings.Builder
	changed := false
	for {
		loc := sqlPassword.FindStringSubmatchIndex(s)
		if loc == nil {
			break
		}
		open, start := s[loc[2]:loc[3]], loc[3]
		end := len(s)
		if strings.HasSuffix(open, "'") {
			end = quotedEnd(s, start, len(open) == 2)
		} else if k := strings.Index(s[start:], open); k >= 0 {
			end = start + k
		}
		b.WriteString(s[:start])
		b.WriteString(Redacted)
		changed = changed || s[start:end] != Redacted
		s = s[end:]
	}
	b.WriteString(s)
	return b.String(), changed
}

// quotedEnd returns the index of the quote closing a SQL string literal
// whose value starts at s[start] (len(s) when none).
func quotedEnd(s string, start int, backslash bool) int {
	for i := start; i < len(s); i++ {
		switch {
		case backslash && s[i] == '\\':
			i++
		case s[i] == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		case s[i] == '\'':
			return i
		}
	}
	return len(s)
}

// redactKeyValues redacts the string value of each secret-named key, up
// to its closing quote (escaped as the opening one was) or the end.
func redactKeyValues(s string) (string, bool) {
	if strings.IndexByte(s, '"') < 0 || strings.IndexByte(s, ':') < 0 {
		return s, false
	}
	var b strings.Builder
	changed := false
	for {
		loc := textKeyValue.FindStringSubmatchIndex(s)
		if loc == nil {
			break
		}
		start := loc[1]
		if !SecretKey(unescapeKey(s[loc[4]:loc[5]])) {
			b.WriteString(s[:start])
			s = s[start:]
			continue
		}
		end := valueEnd(s, start, loc[7]-loc[6])
		b.WriteString(s[:start])
		if v := s[start:end]; secretValue(v) {
			b.WriteString(Redacted)
			changed = true
		} else {
			b.WriteString(v)
		}
		s = s[end:]
	}
	b.WriteString(s)
	return b.String(), changed
}

// valueEnd returns where a string value starting at s[start] ends: at the
// quote preceded by esc backslashes that closes it (for esc 0, the first
// unescaped quote), or at the end of s.
func valueEnd(s string, start, esc int) int {
	if esc > 0 {
		if k := strings.Index(s[start:], strings.Repeat(`\`, esc)+`"`); k >= 0 {
			return start + k
		}
		return len(s)
	}
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(s)
}

// unescapeKey decodes the \uXXXX escapes a key may hide a word behind.
func unescapeKey(k string) string {
	if !strings.Contains(k, `\u`) {
		return k
	}
	var out string
	if json.Unmarshal([]byte(`"`+k+`"`), &out) != nil {
		return k
	}
	return out
}

func redactURLPasswords(s string) (string, bool) {
	if !strings.Contains(s, "://") {
		return s, false
	}
	out := urlPassword.ReplaceAllString(s, "${1}:"+Redacted+"@")
	return out, out != s
}

func redactAssignedPasswords(s string) (string, bool) {
	if !containsFold(s, "passw") && !containsFold(s, "pwd") {
		return s, false
	}
	out := assignedPassword.ReplaceAllString(s, "${1}${2}"+Redacted)
	return out, out != s
}
