package detectors

import (
	"testing"

	"github.com/leaseguard/leaseguard/schemas"
)

func TestParseModes(t *testing.T) {
	t.Parallel()
	m, err := ParseModes("")
	if err != nil || m.Mode(RuleLeaseExpired) != schemas.ModeEnforce {
		t.Fatalf("default mode = %v, %v", m.Mode(RuleLeaseExpired), err)
	}
	m, err = ParseModes(" lease-expired-not-revoked = observe ")
	if err != nil || m.Mode(RuleLeaseExpired) != schemas.ModeObserve {
		t.Fatalf("observe = %v, %v", m.Mode(RuleLeaseExpired), err)
	}
	if m.Mode("no-such-rule") != schemas.ModeObserve {
		t.Error("unknown rule does not default to observe")
	}
	for _, bad := range []string{"lease-expired-not-revoked", "nope=enforce", "lease-expired-not-revoked=destroy"} {
		if _, err := ParseModes(bad); err == nil {
			t.Errorf("ParseModes(%q) accepted", bad)
		}
	}
}

func TestScope(t *testing.T) {
	t.Parallel()
	cases := []struct {
		scope           string
		db, mount, role string
		want            bool
	}{
		// Nothing configured: nothing enforced. "*" is everywhere.
		{"", "any", "postgres/", "x", false},
		{"*", "any", "postgres/", "x", true},
		{"*", "", "", "", true},
		{"db:test,*", "prod", "postgres/", "x", true},
		{"db:test", "test", "postgres/", "x", true},
		{"db:test", "prod", "postgres/", "x", false},
		{"db:stag*", "staging", "postgres/", "x", true},
		{"role:postgres/reporting", "test", "postgres/", "reporting", true},
		{"role:postgres/reporting", "test", "postgres/", "readonly", false},
		{"role:postgres/*", "test", "postgres", "readonly", true},
		{"role:readonly", "test", "other/", "readonly", true},
		{"db:test,role:postgres/reporting", "test", "postgres/", "readonly", false},
		{"db:test,role:postgres/reporting", "prod", "postgres/", "reporting", false},
		{"db:test,db:prod", "prod", "postgres/", "reporting", true},
	}
	for _, c := range cases {
		sc, err := ParseScope(c.scope)
		if err != nil {
			t.Fatalf("ParseScope(%q): %v", c.scope, err)
		}
		if got := sc.Contains(c.db, c.mount, c.role); got != c.want {
			t.Errorf("scope %q contains (%s, %s, %s) = %v, want %v", c.scope, c.db, c.mount, c.role, got, c.want)
		}
	}
	for _, bad := range []string{"test", "db:", "host:x", "db:[", "**", "everywhere"} {
		if _, err := ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) accepted", bad)
		}
	}
}

func TestScopeString(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                             "",
		" * ":                          "*",
		"db:b, db:a,db:a":              "db:a,db:b",
		"role:x/y,db:main,*":           "*",
		"database:main,role:/x/y/":     "db:main,role:x/y",
		"role:reporting,role:readonly": "role:readonly,role:reporting",
	} {
		sc, err := ParseScope(in)
		if err != nil {
			t.Fatalf("ParseScope(%q): %v", in, err)
		}
		if got := sc.String(); got != want {
			t.Errorf("ParseScope(%q).String() = %q, want %q", in, got, want)
		}
		again, err := ParseScope(sc.String())
		if err != nil || again.String() != want {
			t.Errorf("%q does not parse back: %q, %v", want, again.String(), err)
		}
	}
	sc, _ := ParseScope("db:a")
	wider, _ := ParseScope("role:x/y")
	if got := sc.Union(wider).String(); got != "db:a,role:x/y" {
		t.Errorf("union = %q", got)
	}
	if got := sc.Union(Everywhere()).String(); got != "*" {
		t.Errorf("union with everywhere = %q", got)
	}
}

func TestModesWith(t *testing.T) {
	t.Parallel()
	base, _ := ParseModes("orphan-role=approve")
	m, err := base.With("ghost-session=observe")
	if err != nil || m.Mode(RuleOrphanRole) != schemas.ModeApprove || m.Mode(RuleGhostSession) != schemas.ModeObserve {
		t.Fatalf("With = %v, %v", m, err)
	}
	if base.Mode(RuleGhostSession) != schemas.ModeEnforce {
		t.Error("With changed its receiver")
	}
	if err := ValidateModes(m); err != nil {
		t.Errorf("valid modes refused: %v", err)
	}
	for _, bad := range []string{"unaudited-issue=enforce", "mass-revocation=approve", "issuance-burst=enforce"} {
		m, err := base.With(bad)
		if err != nil {
			t.Fatal(err)
		}
		if ValidateModes(m) == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
