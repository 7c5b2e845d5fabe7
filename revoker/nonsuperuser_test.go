package revoker

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

// nonSuperuserSetup builds, with the test's superuser, what docs/operations.md's
// "Privileges" section describes: Vault's connection role (CREATEROLE, and
// grantor of the users' privileges) and a non-superuser revoker role that
// is a member of it, may signal backends and reads every session.
func nonSuperuserSetup(t *testing.T) (vault, revokerRole, schema string) {
	t.Helper()
	pool := pgtest.Pool(t)
	sfx := pgtest.Suffix()
	schema = schemaWithTables(t, pool)
	vault = "lg_vaultconn_" + sfx
	revokerRole = "lg_revoker_" + sfx
	createRole(t, pool, vault, "LOGIN CREATEROLE NOSUPERUSER")
	createRole(t, pool, revokerRole, "LOGIN CREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS")
	s := ident(schema)
	mustExec(t, pool, "GRANT USAGE, CREATE ON SCHEMA "+s+" TO "+ident(vault)+" WITH GRANT OPTION")
	mustExec(t, pool, "GRANT SELECT ON "+s+".accounts, "+s+".orders TO "+ident(vault)+" WITH GRANT OPTION")
	mustExec(t, pool, "GRANT pg_signal_backend, pg_read_all_stats TO "+ident(revokerRole))
	mustExec(t, pool, "GRANT "+ident(vault)+" TO "+ident(revokerRole))
	return vault, revokerRole, schema
}

// createUserAsVault creates a user the way Vault's plugin does, logged in
// as Vault's connection role, so that role is the grantor of its
// privileges. With memberOf set, the creation statements end with the
// docs/operations.md's extra statement GRANT "{{name}}" TO <revoker>.
func createUserAsVault(t *testing.T, vault, name, schema, memberOf string) {
	t.Helper()
	admin := pgtest.Pool(t)
	pgtest.DropRoleAtCleanup(t, admin, name)
	vp := poolAs(t, vault, nil)
	s := ident(schema)
	mustExec(t, vp, "CREATE ROLE "+ident(name)+" LOGIN PASSWORD 'x' VALID UNTIL '2030-11-24 00:00:00+00'")
	mustExec(t, vp, "GRANT USAGE, CREATE ON SCHEMA "+s+" TO "+ident(name))
	mustExec(t, vp, "GRANT SELECT ON "+s+".accounts, "+s+".orders TO "+ident(name))
	if memberOf != "" {
		mustExec(t, vp, "GRANT "+ident(name)+" TO "+ident(memberOf))
	}
}

// TestDropAsNonSuperuser runs the full drop (NOLOGIN, terminate, reassign,
// drop owned, drop) as a role without superuser, holding exactly the
// privileges docs/operations.md lists.
func TestDropAsNonSuperuser(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	admin := pgtest.Pool(t)
	vault, revokerRole, schema := nonSuperuserSetup(t)
	name := "v-token-app-" + pgtest.Suffix() + "-1795634398"
	createUserAsVault(t, vault, name, schema, revokerRole)

	// A live session that owns a table.
	conn := connectAs(t, name)
	table := ident(schema) + ".mine_" + strings.ReplaceAll(pgtest.Suffix(), "-", "_")
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (x int); INSERT INTO "+table+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	rp := poolAs(t, revokerRole, nil)
	var super bool
	if err := rp.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || super {
		t.Fatalf("revoker pool is superuser %v (%v)", super, err)
	}
	d := newTestDropper(t, DropperConfig{Clock: stepClock()})
	res := d.Drop(ctx, rp, testTarget, command(t, admin, name))
	wantOutcome(t, res, schemas.OutcomeDropped)
	if res.SessionsTerminated != 1 || res.SessionsLeftAfter != 0 || !res.RoleAbsentAfter {
		t.Errorf("terminated %d, left %d, absent %v", res.SessionsTerminated, res.SessionsLeftAfter, res.RoleAbsentAfter)
	}
	if res.ReassignedTo != revokerRole {
		t.Errorf("reassigned to %q, want %q", res.ReassignedTo, revokerRole)
	}
	if exists, _ := roleState(t, admin, name); exists {
		t.Fatal("role still exists")
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the dropped user's session still answers")
	}
	var owner string
	if err := admin.QueryRow(ctx, "SELECT relowner::regrole::text FROM pg_class WHERE oid = $1::regclass", table).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != ident(revokerRole) && owner != revokerRole {
		t.Errorf("table owner %q, want %q", owner, revokerRole)
	}
}

// TestDropAsNonSuperuserWithoutMembership: without the extra creation
// statement the drop fails cleanly (docs/operations.md says why), the user is
// left NOLOGIN rather than half dropped, and nothing is reported dropped.
func TestDropAsNonSuperuserWithoutMembership(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	admin := pgtest.Pool(t)
	vault, revokerRole, schema := nonSuperuserSetup(t)
	name := "v-token-app-" + pgtest.Suffix() + "-1795634398"
	createUserAsVault(t, vault, name, schema, "")
	// Cleanups run last first: the role goes here, with the privileges
	// Vault's role granted it, which a superuser's DROP OWNED leaves.
	t.Cleanup(func() {
		res := newTestDropper(t, DropperConfig{}).Drop(context.Background(), admin, testTarget, command(t, admin, name))
		if res.Outcome != schemas.OutcomeDropped {
			t.Errorf("cleanup drop: %s %s", res.Outcome, res.Reason)
		}
	})

	rp := poolAs(t, revokerRole, nil)
	d := newTestDropper(t, DropperConfig{Clock: stepClock()})
	res := d.Drop(ctx, rp, testTarget, command(t, admin, name))
	wantOutcome(t, res, schemas.OutcomeFailed)
	if res.SQLState != "42501" || res.RoleAbsentAfter {
		t.Errorf("sqlstate %q (want 42501, insufficient privilege), absent %v, reason %q", res.SQLState, res.RoleAbsentAfter, res.Reason)
	}
	exists, canLogin := roleState(t, admin, name)
	if !exists || canLogin {
		t.Errorf("role: exists %v, login %v; want it kept NOLOGIN", exists, canLogin)
	}
	var grants int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = $1", name).Scan(&grants); err != nil {
		t.Fatal(err)
	}
	if grants != 2 {
		t.Errorf("%d table grants left, want the 2 untouched", grants)
	}
}

// TestDropGrantsOfAnotherGrantor: privileges granted by Vault's connection
// role (holding GRANT OPTION, not the owner) survive a superuser's DROP
// OWNED; the revoker revokes them as their grantor. In a batch, only the
// affected role's result lists those statements.
func TestDropGrantsOfAnotherGrantor(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	admin := pgtest.Pool(t)
	vault, _, schema := nonSuperuserSetup(t)
	sfx := pgtest.Suffix()
	byVault := "v-token-app-" + sfx + "-a"
	plain := "v-token-app-" + sfx + "-b"
	createUserAsVault(t, vault, byVault, schema, "")
	createVaultUser(t, admin, plain, schema)

	d := newTestDropper(t, DropperConfig{Clock: stepClock()})
	res := d.DropBatch(ctx, admin, testTarget, []schemas.RevocationCommand{command(t, admin, byVault), command(t, admin, plain)}, nil)
	for _, r := range res {
		wantOutcome(t, r, schemas.OutcomeDropped)
		if exists, _ := roleState(t, admin, r.DBUser); exists {
			t.Errorf("%s still exists", r.DBUser)
		}
	}
	want := []string{
		"GRANT " + ident(byVault) + " TO " + ident(vault),
		"SET LOCAL ROLE " + ident(vault),
		"DROP OWNED BY " + ident(byVault),
		"RESET ROLE",
		"DROP ROLE IF EXISTS " + ident(byVault),
	}
	got := res[0].Statements
	if len(got) < len(want) || !slices.Equal(got[len(got)-len(want):], want) {
		t.Errorf("statements of %s:\n%s\nwant them to end with:\n%s", byVault, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, st := range res[1].Statements {
		if strings.Contains(st, "SET LOCAL ROLE") || strings.Contains(st, ident(vault)) {
			t.Errorf("%s's result lists %q, a statement for another role", plain, st)
		}
	}
}
