package revoker

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// The batch's read of pg_roles asks, for each of its roles, whether
// another role is a member of it. A fleet granting through a group role
// has a membership per user; the read must look up its own roles' members
// through the index, not read every membership in the database (it did:
// the planner hashed all of pg_auth_members, 2 ms a batch at 10,000
// members, twice per batch).
func TestReadLooksUpMembersOfItsRolesOnly(t *testing.T) {
	ctx := testContext(t)
	pool := pgtest.Pool(t)
	sfx := pgtest.Suffix()
	group := "lg_plan_group_" + sfx
	const members = 3000
	pgtest.DropRoleAtCleanup(t, pool, group)
	for i := range members {
		pgtest.DropRoleAtCleanup(t, pool, fmt.Sprintf("v-plan-%s-%04d", sfx, i))
	}
	mustExec(t, pool, fmt.Sprintf(`DO $$ BEGIN
		CREATE ROLE %[1]s NOLOGIN;
		FOR i IN 0..%[2]d LOOP
			EXECUTE format('CREATE ROLE %%I LOGIN IN ROLE %[1]s', 'v-plan-%[3]s-' || to_char(i, 'FM0000'));
		END LOOP; END $$`, ident(group), members-1, sfx))
	mustExec(t, pool, "ANALYZE pg_catalog.pg_auth_members")
	batch := make([]string, 100)
	for i := range batch {
		batch[i] = fmt.Sprintf("v-plan-%s-%04d", sfx, i)
	}
	var plan []map[string]any
	if err := pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+readSQL, batch).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if scans := seqScansOf(plan[0]["Plan"], "pg_auth_members"); scans > 0 {
		out, _ := json.MarshalIndent(plan, "", " ")
		t.Fatalf("the read of a batch of 100 scans every membership (%d sequential scans of pg_auth_members):\n%s", scans, out)
	}
}

// seqScansOf counts the sequential scans of rel in a JSON plan node.
func seqScansOf(node any, rel string) int {
	m, ok := node.(map[string]any)
	if !ok {
		return 0
	}
	n := 0
	if m["Node Type"] == "Seq Scan" && m["Relation Name"] == rel {
		n++
	}
	subs, _ := m["Plans"].([]any)
	for _, s := range subs {
		n += seqScansOf(s, rel)
	}
	return n
}
