package schemas

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// screenText is a random text made of the pieces tokens, URLs and
// passwords are made of, and of what may stand before or in them.
func screenText(r *rand.Rand) string {
	pieces := []string{"s.", "b.", "r.", "hvs.", "hvb.", "hvr.", "user.name", "actor.user.name", "hv", "v", "h",
		"AAAAAAAAAAAAAAAAAAAAAAAA", "abcdefghijklmnopqrst", "x", "9", ".", "/", "-", "_", " ", "<", "&", "\"", "\\", "é", "\n", "\v", "\t",
		"://", "https://", "db://", "user", ":", "pa<ss", "secret", "@", "host", "/path", "'", "password=", "pwd", "PASSW"}
	var b strings.Builder
	for range 1 + r.IntN(10) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// The screens answer "nothing to find" only where the patterns find
// nothing: checked against the patterns themselves on 200,000 random texts
// built to meet them, as text (the patterns see the text the screen sees)
// and inside JSON documents (escaped by the encoder, as evidence is).
func TestScreensMissNothingThePatternsFind(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	var tokens, secrets int
	for range 200000 {
		s := screenText(r)
		if hvToken.MatchString(s) || legacyToken.MatchString(s) {
			tokens++
			if !mayHoldToken(s) {
				t.Fatalf("mayHoldToken(%q) = false; it holds a token", s)
			}
		}
		if !LooksLikeSecret(s) {
			continue
		}
		secrets++
		if !textMayHoldSecret(s) && !strings.ContainsAny(s, `"`) {
			t.Fatalf("textMayHoldSecret(%q) = false; RedactText redacts it", s)
		}
		for _, v := range []any{s, map[string]any{"k": s}, []any{"a", s}} {
			doc, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if !HoldsSecretJSON(doc) {
				t.Fatalf("HoldsSecretJSON(%s) = false; it holds %q, which RedactText redacts", doc, s)
			}
		}
	}
	if tokens < 1000 || secrets < 10000 {
		t.Fatalf("only %d texts with a token and %d with a secret: the texts do not meet the patterns enough", tokens, secrets)
	}
}

// Names such as actor.user.name, in every evidence event's OCSF
// observables, are not token shapes: the screens pass them, and the
// documents carrying them are not parsed and walked for nothing.
func TestScreensPassObservableNames(t *testing.T) {
	doc := []byte(`{"observables":[{"name":"actor.user.name","type":"User Name"},{"name":"user.name"}],` +
		`"dataschema":"https://leaseguard.dev/schemas/evidence.v1.json","db_user":"v-approle-reporting-avBCPAqNnSFaMO7m0001-1795634398"}`)
	if HoldsSecretJSON(doc) {
		t.Errorf("HoldsSecretJSON(%s) = true", doc)
	}
	for _, s := range []string{"actor.user.name", "user.name", "https://leaseguard.dev/schemas/evidence.v1.json"} {
		if textMayHoldSecret(s) || mayHoldToken(s) {
			t.Errorf("%q screened as a possible secret", s)
		}
	}
}
