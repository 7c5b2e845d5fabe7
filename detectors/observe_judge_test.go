package detectors

import (
	"regexp"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// The observer rules' edges, judged at an injected time: no database, no
// sleeping.

var (
	obsNow   = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	coverage = obsNow.Add(-24 * time.Hour)
)

func testCfg() DBRulesConfig {
	return DBRulesConfig{ManagedPattern: regexp.MustCompile(`^v-`)}.WithDefaults()
}

func tptr(t time.Time) *time.Time { return &t }

func ago(d time.Duration) time.Time { return obsNow.Add(-d) }

// role is a managed role first seen at first, created after createdAfter
// (nil: there at the observer's first pass).
func role(name string, first time.Time, createdAfter *time.Time) observed.Role {
	return observed.Role{DBRole: observed.DBRole{OID: 16500, Name: name, CanLogin: true}, FirstSeenAt: first, CreatedAfter: createdAfter}
}

func live(name string, start time.Time) observed.Session {
	return observed.Session{DBSession: observed.DBSession{PID: 4711, BackendStart: start, UserOID: 16500, UserName: name,
		ClientAddr: "10.1.2.3", ClientPort: 50000, ApplicationName: "psql", BackendType: "client backend"}, FirstSeenAt: start}
}

func revoked(user string, at time.Time) store.Lease {
	return store.Lease{LeaseID: "postgres/creds/app/" + user, State: store.StateRevoked, Database: "main", DBUser: user,
		Mount: "postgres", Role: "app", RevokedAt: &at, LastEventAt: &at}
}

func expired(user string, at time.Time) store.Lease {
	return store.Lease{LeaseID: "postgres/creds/app/" + user, State: store.StateExpired, Database: "main", DBUser: user,
		Mount: "postgres", Role: "app", ExpireAt: &at}
}

func active(user string) store.Lease {
	return store.Lease{LeaseID: "postgres/creds/app/" + user + "-2", State: store.StateActive, Database: "main", DBUser: user}
}

func exactLink(ls ...store.Lease) leaseLink { return leaseLink{kind: linkExact, leases: ls} }

func TestJudgeReuseAfterRevoke(t *testing.T) {
	t.Parallel()
	cfg := testCfg() // grace 10s, skew 30s
	r := role("v-a", ago(time.Hour), nil)
	sess := []observed.Session{live("v-a", ago(30*time.Minute))}
	cases := []struct {
		name     string
		c        roleCase
		want     bool
		enforce  bool
		started  string
		endSrc   string
		validTil *time.Time
	}{
		{name: "revoked just over grace", c: roleCase{role: r, sessions: sess, link: exactLink(revoked("v-a", ago(10*time.Second)))},
			want: true, enforce: true, started: "before_lease_end", endSrc: "revoked_at"},
		{name: "revoked just under grace", c: roleCase{role: r, sessions: sess, link: exactLink(revoked("v-a", ago(10*time.Second-time.Millisecond)))}},
		{name: "no live session", c: roleCase{role: r, link: exactLink(revoked("v-a", ago(time.Hour)))}},
		// Vault's clock is a few seconds ahead of ours: the revocation is
		// stamped in our future. The grace counts from Vault's time, so
		// the finding waits those seconds more, and comes.
		{name: "vault clock ahead, within grace", c: roleCase{role: r, sessions: sess, link: exactLink(revoked("v-a", obsNow.Add(3*time.Second)))}},
		{name: "vault clock behind", c: roleCase{role: r, sessions: sess, link: exactLink(revoked("v-a", ago(13*time.Second)))},
			want: true, enforce: true, started: "before_lease_end", endSrc: "revoked_at"},
		// Out of order: the session was seen first, while the lease was
		// active; the ledger learned of the revocation later, with a
		// revocation time before the session's start (the credential was
		// used after its revocation, the role still being there).
		{name: "session started after the revocation", c: roleCase{role: r, sessions: []observed.Session{live("v-a", ago(time.Minute))},
			link: exactLink(revoked("v-a", ago(5*time.Minute)))}, want: true, enforce: true, started: "after_lease_end", endSrc: "revoked_at"},
		{name: "session start within clock skew of the revocation", c: roleCase{role: r, sessions: []observed.Session{live("v-a", ago(5*time.Minute-20*time.Second))},
			link: exactLink(revoked("v-a", ago(5*time.Minute)))}, want: true, enforce: true, started: "uncertain", endSrc: "revoked_at"},
		{name: "a newer active lease names the user", c: roleCase{role: r, sessions: sess, link: exactLink(active("v-a"), revoked("v-a", ago(time.Hour)))}},
		{name: "expired over grace", c: roleCase{role: r, sessions: sess, link: exactLink(expired("v-a", ago(11*time.Second)))},
			want: true, enforce: true, started: "before_lease_end", endSrc: "expire_at"},
		{name: "expired but the database still honours the password", validTil: tptr(obsNow.Add(time.Second)),
			c: roleCase{role: r, sessions: sess, link: exactLink(expired("v-a", ago(time.Hour)))}},
		{name: "probable link: finding, no enforcement", c: roleCase{role: r, sessions: sess,
			link: leaseLink{kind: linkProbable, leases: []store.Lease{revoked("hmac-sha256:aa", ago(time.Minute))}}},
			want: true, started: "before_lease_end", endSrc: "revoked_at"},
		{name: "no lease", c: roleCase{role: r, sessions: sess, link: leaseLink{kind: linkNone}}},
		{name: "ambiguous", c: roleCase{role: r, sessions: sess, link: leaseLink{kind: linkAmbiguous, candidates: 2}}},
	}
	for _, c := range cases {
		if c.validTil != nil {
			c.c.role.ValidUntil = c.validTil
		}
		v := judgeReuseAfterRevoke("main", c.c, obsNow, cfg)
		if (v != nil) != c.want {
			t.Errorf("%s: finding = %v, want %v", c.name, v != nil, c.want)
			continue
		}
		if v == nil {
			continue
		}
		if v.mayEnforce != c.enforce || v.severity != schemas.SeverityCritical || v.rule != RuleReuseAfterRevoke {
			t.Errorf("%s: verdict = %+v", c.name, v)
		}
		ss := v.facts["sessions"].([]map[string]any)
		if ss[0]["started"] != c.started || v.facts["lease_end_source"] != c.endSrc {
			t.Errorf("%s: started %v, end source %v", c.name, ss[0]["started"], v.facts["lease_end_source"])
		}
		if c.enforce != (v.lease != nil) {
			t.Errorf("%s: lease %v", c.name, v.lease)
		}
	}
	// The id is stable over passes and distinct per lease.
	a := judgeReuseAfterRevoke("main", cases[0].c, obsNow, cfg)
	b := judgeReuseAfterRevoke("main", cases[0].c, obsNow.Add(time.Minute), cfg)
	if a.id != b.id {
		t.Error("finding id depends on the pass time")
	}
}

func TestJudgeReuseUnknownLease(t *testing.T) {
	t.Parallel()
	cfg := testCfg() // grace 1m
	sess := []observed.Session{live("v-a", ago(30*time.Second))}
	created := tptr(ago(2 * time.Hour))
	cases := []struct {
		name string
		c    roleCase
		want bool
	}{
		{"first seen just over grace", roleCase{role: role("v-a", ago(time.Minute), created), sessions: sess, link: leaseLink{kind: linkNone}}, true},
		{"first seen just under grace", roleCase{role: role("v-a", ago(time.Minute-time.Millisecond), created), sessions: sess, link: leaseLink{kind: linkNone}}, false},
		{"there at the observer's first pass", roleCase{role: role("v-a", ago(time.Hour), nil), sessions: sess, link: leaseLink{kind: linkNone}}, false},
		{"created after a pass before the watermark", roleCase{role: role("v-a", ago(time.Hour), tptr(coverage.Add(-time.Second))), sessions: sess, link: leaseLink{kind: linkNone}}, false},
		{"created after a pass at the watermark", roleCase{role: role("v-a", ago(time.Hour), tptr(coverage)), sessions: sess, link: leaseLink{kind: linkNone}}, true},
		{"no session", roleCase{role: role("v-a", ago(time.Hour), created), link: leaseLink{kind: linkNone}}, false},
		{"a lease names it (even revoked)", roleCase{role: role("v-a", ago(time.Hour), created), sessions: sess, link: exactLink(revoked("v-a", ago(time.Hour)))}, false},
		{"probable hmac lease", roleCase{role: role("v-a", ago(time.Hour), created), sessions: sess, link: leaseLink{kind: linkProbable, leases: []store.Lease{active("x")}}}, false},
		{"ambiguous hmac leases", roleCase{role: role("v-a", ago(time.Hour), created), sessions: sess, link: leaseLink{kind: linkAmbiguous, candidates: 1}}, false},
	}
	for _, c := range cases {
		v := judgeReuseUnknownLease("main", c.c, coverage, obsNow, cfg)
		if (v != nil) != c.want {
			t.Errorf("%s: finding = %v, want %v", c.name, v != nil, c.want)
		}
		if v != nil && (!v.mayEnforce || v.severity != schemas.SeverityCritical || v.lease != nil) {
			t.Errorf("%s: verdict = %+v", c.name, v)
		}
	}
}

func TestJudgeOrphanRole(t *testing.T) {
	t.Parallel()
	cfg := testCfg() // grace 2m
	created := tptr(ago(3 * time.Hour))
	cases := []struct {
		name     string
		c        roleCase
		want     bool
		reason   string
		severity schemas.Severity
		enforce  bool
	}{
		{"lease revoked just over grace", roleCase{role: role("v-a", ago(time.Hour), nil), link: exactLink(revoked("v-a", ago(2*time.Minute)))},
			true, "lease_ended", schemas.SeverityHigh, true},
		{"lease revoked just under grace", roleCase{role: role("v-a", ago(time.Hour), nil), link: exactLink(revoked("v-a", ago(2*time.Minute-time.Millisecond)))},
			false, "", "", false},
		// Vault stamps the revocation 5s in our future: the grace runs from
		// its stamp.
		{"vault clock ahead", roleCase{role: role("v-a", ago(time.Hour), nil), link: exactLink(revoked("v-a", ago(2*time.Minute-5*time.Second)))},
			false, "", "", false},
		{"lease expired, role still valid in the database", roleCase{role: observed.Role{DBRole: observed.DBRole{OID: 1, Name: "v-a",
			ValidUntil: tptr(obsNow.Add(time.Minute))}, FirstSeenAt: ago(time.Hour)}, link: exactLink(expired("v-a", ago(time.Hour)))}, false, "", "", false},
		{"lease active", roleCase{role: role("v-a", ago(time.Hour), nil), link: exactLink(active("v-a"))}, false, "", "", false},
		{"no lease, created after the watermark, just over grace", roleCase{role: role("v-a", ago(2*time.Minute), created), link: leaseLink{kind: linkNone}},
			true, "no_lease", schemas.SeverityMedium, true},
		{"no lease, just under grace", roleCase{role: role("v-a", ago(2*time.Minute-time.Millisecond), created), link: leaseLink{kind: linkNone}},
			false, "", "", false},
		{"no lease, there at the first pass", roleCase{role: role("v-a", ago(48*time.Hour), nil), link: leaseLink{kind: linkNone}}, false, "", "", false},
		{"no lease, may predate the watermark", roleCase{role: role("v-a", ago(time.Hour), tptr(coverage.Add(-time.Minute))), link: leaseLink{kind: linkNone}},
			false, "", "", false},
		{"ambiguous", roleCase{role: role("v-a", ago(time.Hour), created), link: leaseLink{kind: linkAmbiguous, candidates: 3}}, false, "", "", false},
		{"probable ended lease: finding, no enforcement", roleCase{role: role("v-a", ago(time.Hour), created),
			link: leaseLink{kind: linkProbable, leases: []store.Lease{revoked("hmac-sha256:bb", ago(time.Hour))}}}, true, "lease_ended", schemas.SeverityHigh, false},
	}
	for _, c := range cases {
		v := judgeOrphanRole("main", c.c, coverage, obsNow, cfg)
		if (v != nil) != c.want {
			t.Errorf("%s: finding = %v, want %v", c.name, v != nil, c.want)
			continue
		}
		if v != nil && (v.facts["reason"] != c.reason || v.severity != c.severity || v.mayEnforce != c.enforce) {
			t.Errorf("%s: verdict reason %v severity %s enforce %v", c.name, v.facts["reason"], v.severity, v.mayEnforce)
		}
	}
}

func TestJudgeGhost(t *testing.T) {
	t.Parallel()
	ghost := func(former, backend string) observed.Session {
		s := live("", ago(time.Minute))
		s.Ghost, s.FormerUser, s.BackendType, s.UserName = true, former, backend, ""
		s.GhostSince = tptr(obsNow)
		return s
	}
	known := testCfg()
	cases := []struct {
		name    string
		s       observed.Session
		cfg     DBRulesConfig
		enforce bool
	}{
		{"managed former user", ghost("v-token-app-x", "client backend"), known, true},
		{"unmanaged former user", ghost("alice", "client backend"), known, false},
		// A role dropped before leaseguard saw it may be anyone's.
		{"unknown former user", ghost("", "client backend"), known, false},
		{"not a client backend", ghost("v-token-app-x", "parallel worker"), known, false},
		{"unknown, background worker", ghost("", "background worker"), known, false},
	}
	for _, c := range cases {
		v := judgeGhost("main", c.s, nil, time.Now(), c.cfg)
		if v.mayEnforce != c.enforce || v.severity != schemas.SeverityCritical || v.ghost == nil || v.dbUser != c.s.FormerUser {
			t.Errorf("%s: verdict enforce %v (%s), user %q", c.name, v.mayEnforce, v.whyNot, v.dbUser)
		}
		if c.s.FormerUser != "" && v.facts["former_user"] != c.s.FormerUser {
			t.Errorf("%s: facts %v", c.name, v.facts)
		}
	}
	// The id names the session by pid and backend_start: a reused pid is
	// another session.
	a := judgeGhost("main", ghost("v-x", "client backend"), nil, time.Now(), known)
	s := ghost("v-x", "client backend")
	s.BackendStart = s.BackendStart.Add(time.Microsecond)
	if b := judgeGhost("main", s, nil, time.Now(), known); a.id == b.id {
		t.Error("same finding id for a reused pid")
	}
}

func TestVaultTemplateLink(t *testing.T) {
	t.Parallel()
	issued := time.Unix(1795634613, 400_000_000).UTC()
	name := "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613"
	skew := 30 * time.Second
	cases := []struct {
		name, user, display, role string
		issued                    time.Time
		want                      bool
	}{
		{"fits", name, "userpass-alice", "reporting", issued, true},
		{"vault clock 29s apart", name, "userpass-alice", "reporting", issued.Add(29 * time.Second), true},
		{"31s apart", name, "userpass-alice", "reporting", issued.Add(31 * time.Second), false},
		{"other role", name, "userpass-alice", "readonly", issued, false},
		{"other display name", name, "token", "reporting", issued, false},
		{"short random part", "v-userpass-reportin-k1B0cLsSUMN-1795634613", "userpass-alice", "reporting", issued, false},
		{"not base62", "v-userpass-reportin-k1B0cLsSUMNiuIuIw_GR-1795634613", "userpass-alice", "reporting", issued, false},
		{"no time", "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-", "userpass-alice", "reporting", issued, false},
		{"no display name in the ledger", name, "", "reporting", issued, false},
	}
	for _, c := range cases {
		if _, got := fitsVaultTemplate(c.user, c.display, c.role, c.issued, skew); got != c.want {
			t.Errorf("%s: fits = %v, want %v", c.name, got, c.want)
		}
	}

	// Linking: the creation window of a role seen at 20:00:05, absent at
	// 20:00:00, with the leases' issue times around it.
	first := time.Unix(1795634618, 0).UTC()
	r := observed.Role{DBRole: observed.DBRole{Name: name}, FirstSeenAt: first, CreatedAfter: tptr(first.Add(-5 * time.Second))}
	hm := func(display, role string, at time.Time) store.Lease {
		return store.Lease{LeaseID: "postgres/creds/" + role + "/" + display, DBUser: "hmac-sha256:00", DBUserHMAC: true,
			DisplayName: display, Role: role, IssuedAt: tptr(at)}
	}
	link := func(r observed.Role, exact []store.Lease, hmac ...store.Lease) leaseLink {
		return linkRoles([]observed.Role{r}, map[string][]store.Lease{r.Name: exact}, hmac, skew).of(r.Name)
	}
	if l := link(r, nil, hm("token", "other", issued), hm("userpass-alice", "reporting", issued)); l.kind != linkProbable ||
		l.leases[0].Role != "reporting" {
		t.Errorf("probable link = %+v", l)
	}
	if l := link(r, nil, hm("token", "other", issued)); l.kind != linkAmbiguous || l.candidates != 1 {
		t.Errorf("ambiguous link = %+v", l)
	}
	if l := link(r, nil, hm("userpass-alice", "reporting", issued.Add(-time.Hour))); l.kind != linkNone {
		t.Errorf("lease outside the window = %+v", l)
	}
	if l := link(observed.Role{DBRole: r.DBRole, FirstSeenAt: first}, nil, hm("userpass-alice", "reporting", issued)); l.kind != linkNone {
		t.Errorf("baseline role = %+v (no creation window)", l)
	}
	// A lease another role fits is not a candidate for a role created in
	// the same window: one lease, one user.
	other := observed.Role{DBRole: observed.DBRole{Name: "v-evil"}, FirstSeenAt: first, CreatedAfter: r.CreatedAfter}
	links := linkRoles([]observed.Role{r, other}, nil, []store.Lease{hm("userpass-alice", "reporting", issued)}, skew)
	if links.of(name).kind != linkProbable || links.of("v-evil").kind != linkNone {
		t.Errorf("links = %+v", links)
	}
	if l := link(r, []store.Lease{active(name)}); l.kind != linkExact {
		t.Errorf("exact link = %+v", l)
	}
}
