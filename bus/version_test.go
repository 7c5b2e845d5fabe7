package bus

import "testing"

func TestOlder(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"2.9.10", "2.10.0", true},
		{"2.10.0", "2.10.0", false},
		{"2.10.0-beta.1", "2.10.0", false},
		{"2.15.2", "2.10.0", false},
		{"v2.9.25", "2.10.0", true},
		{"3.0.0", "2.10.0", false},
		{"1.4.1", "2.10.0", true},
	} {
		if got := older(c.a, c.b); got != c.want {
			t.Errorf("older(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
