package revoker

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

// testTarget is the target name tests pass as database.
const testTarget = "main"

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestDropper(t *testing.T, cfg DropperConfig) *Dropper {
	t.Helper()
	d, err := NewDropper(cfg)
	if err != nil {
		t.Fatalf("NewDropper: %v", err)
	}
	return d
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// createRole creates a role (dropped at cleanup if still there).
func createRole(t *testing.T, pool *pgxpool.Pool, name, options string) {
	t.Helper()
	pgtest.DropRoleAtCleanup(t, pool, name)
	mustExec(t, pool, "CREATE ROLE "+ident(name)+" "+options)
}

// createVaultUser creates a role the way Vault's PostgreSQL plugin does,
// with SELECT on the tables of schema.
func createVaultUser(t *testing.T, pool *pgxpool.Pool, name, schema string) {
	t.Helper()
	createRole(t, pool, name, "LOGIN PASSWORD 'x' VALID UNTIL '2030-11-24 00:00:00+00'")
	mustExec(t, pool, "GRANT USAGE ON SCHEMA "+ident(schema)+" TO "+ident(name))
	// Named tables: GRANT … ON ALL TABLES IN SCHEMA scans pg_class, slow on
	// a test server whose catalogs churn.
	mustExec(t, pool, "GRANT SELECT ON "+ident(schema)+".accounts, "+ident(schema)+".orders TO "+ident(name))
}

// schemaWithTables makes a test schema holding two small tables.
func schemaWithTables(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	s := pgtest.Schema(t, "lg_revoker")
	mustExec(t, pool, "CREATE TABLE "+ident(s)+".accounts (id int PRIMARY KEY, name text)")
	mustExec(t, pool, "CREATE TABLE "+ident(s)+".orders (id int PRIMARY KEY, account int)")
	return s
}

func roleState(t *testing.T, pool *pgxpool.Pool, name string) (exists, canLogin bool) {
	t.Helper()
	err := pool.QueryRow(context.Background(),
		"SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", name).Scan(&canLogin)
	if err == pgx.ErrNoRows {
		return false, false
	}
	if err != nil {
		t.Fatalf("read pg_roles: %v", err)
	}
	return true, canLogin
}

func currentUser(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var u string
	if err := pool.QueryRow(context.Background(), "SELECT current_user::text").Scan(&u); err != nil {
		t.Fatal(err)
	}
	return u
}

// connectAs opens a real session as role (trust authentication).
func connectAs(t *testing.T, role string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %q: %v", role, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// poolAs opens a pool logged in as role, with extra run-time parameters.
func poolAs(t *testing.T, role string, params map[string]string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User = role
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// command is a drop command for name in testTarget, as an Issuer makes it
// (the target's identity, the role's oid as it is now).
func command(t testing.TB, pool *pgxpool.Pool, name string) schemas.RevocationCommand {
	t.Helper()
	return cmdtest.Drop(t, pool, testTarget, name)
}

// stepClock returns a clock that moves one second per reading.
func stepClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func wantOutcome(t *testing.T, res schemas.RevocationResult, want schemas.Outcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("outcome %q (guard %q, reason %q, sqlstate %q), want %q", res.Outcome, res.Guard, res.Reason, res.SQLState, want)
	}
}

func TestDropVaultUser(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	name := "v-token-readonly-" + pgtest.Suffix() + "-1795634398"
	createVaultUser(t, pool, name, schema)
	d := newTestDropper(t, DropperConfig{Clock: stepClock()})

	res := d.Drop(ctx, pool, testTarget, command(t, pool, name))
	wantOutcome(t, res, schemas.OutcomeDropped)
	id := `"` + name + `"`
	me := currentUser(t, pool)
	wantStmts := []string{
		"ALTER ROLE " + id + " NOLOGIN",
		"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
		"REASSIGN OWNED BY " + id + " TO " + `"` + me + `"`,
		"DROP OWNED BY " + id,
		"DROP ROLE IF EXISTS " + id,
	}
	if !slices.Equal(res.Statements, wantStmts) {
		t.Errorf("statements:\n%s\nwant:\n%s", strings.Join(res.Statements, "\n"), strings.Join(wantStmts, "\n"))
	}
	if !res.RoleAbsentAfter || res.SessionsLeftAfter != 0 || res.SessionsTerminated != 0 {
		t.Errorf("after: absent %v, left %d, terminated %d", res.RoleAbsentAfter, res.SessionsLeftAfter, res.SessionsTerminated)
	}
	if res.ReassignedTo != me || res.CommandID != "cmd-"+name || res.DBUser != name || res.Database != testTarget {
		t.Errorf("result fields: %+v", res)
	}
	if !res.FinishedAt.After(res.StartedAt) {
		t.Errorf("started %v, finished %v", res.StartedAt, res.FinishedAt)
	}
	if exists, _ := roleState(t, pool, name); exists {
		t.Fatal("role still exists")
	}

	again := d.Drop(ctx, pool, testTarget, command(t, pool, name))
	wantOutcome(t, again, schemas.OutcomeAlreadyAbsent)
	if len(again.Statements) != 0 || !again.RoleAbsentAfter || again.SessionsLeftAfter != 0 {
		t.Errorf("second drop: %+v", again)
	}
}

func TestDropOwnerWithLiveSession(t *testing.T) {
	t.Parallel()
	for _, explicit := range []bool{false, true} {
		t.Run(fmt.Sprintf("explicit_reassign=%v", explicit), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			pool := pgtest.Pool(t)
			schema := schemaWithTables(t, pool)
			sfx := pgtest.Suffix()
			name := "v-approle-owner-" + sfx + "-1795634398"
			createVaultUser(t, pool, name, schema)
			mustExec(t, pool, "GRANT CREATE ON SCHEMA "+ident(schema)+" TO "+ident(name))
			cfg := DropperConfig{LockTimeout: 3 * time.Second}
			keeper := currentUser(t, pool)
			if explicit {
				keeper = "lg_keeper_" + sfx
				createRole(t, pool, keeper, "NOLOGIN")
				cfg.ReassignTo = keeper
			}
			d := newTestDropper(t, cfg)

			// A live session that owns a table and holds a lock on it
			// in an open transaction.
			conn := connectAs(t, name)
			table := ident(schema) + ".mine"
			if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (x int); INSERT INTO "+table+" VALUES (1), (2)"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "BEGIN; SELECT count(*) FROM "+table); err != nil {
				t.Fatal(err)
			}
			second := connectAs(t, name)

			res := d.Drop(ctx, pool, testTarget, command(t, pool, name))
			wantOutcome(t, res, schemas.OutcomeDropped)
			if res.SessionsTerminated < 2 || res.SessionsLeftAfter != 0 || !res.RoleAbsentAfter {
				t.Errorf("terminated %d, left %d, absent %v", res.SessionsTerminated, res.SessionsLeftAfter, res.RoleAbsentAfter)
			}
			if res.ReassignedTo != keeper {
				t.Errorf("reassigned to %q, want %q", res.ReassignedTo, keeper)
			}
			for _, c := range []*pgx.Conn{conn, second} {
				if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
					t.Error("a session of the dropped role still answers")
				}
			}
			var owner string
			var rows int
			if err := pool.QueryRow(ctx, "SELECT tableowner::text FROM pg_tables WHERE schemaname = $1 AND tablename = 'mine'", schema).Scan(&owner); err != nil {
				t.Fatal(err)
			}
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if owner != keeper || rows != 2 {
				t.Errorf("table owner %q with %d rows, want %q with 2", owner, rows, keeper)
			}
		})
	}
}

func TestDropWeirdName(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	name := `v-we"ird name-ü-` + pgtest.Suffix()
	createVaultUser(t, pool, name, schema)
	// A neighbour whose name differs only by what bad quoting would lose.
	neighbour := strings.ReplaceAll(name, `"`, "")
	createVaultUser(t, pool, neighbour, schema)
	d := newTestDropper(t, DropperConfig{})

	res := d.Drop(ctx, pool, testTarget, command(t, pool, name))
	wantOutcome(t, res, schemas.OutcomeDropped)
	quoted := `"v-we""ird name-ü-` + name[len(`v-we"ird name-ü-`):] + `"`
	if res.Statements[0] != "ALTER ROLE "+quoted+" NOLOGIN" || res.Statements[4] != "DROP ROLE IF EXISTS "+quoted {
		t.Errorf("statements not quoted as expected:\n%s", strings.Join(res.Statements, "\n"))
	}
	if exists, _ := roleState(t, pool, name); exists {
		t.Error("role still exists")
	}
	if exists, canLogin := roleState(t, pool, neighbour); !exists || !canLogin {
		t.Errorf("neighbour %q touched: exists %v, login %v", neighbour, exists, canLogin)
	}
}

func TestDropBatch(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	sfx := pgtest.Suffix()
	protected := "v-batch-" + sfx + "-protected"
	absent := "v-batch-" + sfx + "-absent"
	createVaultUser(t, pool, protected, schema)
	d := newTestDropper(t, DropperConfig{Guard: GuardConfig{Protected: []string{protected}}})

	var cmds []schemas.RevocationCommand
	var names []string
	for i := range 48 {
		n := fmt.Sprintf("v-batch-%s-%02d", sfx, i)
		createVaultUser(t, pool, n, schema)
		names = append(names, n)
		cmds = append(cmds, command(t, pool, n))
	}
	// Sessions on three of them.
	for _, n := range names[:3] {
		connectAs(t, n)
	}
	cmds = append(cmds, command(t, pool, protected), command(t, pool, absent))
	dup := command(t, pool, names[5])
	dup.ID = "cmd-duplicate"
	cmds = append(cmds, dup)

	results := d.DropBatch(ctx, pool, testTarget, cmds, nil)
	if len(results) != len(cmds) {
		t.Fatalf("%d results for %d commands", len(results), len(cmds))
	}
	for i, res := range results {
		if res.CommandID != cmds[i].ID {
			t.Fatalf("result %d is for %q, want %q", i, res.CommandID, cmds[i].ID)
		}
	}
	me := currentUser(t, pool)
	// Each result lists the batch's statements as they apply to its own
	// role: the role's name in place of the batch's list.
	wantStatements := func(n string) []string {
		id := ident(n)
		return []string{
			"ALTER ROLE " + id + " NOLOGIN",
			terminateManySQL,
			"REASSIGN OWNED BY " + id + " TO " + ident(me),
			"REVOKE ALL ON SCHEMA " + ident(schema) + " FROM " + id,
			"REVOKE ALL ON TABLE " + pgx.Identifier{schema, "accounts"}.Sanitize() + ", " +
				pgx.Identifier{schema, "orders"}.Sanitize() + " FROM " + id,
			"DROP OWNED BY " + id,
			"DROP ROLE IF EXISTS " + id,
		}
	}
	for i, n := range names {
		res := results[i]
		wantOutcome(t, res, schemas.OutcomeDropped)
		if !res.RoleAbsentAfter || res.SessionsLeftAfter != 0 {
			t.Errorf("%s: absent %v, left %d", n, res.RoleAbsentAfter, res.SessionsLeftAfter)
		}
		wantTerminated := 0
		if i < 3 {
			wantTerminated = 1
		}
		if res.SessionsTerminated != wantTerminated {
			t.Errorf("%s: terminated %d, want %d", n, res.SessionsTerminated, wantTerminated)
		}
		if want := wantStatements(n); !slices.Equal(res.Statements, want) {
			t.Errorf("%s: statements\n%s\nwant\n%s", n, strings.Join(res.Statements, "\n"), strings.Join(want, "\n"))
		}
		if exists, _ := roleState(t, pool, n); exists {
			t.Errorf("%s still exists", n)
		}
	}
	p := results[48]
	wantOutcome(t, p, schemas.OutcomeRefused)
	if p.Guard != GuardProtected || len(p.Statements) != 0 {
		t.Errorf("protected: %+v", p)
	}
	if exists, canLogin := roleState(t, pool, protected); !exists || !canLogin {
		t.Errorf("protected role: exists %v, login %v", exists, canLogin)
	}
	// The batch's REVOKE named only the batch's roles.
	var selectOK, usageOK bool
	if err := pool.QueryRow(ctx, "SELECT has_table_privilege($1, $2, 'SELECT'), has_schema_privilege($1, $3, 'USAGE')",
		protected, ident(schema)+".orders", schema).Scan(&selectOK, &usageOK); err != nil {
		t.Fatal(err)
	}
	if !selectOK || !usageOK {
		t.Errorf("protected role lost privileges: SELECT %v, USAGE %v", selectOK, usageOK)
	}
	a := results[49]
	wantOutcome(t, a, schemas.OutcomeAlreadyAbsent)
	if !a.RoleAbsentAfter || len(a.Statements) != 0 {
		t.Errorf("absent: %+v", a)
	}
	dr := results[50]
	wantOutcome(t, dr, schemas.OutcomeAlreadyAbsent)
	if !strings.Contains(dr.Reason, "cmd-"+names[5]) || len(dr.Statements) != 0 {
		t.Errorf("duplicate: %+v", dr)
	}
}

// lockTable holds a lock on table in an open transaction of the test's own
// (superuser) session, which the revoker does not terminate.
func lockTable(t *testing.T, pool *pgxpool.Pool, table string) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
}

// ownTable makes name own a new table in schema.
func ownTable(t *testing.T, pool *pgxpool.Pool, schema, name string) string {
	t.Helper()
	table := ident(schema) + "." + ident("owned_"+pgtest.Suffix())
	mustExec(t, pool, "CREATE TABLE "+table+" (x int)")
	mustExec(t, pool, "ALTER TABLE "+table+" OWNER TO "+ident(name))
	return table
}

func TestDropFailureKeepsNologin(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	name := "v-locked-" + pgtest.Suffix()
	createVaultUser(t, pool, name, schema)
	lockTable(t, pgtest.Pool(t), ownTable(t, pool, schema, name))
	d := newTestDropper(t, DropperConfig{LockTimeout: 200 * time.Millisecond})

	res := d.Drop(ctx, pool, testTarget, command(t, pool, name))
	wantOutcome(t, res, schemas.OutcomeFailed)
	if res.SQLState != "55P03" || !strings.Contains(res.Reason, "reassign owned") || !strings.Contains(res.Reason, "NOLOGIN") {
		t.Errorf("sqlstate %q, reason %q", res.SQLState, res.Reason)
	}
	if res.RoleAbsentAfter || !strings.HasPrefix(res.Statements[len(res.Statements)-1], "REASSIGN OWNED BY ") {
		t.Errorf("absent %v, statements %q", res.RoleAbsentAfter, res.Statements)
	}
	if exists, canLogin := roleState(t, pool, name); !exists || canLogin {
		t.Errorf("role: exists %v, login %v; want it kept NOLOGIN", exists, canLogin)
	}
}

func TestDropBatchFallsBackPerRole(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	sfx := pgtest.Suffix()
	var cmds []schemas.RevocationCommand
	for i := range 5 {
		n := fmt.Sprintf("v-fallback-%s-%d", sfx, i)
		createVaultUser(t, pool, n, schema)
		cmds = append(cmds, command(t, pool, n))
	}
	bad := cmds[2].DBUser
	lockTable(t, pgtest.Pool(t), ownTable(t, pool, schema, bad))
	connectAs(t, cmds[0].DBUser)
	d := newTestDropper(t, DropperConfig{LockTimeout: 200 * time.Millisecond})

	results := d.DropBatch(ctx, pool, testTarget, cmds, nil)
	for i, res := range results {
		n := cmds[i].DBUser
		if n == bad {
			wantOutcome(t, res, schemas.OutcomeFailed)
			if res.SQLState != "55P03" {
				t.Errorf("bad role: sqlstate %q, reason %q", res.SQLState, res.Reason)
			}
			if exists, canLogin := roleState(t, pool, n); !exists || canLogin {
				t.Errorf("bad role: exists %v, login %v; want it kept NOLOGIN", exists, canLogin)
			}
			continue
		}
		wantOutcome(t, res, schemas.OutcomeDropped)
		// The batch's NOLOGIN and terminate took effect and are listed
		// before the role's own statements.
		if len(res.Statements) != 7 || res.Statements[0] != "ALTER ROLE "+ident(n)+" NOLOGIN" ||
			res.Statements[1] != terminateManySQL || res.Statements[6] != "DROP ROLE IF EXISTS "+ident(n) {
			t.Errorf("%s: statements %q", n, res.Statements)
		}
		if i == 0 && res.SessionsTerminated != 1 {
			t.Errorf("%s: terminated %d, want 1", n, res.SessionsTerminated)
		}
	}
}

func TestConcurrentDropOfOneRole(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	d := newTestDropper(t, DropperConfig{})
	for round := range 5 {
		name := fmt.Sprintf("v-race-%s-%d", pgtest.Suffix(), round)
		createVaultUser(t, pool, name, schema)
		connectAs(t, name)
		var wg sync.WaitGroup
		results := make([]schemas.RevocationResult, 2)
		for i := range results {
			wg.Go(func() {
				results[i] = d.Drop(ctx, pool, testTarget, command(t, pool, name))
			})
		}
		wg.Wait()
		got := []schemas.Outcome{results[0].Outcome, results[1].Outcome}
		slices.Sort(got)
		want := []schemas.Outcome{schemas.OutcomeAlreadyAbsent, schemas.OutcomeDropped}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: outcomes %v (%q / %q), want one dropped and one already_absent",
				round, got, results[0].Reason, results[1].Reason)
		}
	}
}

// TestAfterCheckEndsOrphanedSessions drops a connected role behind the
// revoker's back (as Vault does): the session lives on with usename NULL
// and is found, and ended, by the role's former oid.
func TestAfterCheckEndsOrphanedSessions(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	name := "v-orphan-" + pgtest.Suffix()
	createRole(t, pool, name, "LOGIN")
	var oid uint32
	if err := pool.QueryRow(ctx, "SELECT oid FROM pg_roles WHERE rolname = $1", name).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	conn := connectAs(t, name)
	mustExec(t, pool, "DROP ROLE "+ident(name))

	var orphans int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usesysid = $1 AND usename IS NULL", oid).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if orphans != 1 {
		t.Fatalf("%d orphaned sessions, want 1", orphans)
	}

	d := newTestDropper(t, DropperConfig{})
	d.settle = 500 * time.Millisecond
	it := &item{name: name, state: stateTarget, role: roleFacts{Name: name, OID: oid}, mayTerminate: true}
	d.afterCheck(ctx, pool, []*item{it})
	if !it.res.RoleAbsentAfter || it.res.SessionsLeftAfter != 0 || it.res.SessionsTerminated != 1 || it.res.Reason != "" {
		t.Errorf("after-check: %+v", it.res)
	}
	if !slices.Equal(it.res.Statements, []string{terminateByOIDSQL}) {
		t.Errorf("statements %q", it.res.Statements)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("orphaned session still answers")
	}
}

func TestDropperConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg DropperConfig
		ok  bool
	}{
		{DropperConfig{}, true},
		{DropperConfig{ReassignTo: "leaseguard_owner"}, true},
		{DropperConfig{ReassignTo: "v-someone"}, false},
		{DropperConfig{ReassignTo: "keeper", Guard: GuardConfig{ManagedPattern: regexp.MustCompile(`^k`)}}, false},
		{DropperConfig{StatementTimeout: -time.Second}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
}

// TestConcurrentDropsSharingGrants drops roles granted on the same tables
// from several goroutines: DROP OWNED of each rewrites the same ACLs, which
// PostgreSQL refuses to do concurrently ("tuple concurrently updated")
// unless the drops are serialised.
func TestConcurrentDropsSharingGrants(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	sfx := pgtest.Suffix()
	var names []string
	for i := range 24 {
		n := fmt.Sprintf("v-shared-%s-%02d", sfx, i)
		createVaultUser(t, pool, n, schema)
		names = append(names, n)
	}
	d := newTestDropper(t, DropperConfig{})
	results := make([]schemas.RevocationResult, len(names))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(names); i += 4 {
				if i%8 == w {
					// Some as small batches, racing the single drops.
					batch := d.DropBatch(ctx, pool, testTarget, []schemas.RevocationCommand{command(t, pool, names[i])}, nil)
					results[i] = batch[0]
					continue
				}
				results[i] = d.Drop(ctx, pool, testTarget, command(t, pool, names[i]))
			}
		})
	}
	wg.Wait()
	for i, res := range results {
		if res.Outcome != schemas.OutcomeDropped {
			t.Errorf("%s: %s (%s, sqlstate %s)", names[i], res.Outcome, res.Reason, res.SQLState)
		}
	}
}
