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

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

const lease1 = "database/creds/app/AbCdEfGhIjKlMnOpQrStUv01"

func TestApplyLifecycle(t *testing.T) {
	t.Parallel()
	s := newStore(t)

	st := applyEvents(t, s, issued(lease1, at(0), withExpire(at(time.Hour), 3600)))
	if st.LeasesInserted != 1 || st.Events != 1 || st.Duplicates != 0 {
		t.Fatalf("issue stats = %+v", st)
	}
	l := mustLease(t, s, lease1)
	if l.State != StateActive || l.Mount != "database" || l.Role != "app" || l.Database != "main" ||
		l.DBUser != "v-token-app-Uv01" || l.DBUserHMAC || l.EntityID != "ent-1" {
		t.Fatalf("after issue: %+v", l)
	}
	if !l.IssuedAt.Equal(dbTime(at(0))) || !l.ExpireAt.Equal(dbTime(at(time.Hour))) ||
		l.ExpireSource != schemas.ExpireFromEvent || *l.TTLSeconds != 3600 || l.LastEvent != schemas.LeaseIssued {
		t.Fatalf("after issue: %+v", l)
	}

	st = applyEvents(t, s, event(schemas.LeaseRenewed, lease1, at(30*time.Minute), withExpire(at(90*time.Minute), 3600)))
	if st.LeasesUpdated != 1 {
		t.Fatalf("renew stats = %+v", st)
	}
	l = mustLease(t, s, lease1)
	if !l.RenewedAt.Equal(dbTime(at(30*time.Minute))) || !l.ExpireAt.Equal(dbTime(at(90*time.Minute))) ||
		l.LastEvent != schemas.LeaseRenewed || l.State != StateActive {
		t.Fatalf("after renew: %+v", l)
	}

	// An older renewal arriving late changes nothing that matters.
	st = applyEvents(t, s, event(schemas.LeaseRenewed, lease1, at(10*time.Minute)))
	if st.LeasesUnchanged != 1 {
		t.Fatalf("late renew stats = %+v", st)
	}

	applyEvents(t, s, event(schemas.LeaseRevoked, lease1, at(40*time.Minute)))
	l = mustLease(t, s, lease1)
	if l.State != StateRevoked || !l.RevokedAt.Equal(dbTime(at(40*time.Minute))) || l.RevokeMethod != schemas.RevokeByPath ||
		l.LastEvent != schemas.LeaseRevoked {
		t.Fatalf("after revoke: %+v", l)
	}

	// Nothing brings a revoked lease back.
	applyEvents(t, s, issued(lease1, at(-time.Minute)), event(schemas.LeaseRenewed, lease1, at(50*time.Minute)))
	if l = mustLease(t, s, lease1); l.State != StateRevoked {
		t.Fatalf("revived: %+v", l)
	}

	counts, err := s.CountLeases(context.Background())
	if err != nil || counts["revoked"] != 1 || len(counts) != 1 {
		t.Fatalf("CountLeases = %v, %v", counts, err)
	}
	if _, err := s.Lease(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing lease: %v", err)
	}
}

func TestApplySameBatchTwice(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	other := "database/creds/app/zzzzzzzzzzzzzzzzzzzzzz02"
	b := Batch{
		Leases: []schemas.LeaseEvent{
			issued(lease1, at(0), withExpire(at(time.Hour), 3600)),
			event(schemas.LeaseRenewed, lease1, at(time.Minute)),
			issued(other, at(2*time.Second)),
			event(schemas.LeaseExpired, other, at(3*time.Hour)),
			prefixRevoke("database/creds/app", at(2*time.Hour)),
			event(schemas.LeaseRevoked, "hmac-sha256:abcd", at(time.Minute), func(e *schemas.LeaseEvent) {
				e.LeaseIDHMAC, e.RevokeBy = true, schemas.RevokeByBody
			}),
		},
		Creds: []CredsRecord{
			{RequestID: "r1", Path: "database/creds/app", Mount: "database", Role: "app", Time: at(0)},
			{RequestID: "r1", Path: "database/creds/app", Time: at(time.Second), Response: true, LeaseID: lease1},
			{RequestID: "r2", Path: "database/creds/app", Time: at(0)},
		},
	}
	st := mustApply(t, s, b)
	if st.LeasesInserted != 2 || st.PrefixRevocations != 1 || st.HashedRevocations != 1 || st.Creds != 2 || st.RevokedByPrefix != 2 {
		t.Fatalf("first apply: %+v", st)
	}
	before := dumpAll(t, s)

	st = mustApply(t, s, b)
	if st.Duplicates != len(b.Leases) || st.LeasesInserted+st.LeasesUpdated+st.LeasesUnchanged != 0 || st.RevokedByPrefix != 0 {
		t.Fatalf("second apply: %+v", st)
	}
	after := dumpAll(t, s)
	for _, tb := range ledgerTables {
		if !slices.Equal(before[tb], after[tb]) {
			t.Errorf("%s changed:\nbefore %v\nafter  %v", tb, before[tb], after[tb])
		}
	}
	if l := mustLease(t, s, other); l.State != StateRevoked {
		// revoked by the prefix at 2h, before it expired at 3h: revoked wins.
		t.Errorf("other = %s, want revoked", l.State)
	}

	// The same event twice in one batch is one event.
	e := event(schemas.LeaseRenewed, lease1, at(5*time.Minute))
	st = applyEvents(t, s, e, e)
	if st.Duplicates != 1 || st.LeasesUpdated != 1 {
		t.Fatalf("repeat in batch: %+v", st)
	}
}

// scenario is a set of events for one lease whose every arrival order must
// end in the same row. {id} and {prefix} are filled per permutation so the
// permutations do not share rows.
type scenario struct {
	name   string
	events func(id, prefix string) []schemas.LeaseEvent
	state  LeaseState
}

var scenarios = []scenario{
	{"issue renew revoke expire", func(id, _ string) []schemas.LeaseEvent {
		return []schemas.LeaseEvent{
			issued(id, at(0), withExpire(at(time.Hour), 3600)),
			event(schemas.LeaseRenewed, id, at(20*time.Minute), withExpire(at(80*time.Minute), 3600)),
			event(schemas.LeaseRevoked, id, at(30*time.Minute)),
			event(schemas.LeaseExpired, id, at(2*time.Hour)),
		}
	}, StateRevoked},
	{"issue renew renew expire", func(id, _ string) []schemas.LeaseEvent {
		return []schemas.LeaseEvent{
			issued(id, at(0), withUser("hmac-sha256:u1", true)),
			event(schemas.LeaseRenewed, id, at(20*time.Minute), withExpire(at(80*time.Minute), 3600)),
			// A later renewal that shortened the lease: the latest word wins.
			event(schemas.LeaseRenewed, id, at(30*time.Minute), withExpire(at(40*time.Minute), 600)),
			event(schemas.LeaseExpired, id, at(40*time.Minute), withUser("v-plain-user", false)),
		}
	}, StateExpired},
	{"prefix after issue", func(id, prefix string) []schemas.LeaseEvent {
		return []schemas.LeaseEvent{
			issued(id, at(0)),
			event(schemas.LeaseRenewed, id, at(10*time.Minute)),
			prefixRevoke(prefix, at(20*time.Minute)),
			event(schemas.LeaseRevoked, id, at(30*time.Minute), func(e *schemas.LeaseEvent) { e.RevokeBy = schemas.RevokeByBody }),
		}
	}, StateRevoked},
	{"prefix before issue", func(id, prefix string) []schemas.LeaseEvent {
		return []schemas.LeaseEvent{
			prefixRevoke(prefix, at(-time.Minute)),
			issued(id, at(0)),
			event(schemas.LeaseRenewed, id, at(10*time.Minute)),
		}
	}, StateActive},
	{"renewal seen before the prefix, issue after it", func(id, prefix string) []schemas.LeaseEvent {
		// Issued before the prefix revocation, renewed after it (during the
		// revocation's run): covered once the issue is known.
		return []schemas.LeaseEvent{
			issued(id, at(0)),
			prefixRevoke(prefix, at(10*time.Minute)),
			event(schemas.LeaseRenewed, id, at(11*time.Minute)),
		}
	}, StateRevoked},
}

func TestApplyOrderDoesNotMatter(t *testing.T) {
	t.Parallel()
	for si, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			ctx := context.Background()
			n := len(sc.events("x", "x"))
			var want string
			for pi, perm := range permutations(n) {
				for _, oneBatch := range []bool{false, true} {
					prefix := fmt.Sprintf("database/creds/s%dp%d%v", si, pi, oneBatch)
					id := prefix + "/AbCdEfGhIjKlMnOpQrSt0001"
					evs := sc.events(id, prefix)
					var ordered []schemas.LeaseEvent
					for _, i := range perm {
						ordered = append(ordered, evs[i])
					}
					if oneBatch {
						applyEvents(t, s, ordered...)
					} else {
						for _, e := range ordered {
							applyEvents(t, s, e)
						}
					}
					// Applying everything again changes nothing.
					applyEvents(t, s, ordered...)
					got := strings.ReplaceAll(folded(t, s, id), prefix, "PREFIX")
					l, err := s.Lease(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					if l.State != sc.state {
						t.Fatalf("order %v: state %s, want %s", perm, l.State, sc.state)
					}
					if want == "" {
						want = got
					} else if got != want {
						t.Fatalf("order %v (one batch %v):\n got %s\nwant %s", perm, oneBatch, got, want)
					}
				}
			}
		})
	}
}

func TestRevokedBeforeIssued(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	st := applyEvents(t, s, event(schemas.LeaseRevoked, lease1, at(time.Hour)))
	if st.LeasesInserted != 1 {
		t.Fatalf("stats = %+v", st)
	}
	l := mustLease(t, s, lease1)
	if l.State != StateRevoked || l.IssuedAt != nil || l.DBUser != "" {
		t.Fatalf("revoked first: %+v", l)
	}
	applyEvents(t, s, issued(lease1, at(0)))
	l = mustLease(t, s, lease1)
	if l.State != StateRevoked || !l.IssuedAt.Equal(dbTime(at(0))) || l.DBUser == "" || l.EntityID != "ent-1" ||
		l.LastEvent != schemas.LeaseRevoked {
		t.Fatalf("then issued: %+v", l)
	}
}

func TestPrefixRevocation(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	id := func(role, suffix string) string { return "database/creds/" + role + "/" + suffix }
	before := id("app", "issuedBeforeRevocation01")
	later := id("app", "issuedAfterRevocation001")
	sibling := id("app_ro", "siblingRoleSameStart001")
	exact := "database/creds/app"                   // a lease id equal to the prefix
	pattern := id("a_%", "literalPatternChars0001") // '_' and '%' are not wildcards
	lookalike := id("aX%", "wouldMatchWithLike00001")
	otherNS := id("app", "otherNamespaceLease0001.ns2")

	applyEvents(t, s,
		issued(before, at(0)),
		issued(sibling, at(0)),
		issued(pattern, at(0)),
		issued(lookalike, at(0)),
		issued(otherNS, at(0), func(e *schemas.LeaseEvent) { e.Namespace = "ns2" }),
	)
	st := applyEvents(t, s,
		prefixRevoke("database/creds/app", at(time.Hour), func(e *schemas.LeaseEvent) { e.Namespace = "root" }),
		prefixRevoke("database/creds/a_%/", at(time.Hour)),
	)
	if st.PrefixRevocations != 2 || st.RevokedByPrefix != 2 {
		t.Fatalf("stats = %+v", st)
	}
	// Arriving after the revocation: one issued before it, one after it.
	applyEvents(t, s,
		issued(id("app", "lateButIssuedBefore00001"), at(30*time.Minute)),
		issued(later, at(2*time.Hour)),
		event(schemas.LeaseRenewed, exact, at(time.Minute)),
	)
	for lid, want := range map[string]LeaseState{
		before:                                StateRevoked,
		id("app", "lateButIssuedBefore00001"): StateRevoked,
		later:                                 StateActive,
		sibling:                               StateActive,
		exact:                                 StateRevoked,
		pattern:                               StateRevoked,
		lookalike:                             StateActive,
		otherNS:                               StateActive,
	} {
		l := mustLease(t, s, lid)
		if l.State != want {
			t.Errorf("%s: %s, want %s", lid, l.State, want)
		}
		if want == StateRevoked && (l.RevokeMethod != schemas.RevokeByPrefix || !l.RevokedAt.Equal(dbTime(at(time.Hour)))) {
			t.Errorf("%s: revoked %v by %q", lid, l.RevokedAt, l.RevokeMethod)
		}
	}
}

func TestDBUserHMACThenPlain(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a := "database/creds/app/hmacThenPlain000000001"
	b := "database/creds/app/plainThenHmac000000001"
	applyEvents(t, s,
		issued(a, at(0), withUser("hmac-sha256:aaaa", true)),
		issued(b, at(0), withUser("v-token-app-plain-b", false)),
	)
	// Another producer names the user in plain / as an HMAC.
	applyEvents(t, s,
		event(schemas.LeaseRenewed, a, at(time.Minute), withUser("v-token-app-plain-a", false)),
		event(schemas.LeaseRenewed, b, at(time.Minute), withUser("hmac-sha256:bbbb", true)),
	)
	for lid, want := range map[string]string{a: "v-token-app-plain-a", b: "v-token-app-plain-b"} {
		l := mustLease(t, s, lid)
		if l.DBUser != want || l.DBUserHMAC {
			t.Errorf("%s: db_user %q hmac %v, want %q plain", lid, l.DBUser, l.DBUserHMAC, want)
		}
	}
	ls, err := s.LeasesByUser(context.Background(), "main", "v-token-app-plain-a")
	if err != nil || len(ls) != 1 || ls[0].LeaseID != a {
		t.Fatalf("LeasesByUser = %+v, %v", ls, err)
	}
}

func TestApplyCredsBothOrders(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	req := func(id string) CredsRecord {
		return CredsRecord{RequestID: id, Path: "database/creds/app", Mount: "database", Role: "app", Namespace: "root",
			EntityID: "ent-1", TokenAccessor: "hmac-sha256:acc", DisplayName: "token", RemoteAddress: "10.0.0.1", Time: at(0)}
	}
	resp := func(id string, failed bool) CredsRecord {
		c := req(id)
		c.Time, c.Response, c.Error = at(time.Second), true, failed
		if !failed {
			c.LeaseID = "database/creds/app/" + id
		}
		return c
	}
	mustApply(t, s, Batch{Creds: []CredsRecord{req("ab")}})
	mustApply(t, s, Batch{Creds: []CredsRecord{resp("ab", false)}})
	mustApply(t, s, Batch{Creds: []CredsRecord{resp("ba", false)}})
	mustApply(t, s, Batch{Creds: []CredsRecord{req("ba")}})
	mustApply(t, s, Batch{Creds: []CredsRecord{resp("same", true), req("same")}})
	mustApply(t, s, Batch{Creds: []CredsRecord{req("lost"), req("new")}})

	rows := dump(t, s, "creds_requests")
	norm := func(id string) string {
		var out string
		err := s.Pool().QueryRow(ctx, "SELECT (to_jsonb(c) - 'request_id' - 'lease_id')::text FROM creds_requests c WHERE request_id = $1", id).Scan(&out)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if norm("ab") != norm("ba") {
		t.Fatalf("orders differ:\n%s\n%s", norm("ab"), norm("ba"))
	}
	if len(rows) != 5 {
		t.Fatalf("rows = %v", rows)
	}

	un, err := s.UnansweredCredsRequests(ctx, at(time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range un {
		ids = append(ids, c.RequestID)
		if c.Mount != "database" || !c.Time.Equal(dbTime(at(0))) {
			t.Errorf("unanswered %+v", c)
		}
	}
	if !slices.Equal(ids, []string{"lost", "new"}) {
		t.Fatalf("unanswered = %v", ids)
	}
	if un, _ := s.UnansweredCredsRequests(ctx, at(0), 10); len(un) != 0 {
		t.Fatalf("unanswered before their time: %+v", un)
	}
}

func TestApplyRejectsInvalid(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	bad := issued(lease1, at(0))
	bad.LeasePrefix = "database/"
	_, err := s.Apply(context.Background(), Batch{Leases: []schemas.LeaseEvent{issued("database/creds/app/x", at(0)), bad}})
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Field != "Leases" || inv.Index != 1 {
		t.Fatalf("err = %v", err)
	}
	_, err = s.Apply(context.Background(), Batch{Creds: []CredsRecord{{RequestID: "r"}}})
	if !errors.As(err, &inv) || inv.Field != "Creds" {
		t.Fatalf("err = %v", err)
	}
	for _, tb := range ledgerTables {
		if rows := dump(t, s, tb); len(rows) != 0 {
			t.Errorf("%s written: %v", tb, rows)
		}
	}
}

// Concurrent batches over the same leases, some revoking by prefix, end as
// the same batches applied one after another.
func TestApplyConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var batches []Batch
	for w := range 6 {
		var evs []schemas.LeaseEvent
		for i := range 40 {
			id := fmt.Sprintf("database/creds/r%d/lease%020d", i%5, i)
			when := at(time.Duration(w*40+i) * time.Second)
			switch w {
			case 0, 4:
				evs = append(evs, issued(id, when))
			case 1, 5:
				evs = append(evs, event(schemas.LeaseRenewed, id, when))
			default:
				evs = append(evs, event(schemas.LeaseExpired, id, when.Add(time.Hour)))
			}
		}
		if w >= 2 {
			evs = append(evs, prefixRevoke(fmt.Sprintf("database/creds/r%d", w), at(3*time.Minute)))
		}
		batches = append(batches, Batch{Leases: evs})
	}

	serial := newStore(t)
	for _, b := range batches {
		mustApply(t, serial, b)
	}
	concurrent := openStore(t, pgtest.Schema(t, "store_conc"))
	// Open the connections first so the batches really overlap.
	var conns []*pgxpool.Conn
	for range batches {
		c, err := concurrent.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(batches))
	for i, b := range batches {
		wg.Go(func() {
			<-start
			_, errs[i] = concurrent.Apply(ctx, b)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	strip := func(s *Store) []string {
		rows, err := s.Pool().Query(ctx, "SELECT (to_jsonb(x) - 'created_at' - 'updated_at')::text FROM leases x ORDER BY lease_id")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var r string
			if err := rows.Scan(&r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	a, b := strip(serial), strip(concurrent)
	if !slices.Equal(a, b) {
		t.Fatalf("concurrent differs from serial:\n%v\n%v", a, b)
	}
}

func TestEventID(t *testing.T) {
	t.Parallel()
	e := issued(lease1, at(0))
	id := EventID(&e)
	if len(id) != 64 {
		t.Fatalf("id %q", id)
	}
	same := e
	same.Source.Offset = 99
	same.DBUser = "someone-else"
	if EventID(&same) != id {
		t.Error("id depends on source or payload")
	}
	local := e
	local.EventTime = e.EventTime.In(time.FixedZone("x", 3600))
	if EventID(&local) != id {
		t.Error("id depends on the time zone")
	}
	for name, mod := range map[string]func(*schemas.LeaseEvent){
		"kind":    func(e *schemas.LeaseEvent) { e.Kind = schemas.LeaseRenewed },
		"request": func(e *schemas.LeaseEvent) { e.VaultRequestID = "other" },
		"time":    func(e *schemas.LeaseEvent) { e.EventTime = e.EventTime.Add(time.Nanosecond) },
		"prefix":  func(e *schemas.LeaseEvent) { e.LeasePrefix, e.LeaseID = e.LeaseID, "" },
	} {
		c := e
		mod(&c)
		if EventID(&c) == id {
			t.Errorf("%s does not change the id", name)
		}
	}
}

// A lease inserted by another transaction between Apply's read and its
// insert: Apply retries and merges into that row.
func TestApplyInsertRace(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	other, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, "INSERT INTO leases (lease_id, state, first_seen_at) VALUES ($1, 'active', $2)", lease1, at(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	var xid string
	if err := other.QueryRow(ctx, "SELECT pg_current_xact_id()::xid::text").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var st ApplyStats
	go func() {
		var err error
		st, err = s.Apply(ctx, Batch{Leases: []schemas.LeaseEvent{issued(lease1, at(0))}})
		done <- err
	}()
	// Wait until Apply's insert waits for the other transaction.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting bool
		err := s.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'transactionid' AND transactionid::text = $1 AND NOT granted)`, xid).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Apply never waited for the concurrent insert")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("apply: %v", err)
	}
	if st.LeasesUpdated != 1 || st.LeasesInserted != 0 {
		t.Errorf("stats = %+v", st)
	}
	l := mustLease(t, s, lease1)
	if l.DBUser == "" || !l.IssuedAt.Equal(dbTime(at(0))) || !l.FirstSeenAt.Equal(dbTime(at(-time.Hour))) {
		t.Fatalf("not merged into the concurrent row: %+v", l)
	}
}
