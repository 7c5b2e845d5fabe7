package evidence

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/leaseguard/leaseguard/schemas"
)

// The inputs of evidence should never carry a password or a token: Vault's
// audit log hashes them, and the revoker records only DROP/REVOKE/REASSIGN
// statements. But a forged audit entry, a client's application_name or a
// Vault error text can make any field look like one. The Builder withholds
// such a field (withholdSecrets: the value becomes schemas.Withheld, and
// data.unmapped.withheld lists the JSON paths), so one poisoned input never
// stops the evidence of everything recorded with it. refuseSecrets, run by
// prepare on the event as it will be stored, is the last gate: an event
// whose JSON has a key that names a password, or a value that looks like a
// secret, is refused. Its error names where, never what.

// refuseSecrets refuses v if anything in it looks like a secret, naming
// the first place in key order. It looks first without ordering keys or
// keeping a path (schemas.HoldsSecret: what Withhold withholds is what
// walkSecrets refuses, a token being a string RedactText redacts), which
// is what every event costs; only a refusal walks again, in order, for the
// path to name.
func refuseSecrets(v any) error {
	if !schemas.HoldsSecret(v) {
		return nil
	}
	return walkSecrets(v, nil)
}

// walkSecrets refuses v if anything in it looks like a secret, naming the
// first place in key order. at is where v is, rendered as a path only for
// the error.
func walkSecrets(v any, at []string) error {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // the first offending path is deterministic
		for _, k := range keys {
			if schemas.PasswordKey(k) || schemas.LooksLikeSecret(k) {
				return fmt.Errorf("%w: a key of %s names a password or looks like a secret", ErrSecret, jsonPath(at))
			}
			if err := walkSecrets(v[k], append(at, "."+k)); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := walkSecrets(e, append(at, "["+strconv.Itoa(i)+"]")); err != nil {
				return err
			}
		}
	case string:
		switch {
		case schemas.HoldsToken(v):
			return fmt.Errorf("%w: %s holds what looks like a Vault token", ErrSecret, jsonPath(at))
		case schemas.LooksLikeSecret(v):
			return fmt.Errorf("%w: %s looks like it holds a password", ErrSecret, jsonPath(at))
		}
	}
	return nil
}

// jsonPath renders the steps of walkSecrets from the root, "$".
func jsonPath(at []string) string {
	return "$" + strings.Join(at, "")
}

// withholdSecrets withholds what looks like a secret in an event's subject
// and data (schemas.Withhold) and lists the JSON paths of the event it
// withheld in data.unmapped.withheld. Data without any is returned as is.
// data is the Builder's own encoding, so valid JSON.
func withholdSecrets(data []byte, subject string) ([]byte, string, error) {
	var paths []string
	if schemas.LooksLikeSecret(subject) {
		subject = schemas.Withheld
		paths = append(paths, "$.subject")
	}
	if len(paths) == 0 && !schemas.HoldsSecretJSON(data) {
		return data, subject, nil
	}
	v, err := parseEncoded(data)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	v, more := schemas.Withhold(v, "$.data")
	paths = append(paths, more...)
	m, ok := v.(map[string]any)
	if len(paths) == 0 || !ok {
		return data, subject, nil
	}
	unmapped, _ := m["unmapped"].(map[string]any)
	if unmapped == nil {
		unmapped = map[string]any{}
		m["unmapped"] = unmapped
	}
	unmapped["withheld"] = paths
	out, err := encodeJSON(m)
	if err != nil {
		return nil, "", fmt.Errorf("encode data: %w", err)
	}
	return out, subject, nil
}
