package revoker

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// The foreign-grantor query reads each shared object's ACL once, however
// many of the batch's roles are granted on it. Vault's users of one role
// are all granted on the same tables, whose ACLs hold one entry per user:
// exploding each ACL once per target (as an earlier version did) made a
// 100-role batch cost 100× and the revoker fall from ~800 to 28 users/s
// at 2,000 users. Checked on the plan's row counts, not on time.
func TestForeignGrantsReadEachACLOnce(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	admin := pgtest.Pool(t)
	schema := schemaWithTables(t, admin)
	const users = 40
	sfx := pgtest.Suffix()
	names := make([]string, users)
	for i := range names {
		names[i] = fmt.Sprintf("v-token-acl-%s-%02d", sfx, i)
		createVaultUser(t, admin, names[i], schema)
	}
	var oids []uint32
	if err := admin.QueryRow(ctx, `SELECT array_agg(oid::int8) FROM pg_roles WHERE rolname = ANY($1)`, names).Scan(&oids); err != nil {
		t.Fatal(err)
	}
	if len(oids) != users {
		t.Fatalf("%d oids for %d users", len(oids), users)
	}
	var raw []byte
	if err := admin.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+foreignGrantsSQL, oids).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output: %v (%d plans)", err, len(plans))
	}
	exploded, scans := plans[0].Plan.aclRows()
	if scans == 0 {
		t.Fatalf("no aclexplode in the plan:\n%s", raw)
	}
	// Three objects (the schema, two tables), each ACL with an entry per
	// user plus the owner's and a few more: about 3 × 45 rows. Once per
	// target would be 40 times that; the bound leaves room for twice.
	if limit := 2 * 3 * (users + 10); exploded > limit {
		t.Fatalf("aclexplode produced %d rows for %d users on 3 objects, want at most %d (each ACL once)", exploded, users, limit)
	}
	if exploded < 3*users {
		t.Fatalf("aclexplode produced %d rows, fewer than the %d grants: the plan no longer reads the ACLs?\n%s", exploded, 3*users, raw)
	}
}

// planNode is the part of EXPLAIN (FORMAT JSON) the test reads.
type planNode struct {
	Function string     `json:"Function Name"`
	Rows     float64    `json:"Actual Rows"`
	Removed  float64    `json:"Rows Removed by Filter"`
	Loops    float64    `json:"Actual Loops"`
	Plans    []planNode `json:"Plans"`
}

// aclRows sums the rows every aclexplode scan produced over all its loops,
// kept or removed by the scan's own filter.
func (n planNode) aclRows() (rows, scans int) {
	if n.Function == "aclexplode" {
		rows, scans = int((n.Rows+n.Removed)*n.Loops), 1
	}
	for _, c := range n.Plans {
		r, s := c.aclRows()
		rows, scans = rows+r, scans+s
	}
	return rows, scans
}
