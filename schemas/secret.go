package schemas

import (
	"bytes"
	"regexp"
	"strings"
)

// What counts as a secret in what leaseguard reads and writes. Vault's audit
// devices hash every string of request and response bodies, and tokens,
// unless a mount is tuned otherwise (audit_non_hmac_response_keys) or a
// device logs raw; a forged entry can put anything anywhere. Secrets are
// kept out of what leaseguard stores in two ways, both defined here so that
// every writer agrees:
//
//   - Redact (redact.go) replaces them by Redacted in what leaseguard keeps
//     of its input: audit entries the direct sources publish, the entry the
//     ledger reads, dead letters;
//   - Withhold (withhold.go) replaces them by Withheld in leaseguard's own
//     documents, findings and evidence, and lists where.

// Markers that take a secret's place.
const (
	Redacted = "[redacted]"
	Withheld = "[withheld: looks like a secret]"
)

var (
	// passwordWords name a password in a key, once lowercased and reduced
	// to letters and digits ("Password", "db_passwd", …). The evidence
	// schema forbids such keys anywhere in an event.
	passwordWords = [][]byte{[]byte("password"), []byte("passwd"), []byte("passphrase")}
	// secretWords name a secret of any kind in a key.
	secretWords = [][]byte{[]byte("password"), []byte("passwd"), []byte("passphrase"), []byte("secret"), []byte("privatekey"), []byte("apikey")}

	// hvToken: a plaintext Vault token of the current format (service,
	// batch, recovery: "hvs.…", "hvb.…", "hvr.…").
	hvToken = regexp.MustCompile(`\bhv[sbr]\.[A-Za-z0-9_-]{20,}`)
	// legacyToken: a token of the format before Vault 1.10 ("s." and 24
	// base62 characters); group 1 is the character before it.
	legacyToken = regexp.MustCompile(`(^|[^A-Za-z0-9./])[sbr]\.[A-Za-z0-9]{24}\b`)
	// sqlPassword: a statement that sets a password ("PASSWORD 'x'",
	// "ENCRYPTED PASSWORD E'x'", "PASSWORD $$x$$"); the value follows.
	sqlPassword = regexp.MustCompile(`(?i)\bpassword\s+(e?'|\$[A-Za-z0-9_]*\$)`)
	// textKeyValue: a JSON key and the opening quote of its string value
	// in text that is not (or not only) valid JSON, the quotes possibly
	// escaped (JSON inside a JSON string); the value follows.
	textKeyValue = regexp.MustCompile(`(\\*)"((?:[^"\\]|\\u[0-9a-fA-F]{4}){1,100})\\*"\s*:\s*(\\*)"`)
	// urlPassword: the password of a URL's user information.
	urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s"'\\]*):([^@/\s"'\\]+)@`)
	// assignedPassword: password=x in a connection string or a form.
	assignedPassword = regexp.MustCompile(`(?i)\b(password|passwd|pwd)(\s*=\s*)([^\s&;"',\\]+)`)
)

// PasswordKey reports whether an object key names a password.
func PasswordKey[T string | []byte](k T) bool { return keyNames([]byte(k), passwordWords, false) }

// SecretKey reports whether an object key names a secret: a password,
// secret, private or API key, or a token ("client_token", "token"; not
// "token_type" or "token_ttl"). A key naming an accessor does not: an
// accessor cannot authenticate, and leaseguard reads accessors.
func SecretKey[T string | []byte](k T) bool { return keyNames([]byte(k), secretWords, true) }

func keyNames(k []byte, words [][]byte, tokens bool) bool {
	var buf [64]byte
	n := 0
	for i := 0; i < len(k) && n < len(buf); i++ {
		c := k[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			buf[n] = c
			n++
		}
	}
	norm := buf[:n]
	if tokens && bytes.HasSuffix(norm, []byte("accessor")) {
		return false
	}
	// Every word starts with p, s or a: look for words only there.
	for i, c := range norm {
		if c != 'p' && c != 's' && c != 'a' {
			continue
		}
		for _, w := range words {
			if w[0] == c && bytes.HasPrefix(norm[i:], w) {
				return true
			}
		}
	}
	return tokens && bytes.HasSuffix(norm, []byte("token"))
}

// HoldsToken reports whether s contains a plaintext Vault token.
func HoldsToken(s string) bool {
	return mayHoldToken(s) && (hvToken.MatchString(s) || legacyToken.MatchString(s))
}

// LooksLikeSecret reports whether text holds something RedactText would
// redact: a Vault token, a statement or assignment setting a password, a
// URL with a password, or a secret-named key with its value (JSON inside a
// string, or a line cut short).
func LooksLikeSecret(s string) bool {
	_, changed := RedactText(s)
	return changed
}

// mayHoldToken reports whether s has a dot where a Vault token can start
// (tokenStartAt): the screen before the token patterns, which see s as it
// is.
func mayHoldToken[T string | []byte](s T) bool {
	for i := 1; i+1 < len(s); i++ {
		if s[i] == '.' && tokenStartAt(s, i) {
			return true
		}
	}
	return false
}

// tokenDot reports whether a dot between p and n could start a token, as
// far as those two characters tell.
func tokenDot(p, n byte) bool {
	return (p == 's' || p == 'b' || p == 'r') && (isAlnum(n) || n == '_' || n == '-')
}

// tokenStartAt reports whether the dot at i (0 < i < len(s)-1) can start a
// token as hvToken or legacyToken find one: s, b or r before it, at the
// start of s, after a character that is no letter, digit, dot or slash
// (legacyToken), or after "hv" (hvToken). "user.name" has none of these.
func tokenStartAt[T string | []byte](s T, i int) bool {
	if !tokenDot(s[i-1], s[i+1]) {
		return false
	}
	if i < 2 {
		return true
	}
	c := s[i-2]
	return !(isAlnum(c) || c == '.' || c == '/') || c == 'v' && i >= 3 && s[i-3] == 'h'
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// containsFold reports whether s contains the lowercase ASCII word w in any
// case. It jumps from one place holding w's first letter (in either case)
// to the next with IndexByte: every string of every evidence event is
// asked for a few such words, and most hold none.
func containsFold[T string | []byte](s T, w string) bool {
	lower, upper := w[0], w[0]
	if lower >= 'a' && lower <= 'z' {
		upper = lower - 'a' + 'A'
	}
	for i := 0; i+len(w) <= len(s); i++ {
		k := indexEither(s[i:len(s)-len(w)+1], lower, upper)
		if k < 0 {
			return false
		}
		i += k
		if equalFoldAt(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}

// indexEither is the first index of a or b in s, or -1.
func indexEither[T string | []byte](s T, a, b byte) int {
	i := indexByte(s, a)
	if a == b {
		return i
	}
	end := len(s)
	if i >= 0 {
		end = i // b counts only before a's first place
	}
	if j := indexByte(s[:end], b); j >= 0 {
		return j
	}
	return i
}

func indexByte[T string | []byte](s T, c byte) int {
	switch v := any(s).(type) {
	case string:
		return strings.IndexByte(v, c)
	case []byte:
		return bytes.IndexByte(v, c)
	}
	return -1
}

// equalFoldAt reports whether s, as long as w, is w with ASCII letters in
// any case.
func equalFoldAt[T string | []byte](s T, w string) bool {
	for j := 0; j < len(w); j++ {
		c := s[j]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[j] {
			return false
		}
	}
	return true
}
