package evidence

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// The inputs of evidence never carry a password or a token: Vault's audit
// log hashes them, and the revoker records only DROP/REVOKE/REASSIGN
// statements. checkNoSecrets is the belt to those braces: an event whose
// JSON has a key that names a password, or a value that looks like one, is
// refused. The error names where, never what.

var (
	// passwordKeys match object keys after lowercasing and removing
	// everything but letters and digits ("Password", "db_passwd", …).
	passwordKeys = []string{"password", "passwd", "passphrase"}
	// sqlPassword: a statement that sets a password ("PASSWORD 'x'",
	// "ENCRYPTED PASSWORD E'x'", "PASSWORD $$x$$").
	sqlPassword = regexp.MustCompile(`(?i)\bpassword\s+(e?'|\$)`)
	// vaultToken: a plaintext Vault token (service, batch, recovery), new
	// ("hvs.…") or legacy ("s.…" with 24 base62 characters) format.
	vaultToken = regexp.MustCompile(`\bhv[sbr]\.[A-Za-z0-9_-]{20,}|(^|[^A-Za-z0-9./])[sbr]\.[A-Za-z0-9]{24}\b`)
)

func checkNoSecrets(doc []byte) error {
	v, err := parseJSON(doc)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return walkSecrets("$", v)
}

func walkSecrets(path string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // the first offending path is deterministic
		for _, k := range keys {
			p := path + "." + k
			if passwordKey(k) {
				return fmt.Errorf("%w: field %s names a password", ErrSecret, p)
			}
			if err := walkSecrets(p, v[k]); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := walkSecrets(fmt.Sprintf("%s[%d]", path, i), e); err != nil {
				return err
			}
		}
	case string:
		// Cheap screens first: evidence carries long statement lists, and
		// the regular expressions only need to run where they could match.
		switch {
		case containsFold(v, "password") && sqlPassword.MatchString(v):
			return fmt.Errorf("%w: %s sets a password", ErrSecret, path)
		case mayHoldToken(v) && vaultToken.MatchString(v):
			return fmt.Errorf("%w: %s holds what looks like a Vault token", ErrSecret, path)
		}
	}
	return nil
}

func passwordKey(k string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(k) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	norm := b.String()
	for _, p := range passwordKeys {
		if strings.Contains(norm, p) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lowercase ASCII word w in any
// case.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		j := 0
		for ; j < len(w); j++ {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != w[j] {
				break
			}
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

// mayHoldToken reports whether s has a dot preceded by s, b or r and
// followed by a letter or digit: the shape every Vault token starts with.
func mayHoldToken(s string) bool {
	for i := 1; i+1 < len(s); i++ {
		if s[i] != '.' {
			continue
		}
		p, n := s[i-1], s[i+1]
		if (p == 's' || p == 'b' || p == 'r') && (n >= 'a' && n <= 'z' || n >= 'A' && n <= 'Z' || n >= '0' && n <= '9') {
			return true
		}
	}
	return false
}
