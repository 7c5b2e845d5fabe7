package schemas

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// containsFold agrees with lowering the text and searching it, for the
// words it is asked about, on texts chosen to meet them in every case and
// at every place (start, end, overlapping, cut short).
func TestContainsFoldAgreesWithLowering(t *testing.T) {
	words := []string{"password", "passw", "pwd", "passphrase"}
	texts := []string{"", "p", "P", "pwd", "PWD", "pWd", "xpwd", "pwdx", "pw", "ppwd", "PPWD", "passwor", "PASSWORD",
		"my_Password=1", "passpassword", "pass word", "pas\u017fword", "PASSW", "\u212aPWD", "ppppppppw", "xxxxxxxxxxpassphrasE"}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "pPaAsSwWoOrRdDhHeE_x"
	for range 20000 {
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		texts = append(texts, string(b))
	}
	for _, s := range texts {
		for _, w := range words {
			want := strings.Contains(asciiLower(s), w)
			if got := containsFold(s, w); got != want {
				t.Fatalf("containsFold(%q, %q) = %v, want %v", s, w, got, want)
			}
			if got := containsFold([]byte(s), w); got != want {
				t.Fatalf("containsFold([]byte(%q), %q) = %v, want %v", s, w, got, want)
			}
		}
	}
}

// asciiLower lowers ASCII letters only, as containsFold folds.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func BenchmarkContainsFold(b *testing.B) {
	s := "v-approle-reporting-avBCPAqNnSFaMO7m0001-1795634398 postgres/creds/reporting/Zq8vR2kPq0aLx7Wn00000001 " +
		"lease expired at 2026-03-14T09:26:11Z (pg_valid_until) and no revocation was seen within 0s"
	for b.Loop() {
		containsFold(s, "passw")
		containsFold(s, "pwd")
	}
}
