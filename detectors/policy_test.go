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
		{"", "any", "postgres/", "x", true},
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
	for _, bad := range []string{"test", "db:", "host:x", "db:["} {
		if _, err := ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) accepted", bad)
		}
	}
}
