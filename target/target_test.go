package target

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

func TestParseTargetsAndRoutes(t *testing.T) {
	t.Parallel()
	ts, err := ParseTargets("main=postgres://u@db1:5432/app?sslmode=require, analytics=postgres://u@db2/an")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "main" || ts[1].URL != "postgres://u@db2/an" {
		t.Fatalf("targets = %+v", ts)
	}
	for _, bad := range []string{"main", "=postgres://x/y", "bad name=postgres://x/y", "x=::not a url::"} {
		if _, err := ParseTargets(bad); err == nil {
			t.Errorf("ParseTargets(%q) accepted", bad)
		}
	}
	rs, err := ParseRoutes("postgres/reporting=analytics, postgres/=main,*=main")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Targets: ts, Routes: rs}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ mount, role, want string }{
		{"postgres/", "reporting", "analytics"},
		{"postgres", "readonly", "main"},
		{"other/", "x", "main"},
	}
	for _, c := range cases {
		got, ok := route(cfg, c.mount, c.role)
		if !ok || got != c.want {
			t.Errorf("route(%q,%q) = %q,%v want %q", c.mount, c.role, got, ok, c.want)
		}
	}
	if _, err := ParseRoutes("[=main"); err == nil {
		t.Error("bad glob accepted")
	}
	if err := (Config{Targets: ts, Routes: []Route{{"x", "nope"}}}).Validate(); err == nil {
		t.Error("route to unknown target accepted")
	}
	if err := (Config{Targets: ts}).Validate(); err == nil {
		t.Error("two targets without routes accepted")
	}
	single := Config{Targets: ts[:1]}
	if got, ok := route(single, "anything/", "r"); !ok || got != "main" {
		t.Errorf("single target route = %q,%v", got, ok)
	}
	noMatch := Config{Targets: ts, Routes: []Route{{"postgres", "main"}}}
	if _, ok := route(noMatch, "mysql", "r"); ok {
		t.Error("unrouted mount was routed")
	}
}

func TestDefaultName(t *testing.T) {
	t.Parallel()
	if got := DefaultName("postgres://u@h:5432/test?sslmode=disable"); got != "test" {
		t.Errorf("got %q", got)
	}
	if got := DefaultName("::"); got != "default" {
		t.Errorf("got %q", got)
	}
}

func TestValidUntil(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := pgtest.Pool(t)
	sfx := pgtest.Suffix()
	finite, infinite, none := "v-tt-fin-"+sfx, "v-tt-inf-"+sfx, "v-tt-none-"+sfx
	pgtest.DropRoleAtCleanup(t, admin, finite, infinite, none)
	until := time.Now().Add(10 * time.Minute).UTC().Truncate(time.Second)
	for _, q := range []string{
		"CREATE ROLE " + pgx.Identifier{finite}.Sanitize() + " LOGIN VALID UNTIL '" + until.Format(time.RFC3339) + "'",
		"CREATE ROLE " + pgx.Identifier{infinite}.Sanitize() + " LOGIN VALID UNTIL 'infinity'",
		"CREATE ROLE " + pgx.Identifier{none}.Sanitize() + " LOGIN",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	set, err := Open(ctx, Config{Targets: []Target{{Name: "t", URL: pgtest.URL()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	got, err := set.ValidUntil(ctx, "t", []string{finite, infinite, none, "v-absent-" + sfx})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[finite].Equal(until) {
		t.Fatalf("ValidUntil = %v, want only %s at %s", got, finite, until)
	}
	if _, err := set.ValidUntil(ctx, "nope", nil); err == nil {
		t.Error("unknown target accepted")
	}
}

// TestPoolSizeAndIdleTimeout: each target's pool has the configured size
// and idle timeout, or the documented defaults.
func TestPoolSizeAndIdleTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts := []Target{{Name: "a", URL: pgtest.URL()}, {Name: "b", URL: pgtest.URL()}}
	routes := []Route{{Pattern: "*", Target: "a"}}
	for _, c := range []struct {
		cfg  Config
		size int32
		idle time.Duration
	}{
		{Config{Targets: ts, Routes: routes}, 4, time.Minute},
		{Config{Targets: ts, Routes: routes, MaxConns: 2, MaxConnIdleTime: 3 * time.Second}, 2, 3 * time.Second},
	} {
		s, err := Open(ctx, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range s.Names() {
			p, _ := s.Pool(n)
			if got := p.Config(); got.MaxConns != c.size || got.MaxConnIdleTime != c.idle {
				t.Errorf("%s: pool of %d, idle %s; want %d, %s", n, got.MaxConns, got.MaxConnIdleTime, c.size, c.idle)
			}
		}
		s.Close()
	}
}
