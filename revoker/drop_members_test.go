package revoker

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

// Fleets of thousands of users grant through a group role (GRANT group TO
// "{{name}}"): a table's ACL holds a few thousand entries at most. A
// member's drop takes its memberships with it and leaves the group, its
// privileges and its other members alone; with no privilege of their own
// on the tables, the batch needs no REVOKE and no grantor step (the steps
// that rewrite ACLs), so its cost does not grow with the group's size.
func TestDropBatchGroupMembers(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	sfx := pgtest.Suffix()
	group := "lg_app_readonly_" + sfx
	createRole(t, pool, group, "NOLOGIN")
	mustExec(t, pool, "GRANT USAGE ON SCHEMA "+ident(schema)+" TO "+ident(group))
	mustExec(t, pool, "GRANT SELECT ON "+ident(schema)+".accounts, "+ident(schema)+".orders TO "+ident(group))
	var names []string
	var cmds []schemas.RevocationCommand
	for i := range 12 {
		n := fmt.Sprintf("v-token-member-%s-%02d", sfx, i)
		createRole(t, pool, n, "LOGIN PASSWORD 'x' VALID UNTIL '2030-11-24 00:00:00+00'")
		mustExec(t, pool, "GRANT "+ident(group)+" TO "+ident(n))
		names = append(names, n)
		if i > 0 { // the first stays
			cmds = append(cmds, command(t, pool, n))
		}
	}
	var oids []uint32
	if err := pool.QueryRow(ctx, "SELECT array_agg(oid::int8) FROM pg_roles WHERE rolname = ANY($1)", names[1:]).Scan(&oids); err != nil {
		t.Fatal(err)
	}
	conn := connectAs(t, names[1])
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM "+ident(schema)+".accounts"); err != nil {
		t.Fatalf("a member cannot read through the group: %v", err)
	}

	d := newTestDropper(t, DropperConfig{})
	for i, res := range d.DropBatch(ctx, pool, testTarget, cmds, nil) {
		wantOutcome(t, res, schemas.OutcomeDropped)
		if i == 0 && res.SessionsTerminated != 1 {
			t.Errorf("%d sessions terminated, want 1", res.SessionsTerminated)
		}
		for _, st := range res.Statements {
			if strings.HasPrefix(st, "REVOKE") || strings.Contains(st, "SET LOCAL ROLE") {
				t.Errorf("%s: a member's drop rewrote ACLs: %s", res.DBUser, st)
			}
		}
	}
	var left int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_auth_members WHERE member = ANY($1::oid[]) OR roleid = ANY($1::oid[])", oids).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d memberships of the dropped roles are left", left)
	}
	var members []string
	if err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(u.rolname::text), '{}') FROM pg_auth_members m
		JOIN pg_roles u ON u.oid = m.member JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = $1`, group).Scan(&members); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(members, names[:1]) {
		t.Errorf("members of the group after the drop: %v, want %v", members, names[:1])
	}
	var groupReads, keptReads bool
	if err := pool.QueryRow(ctx, "SELECT has_table_privilege($1, $2, 'SELECT'), has_table_privilege($3, $2, 'SELECT')",
		group, schema+".accounts", names[0]).Scan(&groupReads, &keptReads); err != nil {
		t.Fatal(err)
	}
	if !groupReads || !keptReads {
		t.Errorf("after the drop: the group reads %v, its remaining member reads %v; want both", groupReads, keptReads)
	}
}
