package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

type fakeReader struct {
	validUntil func(ctx context.Context, database string, users []string) (map[string]time.Time, error)
}

func (f fakeReader) ValidUntil(ctx context.Context, database string, users []string) (map[string]time.Time, error) {
	return f.validUntil(ctx, database, users)
}

var _ ValidUntilReader = fakeReader{}

func onDB(db string) func(*schemas.LeaseEvent) {
	return func(e *schemas.LeaseEvent) { e.Database = db }
}

func withRole(role string) func(*schemas.LeaseEvent) {
	return func(e *schemas.LeaseEvent) { e.Role = role }
}

func TestResolveExpiry(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	id := func(n string) string { return "database/creds/app/" + n }
	var (
		fromPG    = id("fromPgValidUntil00000001")
		dbDown    = id("databaseReaderFails00001")
		hmacUser  = id("hmacUserRoleDefault00001")
		invisible = id("userNotInPgRoles00000001")
		fromEvent = id("expiryFromEvent000000001")
		revoked   = id("revokedNoExpiry000000001")
	)
	applyEvents(t, s,
		issued(fromPG, at(0), onDB("db1"), withUser("u1", false)),
		issued(dbDown, at(0), onDB("db2"), withUser("u2", false)),
		issued(hmacUser, at(0), onDB("db1"), withUser("hmac-sha256:u3", true), withRole("ro")),
		issued(invisible, at(0), onDB("db1"), withUser("u4", false), withRole("nottl")),
		issued(fromEvent, at(0), onDB("db1"), withUser("u5", false), withExpire(at(time.Hour), 3600)),
		issued(revoked, at(0), onDB("db1"), withUser("u6", false)),
		event(schemas.LeaseRevoked, revoked, at(time.Minute)),
	)
	ttls := RoleTTLs{"database/app": 2 * time.Hour, "ro": 30 * time.Minute, "app": time.Minute}

	var mu sync.Mutex
	var calls []string
	db2Fails := true
	pg := map[string]map[string]time.Time{
		"db1": {"u1": at(time.Hour + 5*time.Second), "u5": at(99 * time.Hour), "u6": at(99 * time.Hour)},
		"db2": {"u2": at(3 * time.Hour)},
	}
	r := fakeReader{validUntil: func(_ context.Context, db string, users []string) (map[string]time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, db+":"+strings.Join(users, ","))
		if db == "db2" && db2Fails {
			return nil, errors.New("connection refused")
		}
		out := map[string]time.Time{}
		for _, u := range users {
			if v, ok := pg[db][u]; ok {
				out[u] = v
			}
		}
		return out, nil
	}}

	now1 := at(10 * time.Minute)
	n, err := s.ResolveExpiry(ctx, r, ttls, now1, 100)
	if err == nil || !strings.Contains(err.Error(), `"db2"`) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want the db2 reader error", err)
	}
	// The lease revoked per the audit log is resolved too: a revocation
	// seen only on the bus does not take it off the expiry path.
	if n != 4 {
		t.Fatalf("resolved = %d, want 4", n)
	}
	if want := []string{"db1:u1,u4,u6", "db2:u2"}; !slices.Equal(calls, want) {
		t.Fatalf("reader calls = %v, want %v", calls, want)
	}
	check := func(leaseID string, exp *time.Time, src schemas.ExpireSource, checked *time.Time) {
		t.Helper()
		l := mustLease(t, s, leaseID)
		if !sameValue(l.ExpireAt, dbTimePtr(exp)) || l.ExpireSource != src || !sameValue(l.ExpireCheckedAt, dbTimePtr(checked)) {
			t.Errorf("%s: expire %v (%q) checked %v; want %v (%q) checked %v", leaseID,
				l.ExpireAt, l.ExpireSource, l.ExpireCheckedAt, exp, src, checked)
		}
	}
	check(fromPG, tp(at(time.Hour+5*time.Second)), schemas.ExpireFromValidUntil, &now1)
	// Reader failed: the role default for now, to be read again.
	check(dbDown, tp(at(2*time.Hour)), schemas.ExpireFromRoleDefault, nil)
	check(hmacUser, tp(at(30*time.Minute)), schemas.ExpireFromRoleDefault, &now1)
	check(invisible, nil, "", nil)
	check(fromEvent, tp(at(time.Hour)), schemas.ExpireFromEvent, nil)
	check(revoked, tp(at(99*time.Hour)), schemas.ExpireFromValidUntil, &now1)
	if l := mustLease(t, s, invisible); !sameValue(l.ExpireAttemptAt, dbTimePtr(&now1)) {
		t.Errorf("invisible: attempt %v", l.ExpireAttemptAt)
	}

	// Renewals make pg and role default expiries stale; db2 is back.
	applyEvents(t, s,
		event(schemas.LeaseRenewed, fromPG, at(20*time.Minute)),
		event(schemas.LeaseRenewed, hmacUser, at(20*time.Minute)),
	)
	check(fromPG, tp(at(time.Hour+5*time.Second)), schemas.ExpireFromValidUntil, nil)
	check(hmacUser, tp(at(30*time.Minute)), schemas.ExpireFromRoleDefault, nil)
	mu.Lock()
	db2Fails, calls = false, nil
	pg["db1"]["u1"] = at(2*time.Hour + 5*time.Second)
	mu.Unlock()

	now2 := at(25 * time.Minute)
	n, err = s.ResolveExpiry(ctx, r, ttls, now2, 100)
	if err != nil || n != 3 {
		t.Fatalf("second resolve = %d, %v; want 3, nil", n, err)
	}
	if want := []string{"db1:u1,u4", "db2:u2"}; !slices.Equal(calls, want) {
		t.Fatalf("reader calls = %v, want %v", calls, want)
	}
	check(fromPG, tp(at(2*time.Hour+5*time.Second)), schemas.ExpireFromValidUntil, &now2)
	check(dbDown, tp(at(3*time.Hour)), schemas.ExpireFromValidUntil, &now2)
	check(hmacUser, tp(at(50*time.Minute)), schemas.ExpireFromRoleDefault, &now2)
	check(invisible, nil, "", nil)

	// A renewed lease whose user vanished keeps the later of its stale value
	// and the role default, and is not read again.
	applyEvents(t, s, event(schemas.LeaseRenewed, fromPG, at(30*time.Minute)))
	mu.Lock()
	delete(pg["db1"], "u1")
	mu.Unlock()
	now3 := at(31 * time.Minute)
	if _, err := s.ResolveExpiry(ctx, r, ttls, now3, 100); err != nil {
		t.Fatal(err)
	}
	check(fromPG, tp(at(150*time.Minute)), schemas.ExpireFromRoleDefault, &now3)

	// An expiry from an event always beats one read from pg.
	applyEvents(t, s, event(schemas.LeaseRenewed, dbDown, at(40*time.Minute), withExpire(at(100*time.Minute), 3600)))
	check(dbDown, tp(at(100*time.Minute)), schemas.ExpireFromEvent, nil)
}

// Leases that cannot be resolved go to the back of the queue.
func TestResolveExpiryRoundRobin(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	var evs []schemas.LeaseEvent
	for i := range 3 {
		evs = append(evs, issued(fmt.Sprintf("database/creds/app/a-unresolvable-%d", i), at(0), withUser(fmt.Sprintf("gone%d", i), false)))
	}
	last := "database/creds/app/z-resolvable"
	evs = append(evs, issued(last, at(0), withUser("here", false)))
	applyEvents(t, s, evs...)
	r := fakeReader{validUntil: func(_ context.Context, _ string, users []string) (map[string]time.Time, error) {
		out := map[string]time.Time{}
		if slices.Contains(users, "here") {
			out["here"] = at(time.Hour)
		}
		return out, nil
	}}
	total := 0
	for i := range 3 {
		n, err := s.ResolveExpiry(ctx, r, nil, at(time.Duration(i)*time.Minute), 2)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != 1 {
		t.Fatalf("resolved %d, want 1", total)
	}
	if l := mustLease(t, s, last); l.ExpireSource != schemas.ExpireFromValidUntil {
		t.Fatalf("starved: %+v", l)
	}
}

// pgRolesReader reads rolvaliduntil from pg_roles, leaving out NULL and
// infinity.
type pgRolesReader struct{ pool *pgxpool.Pool }

func (r pgRolesReader) ValidUntil(ctx context.Context, _ string, users []string) (map[string]time.Time, error) {
	rows, err := r.pool.Query(ctx, `SELECT rolname, rolvaliduntil FROM pg_roles
		WHERE rolname = ANY($1) AND rolvaliduntil IS NOT NULL AND rolvaliduntil <> 'infinity'`, users)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	var name string
	var vu time.Time
	_, err = pgx.ForEachRow(rows, []any{&name, &vu}, func() error { out[name] = vu; return nil })
	return out, err
}

func TestResolveExpiryPGRoles(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	sfx := pgtest.Suffix()
	role := func(n string) string { return "v-test-" + sfx + "-" + n }
	pgtest.DropRoleAtCleanup(t, s.Pool(), role("dated"), role("infinite"), role("null"))
	for _, stmt := range []string{
		"CREATE ROLE " + pgx.Identifier{role("dated")}.Sanitize() + " VALID UNTIL '2031-01-02 03:04:05.678+00'",
		"CREATE ROLE " + pgx.Identifier{role("infinite")}.Sanitize() + " VALID UNTIL 'infinity'",
		"CREATE ROLE " + pgx.Identifier{role("null")}.Sanitize(),
	} {
		if _, err := s.Pool().Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	lease := func(n string) string { return "database/creds/app/" + sfx + n }
	var evs []schemas.LeaseEvent
	for _, n := range []string{"dated", "infinite", "null", "absent"} {
		evs = append(evs, issued(lease(n), at(0), withUser(role(n), false)))
	}
	applyEvents(t, s, evs...)

	r := pgRolesReader{pool: s.Pool()}
	n, err := s.ResolveExpiry(ctx, r, nil, at(time.Minute), 10)
	if err != nil || n != 1 {
		t.Fatalf("resolve = %d, %v; want 1", n, err)
	}
	l := mustLease(t, s, lease("dated"))
	want := time.Date(2031, 1, 2, 3, 4, 5, 678e6, time.UTC)
	if l.ExpireSource != schemas.ExpireFromValidUntil || !l.ExpireAt.Equal(want) {
		t.Fatalf("dated: %v (%s), want %v", l.ExpireAt, l.ExpireSource, want)
	}
	for _, n := range []string{"infinite", "null", "absent"} {
		if l := mustLease(t, s, lease(n)); l.ExpireAt != nil {
			t.Errorf("%s: expire %v, want none", n, l.ExpireAt)
		}
	}
	// With a role default they fall back to it.
	n, err = s.ResolveExpiry(ctx, r, RoleTTLs{"app": time.Hour}, at(2*time.Minute), 10)
	if err != nil || n != 3 {
		t.Fatalf("resolve with ttl = %d, %v; want 3", n, err)
	}
	for _, n := range []string{"infinite", "null", "absent"} {
		if l := mustLease(t, s, lease(n)); l.ExpireSource != schemas.ExpireFromRoleDefault || !l.ExpireAt.Equal(dbTime(at(time.Hour))) {
			t.Errorf("%s: %v (%s)", n, l.ExpireAt, l.ExpireSource)
		}
	}
}

func TestRoleTTLsLookup(t *testing.T) {
	t.Parallel()
	ttls := RoleTTLs{"database/app": time.Hour, "app": time.Minute, "ro": 2 * time.Minute, "zero": 0}
	for _, tc := range []struct {
		mount, role string
		want        time.Duration
		ok          bool
	}{
		{"database", "app", time.Hour, true},
		{"database/", "app", time.Hour, true},
		{"other", "app", time.Minute, true},
		{"database", "ro", 2 * time.Minute, true},
		{"database", "zero", 0, false},
		{"database", "", 0, false},
		{"database", "missing", 0, false},
	} {
		d, ok := ttls.lookup(tc.mount, tc.role)
		if d != tc.want || ok != tc.ok {
			t.Errorf("lookup(%q, %q) = %v, %v", tc.mount, tc.role, d, ok)
		}
	}
}

// A lease attempted without result waits ExpiryRetryAfter before the next
// attempt, unless a new event for it arrives first.
func TestResolveExpiryBackoff(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	lease := "database/creds/app/notYetInPgRoles000000001"
	applyEvents(t, s, issued(lease, at(0), onDB("db1"), withUser("late", false), withRole("nottl")))
	var mu sync.Mutex
	var asked []string
	visible := false
	r := fakeReader{validUntil: func(_ context.Context, _ string, users []string) (map[string]time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, users...)
		if visible {
			return map[string]time.Time{"late": at(time.Hour)}, nil
		}
		return map[string]time.Time{}, nil
	}}
	pass := func(now time.Time) (asks int) {
		t.Helper()
		mu.Lock()
		asked = nil
		mu.Unlock()
		if _, err := s.ResolveExpiry(ctx, r, nil, now, 10); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return len(asked)
	}
	if n := pass(at(time.Minute)); n != 1 {
		t.Fatalf("first pass asked for %d users, want 1", n)
	}
	if n := pass(at(time.Minute + ExpiryRetryAfter - time.Second)); n != 0 {
		t.Fatalf("pass within the retry delay asked for %d users, want 0", n)
	}
	if n := pass(at(time.Minute + ExpiryRetryAfter)); n != 1 {
		t.Fatalf("pass after the retry delay asked for %d users, want 1", n)
	}
	// A renewal makes it due at once, and now the user is visible.
	applyEvents(t, s, event(schemas.LeaseRenewed, lease, at(2*time.Minute)))
	mu.Lock()
	visible = true
	mu.Unlock()
	if n := pass(at(2*time.Minute + time.Second)); n != 1 {
		t.Fatalf("pass after a renewal asked for %d users, want 1", n)
	}
	if l := mustLease(t, s, lease); l.ExpireSource != schemas.ExpireFromValidUntil || !sameValue(l.ExpireAt, dbTimePtr(tp(at(time.Hour)))) {
		t.Fatalf("expiry %v (%q), want %v from pg_valid_until", l.ExpireAt, l.ExpireSource, at(time.Hour))
	}
}

// An HMAC'd lease linked to its plain user is due for expiry at once,
// inside the retry delay of its last attempt, and its user is read.
func TestResolveExpiryAfterHMACLink(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	lease := "database/creds/app/hashedUserLinkedLater001"
	sum := "hmac-sha256:" + strings.Repeat("ab", 32)
	applyEvents(t, s, issued(lease, at(0), onDB("db1"), withUser(sum, true), withRole("nottl")))
	var mu sync.Mutex
	var asked []string
	r := fakeReader{validUntil: func(_ context.Context, _ string, users []string) (map[string]time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, users...)
		return map[string]time.Time{"linked-user": at(time.Hour)}, nil
	}}
	if _, err := s.ResolveExpiry(ctx, r, nil, at(time.Minute), 10); err != nil {
		t.Fatal(err)
	}
	if l := mustLease(t, s, lease); l.ExpireAttemptAt == nil || l.ExpireAt != nil {
		t.Fatalf("after the first pass: attempt %v, expiry %v; want an attempt and no expiry", l.ExpireAttemptAt, l.ExpireAt)
	}
	// vaultlink links the lease to its plain user (its SQL, the link rows,
	// is its own): the ledger's part is naming the lease's user.
	b := &pgx.Batch{}
	QueueNameHashedUsers(b, []string{lease}, []string{"linked-user"}, []string{sum})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	n, err := s.ResolveExpiry(ctx, r, nil, at(time.Minute+2*time.Second), 10)
	if err != nil || n != 1 {
		t.Fatalf("pass after the link resolved %d, %v; want 1", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(asked, []string{"linked-user"}) {
		t.Fatalf("reader asked for %v, want [linked-user]", asked)
	}
	if l := mustLease(t, s, lease); l.ExpireSource != schemas.ExpireFromValidUntil || l.DBUser != "linked-user" {
		t.Fatalf("lease %s: user %q, expiry %v (%q)", lease, l.DBUser, l.ExpireAt, l.ExpireSource)
	}
}
