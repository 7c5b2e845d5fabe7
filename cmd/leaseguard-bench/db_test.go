package main

import (
	"context"
	"io"
	"os"
	"testing"
	"time"
)

// Users granted through a group role (-expiry-grants=group) read the
// application tables through their membership, the tables' ACLs hold the
// group and not the users (so their size does not grow with the users, the
// cause of "row is too big" at 10,000 direct grants), and the sweep removes
// the group role with the users.
func TestGroupGrantsAgainstPostgres(t *testing.T) {
	ctx, b := testBench(t)

	grants, err := b.appSchema(ctx, "grp", 2)
	if err != nil {
		t.Fatal(err)
	}
	member, err := b.userGrants(ctx, b.admin, "grp", grantGroup, grants)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{b.userName("grp", time.Now()), b.userName("grp", time.Now()), b.userName("grp", time.Now())}
	if err := b.createUsers(ctx, names, newPassword(), func(int) time.Time { return time.Now().Add(time.Hour) }, member); err != nil {
		t.Fatal(err)
	}
	group := b.groupRoleName("grp")
	table := b.schemaName("grp") + ".t1"
	for _, u := range names {
		var reads, direct, isMember bool
		if err := b.admin.QueryRow(ctx, `SELECT has_table_privilege($1, $2, 'SELECT'),
			EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) e WHERE c.oid = $2::regclass AND e.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)),
			pg_has_role($1, $3, 'MEMBER')`, u, table, group).Scan(&reads, &direct, &isMember); err != nil {
			t.Fatal(err)
		}
		if !reads || direct || !isMember {
			t.Errorf("%s: reads %v, granted directly %v, member of %s %v; want true, false, true", u, reads, direct, group, isMember)
		}
	}
	var entries int
	if err := b.admin.QueryRow(ctx, "SELECT count(DISTINCT e.grantee) FROM pg_class c, aclexplode(c.relacl) e WHERE c.oid = $1::regclass", table).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	if entries != 2 { // the owner's and the group's
		t.Errorf("%s has ACL entries for %d roles, want 2 (owner and group)", table, entries)
	}

	b.sweep(ctx)
	left, err := b.rolesLeft(ctx, append(names, group))
	if err != nil || left != 0 {
		t.Errorf("after the sweep: %d of the users and the group left (%v)", left, err)
	}
}

// -expiry-grants=auto measures both ways where direct grants still fit
// and through a group role above; the first size's first way keeps the
// unsuffixed keys.
func TestExpiryCases(t *testing.T) {
	o := options{expirySizes: []int{1000, 10000}, expiryGrants: "auto"}
	got := o.expiryCases()
	want := []expiryCase{{1000, grantDirect, ""}, {1000, grantGroup, "_group"}, {10000, grantGroup, "_10k"}}
	if len(got) != len(want) {
		t.Fatalf("cases %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("case %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseExpiry("1000", "sometimes", false); err == nil {
		t.Error("-expiry-grants=sometimes accepted")
	}
}

// pollGone reports each name when it is first seen gone from pg_roles, not
// before it was dropped, and never a name that is still there.
func TestPollGoneSeesEachDropOnce(t *testing.T) {
	ctx, b := testBench(t)
	names := []string{b.userName("poll", time.Now()), b.userName("poll", time.Now()), b.userName("poll", time.Now())}
	if err := b.createUsers(ctx, names, newPassword(), func(int) time.Time { return time.Now().Add(time.Hour) }, nil); err != nil {
		t.Fatal(err)
	}
	drop := func(u string) time.Time {
		at := time.Now()
		if _, err := b.admin.Exec(ctx, "DROP ROLE "+ident(u)); err != nil {
			t.Fatal(err)
		}
		return at
	}
	start := time.Now()
	dropped0 := drop(names[0]) // gone before the first poll
	type polled struct {
		gone map[string]time.Time
		err  error
	}
	done := make(chan polled, 1)
	go func() {
		gone, err := b.pollGone(ctx, names, start, time.Now().Add(1500*time.Millisecond), 10*time.Millisecond)
		done <- polled{gone, err}
	}()
	dropped1 := drop(names[1]) // gone while it polls
	p := <-done
	if p.err != nil {
		t.Fatal(p.err)
	}
	if len(p.gone) != 2 {
		t.Fatalf("gone: %v; want %s and %s only (%s is still there)", p.gone, names[0], names[1], names[2])
	}
	for u, dropped := range map[string]time.Time{names[0]: dropped0, names[1]: dropped1} {
		at, ok := p.gone[u]
		switch {
		case !ok:
			t.Errorf("%s dropped and not seen gone", u)
		case at.Before(dropped):
			t.Errorf("%s seen gone at %s, before its drop at %s", u, at.Format(time.StampMicro), dropped.Format(time.StampMicro))
		}
	}
}

// testBench is a Bench connected to the test server (TEST_DATABASE_URL,
// else the local one), whose cleanups run when the test ends, and a
// context for the test.
func testBench(t *testing.T) (context.Context, *Bench) {
	t.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		url = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	b := &Bench{opt: options{dbURL: url}, stderr: io.Discard, sfx: newSuffix(), undo: &cleanups{}, results: newResults(), started: time.Now()}
	if err := b.connect(ctx); err != nil {
		t.Fatalf("no PostgreSQL at %s (make test starts it): %v", url, err)
	}
	t.Cleanup(func() { b.undo.run(io.Discard) })
	return ctx, b
}

// A wait's query is bounded by the wait's own deadline (and a little
// more), not only by the run's -timeout: a server that stops answering
// ends the wait with an error soon after it, instead of holding the run.
// The query here sleeps a minute; the wait's deadline is 100 ms away.
func TestWaitEndsWithItsDeadlineWhenTheServerIsSilent(t *testing.T) {
	ctx, b := testBench(t)
	silent := "(SELECT pg_sleep(60)) AS s"
	if _, err := b.pollCount(ctx, "SELECT count(*) FROM "+silent, 50*time.Millisecond, time.Now().Add(100*time.Millisecond),
		func(n int) bool { return n > 0 }); err == nil {
		t.Fatal("a query that did not answer within the wait's deadline ended the wait without an error")
	}
	n, err := b.pollCount(ctx, "SELECT 3", 50*time.Millisecond, time.Now().Add(time.Minute), func(n int) bool { return n == 3 })
	if err != nil || n != 3 {
		t.Fatalf("a count that is done: %d, %v", n, err)
	}
	if n, err := b.pollCount(ctx, "SELECT 0", 50*time.Millisecond, time.Now(), func(n int) bool { return n > 0 }); err != nil || n != 0 {
		t.Fatalf("a count not done at the deadline: %d, %v; want 0 and no error", n, err)
	}
}
