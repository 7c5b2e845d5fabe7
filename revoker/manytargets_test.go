package revoker_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/observer"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// manyTargets is how many target databases the scale-out tests spread
// their roles over, each a database of its own on the test server.
const manyTargets = 50

// many are the databases, made once for this test binary by the first test
// that needs them and dropped by TestMain, whatever the tests' outcome.
var many struct {
	once sync.Once
	dbs  *pgtest.Databases
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	many.dbs.Drop()
	os.Exit(code)
}

func manyDatabases(t *testing.T) *pgtest.Databases {
	t.Helper()
	many.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		many.dbs, many.err = pgtest.CreateDatabases(ctx, manyTargets)
		t.Logf("created %d databases in %s", manyTargets, time.Since(start).Round(time.Millisecond))
	})
	if many.err != nil {
		t.Fatal(many.err)
	}
	return many.dbs
}

// manyRig is leaseguard's view of the many databases: the targets as
// LEASEGUARD_TARGETS names them, opened as target.Open opens them, and a
// state store.
type manyRig struct {
	dbs     *pgtest.Databases
	names   []string // target names, t00 … t49; names[i] is dbs.Names[i]
	set     *target.Set
	st      *store.Store
	signer  *revoker.Signer
	maxConn int32
}

func newManyRig(t *testing.T, maxConns int32, idle time.Duration) *manyRig {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	r := &manyRig{dbs: manyDatabases(t), maxConn: maxConns}
	entries := make([]string, manyTargets)
	for i, db := range r.dbs.Names {
		r.names = append(r.names, fmt.Sprintf("t%02d", i))
		entries[i] = r.names[i] + "=" + r.dbs.URL(db)
	}
	targets, err := target.ParseTargets(strings.Join(entries, ","))
	if err != nil {
		t.Fatal(err)
	}
	routes, _ := target.ParseRoutes("*=t00")
	tc := target.Config{Targets: targets, Routes: routes, MaxConns: maxConns, MaxConnIdleTime: idle}
	if idle > 0 {
		tc.Conn.HealthCheckPeriod = idle / 2
	}
	if r.set, err = target.Open(ctx, tc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.set.Close)
	r.st = migratedStore(t, "lg_many")
	r.signer, _ = testKeys(t)
	return r
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// spreadRoles makes perTarget Vault-like users in each target, each owning
// a table there (so its drop has work to do in that database only), and
// returns them by target.
func (r *manyRig) spreadRoles(t *testing.T, perTarget int) map[string][]string {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	sfx := pgtest.Suffix()
	admin := pgtest.Pool(t)
	out := map[string][]string{}
	for i, name := range r.names {
		pool, _ := r.set.Pool(name)
		for j := range perTarget {
			user := fmt.Sprintf("v-lgt-%s-%02d-%d", sfx, i, j)
			id := pgx.Identifier{user}.Sanitize()
			table := pgx.Identifier{"owned_" + strings.ReplaceAll(user, "-", "_")}.Sanitize()
			if _, err := admin.Exec(ctx, "CREATE ROLE "+id+" LOGIN VALID UNTIL 'infinity'"); err != nil {
				t.Fatal(err)
			}
			pgtest.DropRoleAtCleanup(t, pool, user)
			if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (x int); ALTER TABLE "+table+" OWNER TO "+id); err != nil {
				t.Fatal(err)
			}
			out[name] = append(out[name], user)
		}
	}
	return out
}

// executor is a revoker over the rig's targets whose drops wait up to
// lockWait for a lock.
func (r *manyRig) executor(t *testing.T, lockWait time.Duration, workers int) *revoker.Executor {
	t.Helper()
	dropper, err := revoker.NewDropper(revoker.DropperConfig{LockTimeout: lockWait, StatementTimeout: 2 * lockWait})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := revoker.NewVerifier(r.signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	x, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: dropper, Verifier: verifier, Targets: r.set,
		State: r.st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"}, TargetWorkers: workers})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// drop is a signed drop command of user in the named target.
func (r *manyRig) drop(t *testing.T, name, user string) schemas.RevocationCommand {
	t.Helper()
	pool, _ := r.set.Pool(name)
	cmd := cmdtest.Drop(t, pool, name, user)
	if err := r.signer.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// dropped counts the recorded drops per target.
func (r *manyRig) dropped(ctx context.Context) (map[string]int, error) {
	rows, err := r.st.Pool().Query(ctx, `SELECT database, count(*)::int FROM revocations WHERE outcome = 'dropped' GROUP BY database`)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	var db string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&db, &n}, func() error { out[db] = n; return nil })
	return out, err
}

// holdTable takes a lock on table in database db of the test server, in an
// open transaction of the test's own session, until the returned release
// is called (and at cleanup).
func holdTable(t *testing.T, dbs *pgtest.Databases, db, table string) (release func()) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	conn, err := pgx.Connect(ctx, dbs.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Rollback(context.Background())
			_ = conn.Close(context.Background())
		})
	}
	t.Cleanup(release)
	return release
}

// TestDropsInOtherTargetsDoNotWait: one batch drops a user in each of the
// 50 targets; the first target's drop waits on a lock the test holds.
// Every other target's drop is carried out and recorded meanwhile, and the
// waiting one completes once the lock goes.
func TestDropsInOtherTargetsDoNotWait(t *testing.T) {
	r := newManyRig(t, target.DefaultMaxConns, 0)
	users := r.spreadRoles(t, 1)
	x := r.executor(t, time.Minute, revoker.DefaultTargetWorkers)
	cmds := make([]schemas.RevocationCommand, 0, manyTargets)
	for _, name := range r.names {
		cmds = append(cmds, r.drop(t, name, users[name][0]))
	}
	blocked := users[r.names[0]][0]
	release := holdTable(t, r.dbs, r.dbs.Names[0], pgx.Identifier{"owned_" + strings.ReplaceAll(blocked, "-", "_")}.Sanitize())

	done := make(chan []revoker.Executed, 1)
	start := time.Now()
	go func() { done <- x.Execute(context.Background(), cmds, nil) }()

	ctx := testCtx(t, time.Minute)
	got, err := pause.Until(ctx, 30*time.Second, func() (map[string]int, bool, error) {
		m, err := r.dropped(ctx)
		return m, err == nil && len(m) >= manyTargets-1, err
	})
	others := time.Since(start)
	release()
	if err != nil {
		t.Fatal(err)
	}
	if got[r.names[0]] != 0 {
		t.Errorf("the drop in %s completed although its lock was held", r.names[0])
	}
	if len(got) < manyTargets-1 {
		t.Errorf("while %s waited on a lock, %d of %d other targets' drops were recorded within 30 s", r.names[0], len(got), manyTargets-1)
	}
	t.Logf("drops in %d other targets recorded in %s while one waited", len(got), others.Round(time.Millisecond))
	select {
	case res := <-done:
		for _, e := range res {
			if e.Result.Outcome != schemas.OutcomeDropped {
				t.Errorf("%s in %s: %s %s", e.Command.DBUser, e.Command.Database, e.Result.Outcome, e.Result.Reason)
			}
		}
	case <-ctx.Done():
		t.Fatal("the batch did not end after the lock was released")
	}
}

// connSample is the most connections seen at once: of leaseguard's target
// pools per target database, in all of them, and of the state store (its
// pool and anything it hands out for good).
type connSample struct {
	mu       sync.Mutex
	perDB    map[string]int
	total    int
	state    int
	samples  int
	maxDB    string
	maxPerDB int
}

// sampleConns counts, every few milliseconds until ctx ends, the sessions
// of each of dbs named application_name "leaseguard" (the target pools'),
// and those named stateApp (the state store's).
func sampleConns(ctx context.Context, t *testing.T, dbs []string, stateApp string) *connSample {
	admin := pgtest.Pool(t)
	s := &connSample{perDB: map[string]int{}}
	go func() {
		for ctx.Err() == nil {
			rows, err := admin.Query(ctx, `SELECT coalesce(datname, ''), application_name, count(*)::int FROM pg_stat_activity
				WHERE (application_name = 'leaseguard' AND datname = ANY($1)) OR application_name = $2
				GROUP BY 1, 2`, dbs, stateApp)
			if err != nil {
				return
			}
			var db, app string
			var n int
			total, state := 0, 0
			s.mu.Lock()
			_, _ = pgx.ForEachRow(rows, []any{&db, &app, &n}, func() error {
				if app == stateApp {
					state += n
					return nil
				}
				total += n
				if n > s.perDB[db] {
					s.perDB[db] = n
				}
				if n > s.maxPerDB {
					s.maxPerDB, s.maxDB = n, db
				}
				return nil
			})
			s.total, s.state = max(s.total, total), max(s.state, state)
			s.samples++
			s.mu.Unlock()
			pause.For(ctx, 10*time.Millisecond, nil)
		}
	}()
	return s
}

// lastPasses reads each target's last committed observer pass.
func (r *manyRig) lastPasses(ctx context.Context) (map[string]time.Time, error) {
	rows, err := r.st.Pool().Query(ctx, `SELECT database, last_pass_at FROM observer_targets WHERE last_pass_at IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	var db string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&db, &at}, func() error { out[db] = at; return nil })
	return out, err
}

// coveredSince waits until every target has a pass committed after since,
// and returns how long that took and the targets still without one.
func (r *manyRig) coveredSince(ctx context.Context, since time.Time, within time.Duration) (time.Duration, []string, error) {
	// A read that fails (the shared server busy) is tried again; the last
	// error is told only if the targets were not all covered.
	var lastErr error
	missing, _ := pause.Until(ctx, within, func() ([]string, bool, error) {
		last, err := r.lastPasses(ctx)
		if err != nil {
			lastErr = err
			return r.names, false, nil
		}
		var miss []string
		for _, n := range r.names {
			if !last[n].After(since) {
				miss = append(miss, n)
			}
		}
		return miss, len(miss) == 0, nil
	})
	if len(missing) == 0 {
		lastErr = nil
	}
	return time.Since(since), missing, lastErr
}

// TestObserverCoversManyTargets: an observer of 50 targets on one server
// passes over each within its interval, round after round, while a
// revocation burst drops a user in every target; meanwhile no target has
// more connections than its pool's size, and the state store no more than
// its pool's and the one session the observer's duties hold their locks
// on. The targets' idle connections are closed within a second, so that
// the test leaves room on the shared test server.
func TestObserverCoversManyTargets(t *testing.T) {
	const interval, slack = observer.DefaultInterval, 5 * time.Second
	r := newManyRig(t, target.DefaultMaxConns, 500*time.Millisecond)
	stateApp := "lg-many-state-" + pgtest.Suffix()
	st, err := store.Open(testCtx(t, time.Minute), store.Config{URL: withParam(pgtest.URL(), "application_name", stateApp), Schema: r.st.Schema()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	r.st.Close() // the rig's own store: its connections would count against the shared server
	r.st = st
	users := r.spreadRoles(t, 2)

	ctx, cancel := context.WithCancel(context.Background())
	obs, err := observer.New(observer.Config{Interval: interval, Holder: "many"}, observer.Deps{Store: r.st, Targets: r.set})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	started := time.Now()
	go func() { defer close(ran); _ = obs.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	conns := sampleConns(ctx, t, r.dbs.Names, stateApp)

	// The first pass of each target records all of the server's roles
	// (cluster-wide: every target's pass reads the same pg_roles).
	_, missing, err := r.coveredSince(ctx, time.Time{}, 3*time.Minute)
	if len(missing) > 0 {
		t.Fatalf("first passes: %d targets never passed over within 3 minutes (%v)", len(missing), err)
	}
	t.Logf("first pass over every target within %s of the start", time.Since(started).Round(time.Millisecond))
	var cmds []schemas.RevocationCommand
	for _, name := range r.names {
		cmds = append(cmds, r.drop(t, name, users[name][1]))
	}
	burst := make(chan []revoker.Executed, 1)
	go func() { burst <- r.executor(t, 5*time.Second, 0).Execute(context.Background(), cmds, nil) }()
	for round := range 3 {
		took, missing, err := r.coveredSince(ctx, time.Now(), interval+slack)
		if len(missing) > 0 {
			t.Errorf("round %d: %d targets had no pass within the interval %s + %s: %v (%v)", round, len(missing), interval, slack, missing, err)
		}
		t.Logf("round %d: every target passed over within %s", round, took.Round(time.Millisecond))
	}
	for _, e := range <-burst {
		if e.Result.Outcome != schemas.OutcomeDropped {
			t.Errorf("%s in %s: %s %s", e.Command.DBUser, e.Command.Database, e.Result.Outcome, e.Result.Reason)
		}
	}

	conns.mu.Lock()
	defer conns.mu.Unlock()
	t.Logf("connections at %d targets (%d samples): at most %d in one target (%s), %d to all targets, %d to the state store",
		manyTargets, conns.samples, conns.maxPerDB, conns.maxDB, conns.total, conns.state)
	if conns.maxPerDB > int(r.maxConn) {
		t.Errorf("target %s had %d connections; its pool has %d", conns.maxDB, conns.maxPerDB, r.maxConn)
	}
	if conns.total > manyTargets*int(r.maxConn) {
		t.Errorf("%d connections to the targets; want at most %d × %d", conns.total, manyTargets, r.maxConn)
	}
	if conns.state > store.DefaultMaxConns+1 {
		t.Errorf("%d connections to the state store; want at most its pool's %d and the duties' lock session", conns.state, store.DefaultMaxConns)
	}
}

// withParam adds a query parameter to a connection URL.
func withParam(u, key, value string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + key + "=" + value
}
