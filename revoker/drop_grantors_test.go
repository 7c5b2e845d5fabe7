package revoker

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
	Hit      int        `json:"Shared Hit Blocks"`
	Read     int        `json:"Shared Read Blocks"`
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

// aclBuffers sums the shared buffers every aclexplode scan hit or read.
func (n planNode) aclBuffers() int {
	var b int
	if n.Function == "aclexplode" {
		b = n.Hit + n.Read
	}
	for _, c := range n.Plans {
		b += c.aclBuffers()
	}
	return b
}

// aclCrowd is how many roles the crowd tests grant on one schema and
// table: enough that PostgreSQL keeps the schema's ACL out of line and the
// table's compressed, as it does for the objects a Vault role's thousands
// of users are granted on.
const aclCrowd = 1000

// The foreign-grantor query hands aclexplode each ACL detoasted once.
// aclexplode detoasts its argument again for every row it returns: an ACL
// kept out of line was fetched from TOAST, and a compressed one
// decompressed, once per entry (80 ms a batch at 2,000 users). The fetches
// show as buffer hits of the aclexplode scans, counted here against a
// control query that explodes the same ACL as stored; decompressions show
// nowhere, so the query is also held to reading every ACL through the
// slice, and the slice to being stored plain.
func TestForeignGrantsDetoastEachACLOnce(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	admin := pgtest.Pool(t)
	crowd := "v-token-crowd-" + pgtest.Suffix() + "-"
	t.Cleanup(func() { dropCrowd(admin, crowd) })
	schema := schemaWithTables(t, admin)
	mustExec(t, admin, `DO $$ BEGIN FOR i IN 1..`+fmt.Sprint(aclCrowd)+` LOOP
		EXECUTE format('CREATE ROLE %I', '`+crowd+`' || i);
		EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', '`+schema+`', '`+crowd+`' || i);
		EXECUTE format('GRANT SELECT ON %I.accounts TO %I', '`+schema+`', '`+crowd+`' || i);
	END LOOP; END $$`)
	target := fmt.Sprintf("v-token-acl1-%s", pgtest.Suffix())
	createVaultUser(t, admin, target, schema)
	var oid uint32
	if err := admin.QueryRow(ctx, `SELECT oid FROM pg_roles WHERE rolname = $1`, target).Scan(&oid); err != nil {
		t.Fatal(err)
	}

	// Control: the schema's ACL as stored is fetched once per entry.
	control := explainBuffers(t, admin, `SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) e WHERE n.nspname = $1`, schema)
	if control < aclCrowd {
		t.Fatalf("control: exploding the schema's ACL as stored read %d buffers; want ≥ %d (one fetch per entry): is the ACL still out of line?", control, aclCrowd)
	}
	if got := explainBuffers(t, admin, foreignGrantsSQL, []uint32{oid}); got > 20 {
		t.Fatalf("the foreign-grantor query's aclexplode scans read %d buffers for %d entries (the control read %d): each ACL must be detoasted once, not per entry", got, aclCrowd, control)
	}

	// The table's ACL is compressed in its pg_class row; the slice is not.
	var stored, sliced *string
	if err := admin.QueryRow(ctx, `SELECT pg_column_compression(c.relacl), pg_column_compression(c.relacl[1:]) FROM pg_class c
		WHERE c.oid = $1::regclass`, ident(schema)+".accounts").Scan(&stored, &sliced); err != nil {
		t.Fatal(err)
	}
	if stored == nil || sliced != nil {
		t.Fatalf("compression of the table's ACL as stored: %v, sliced: %v; want compressed, then plain", deref(stored), deref(sliced))
	}
	if bare := regexp.MustCompile(`\b[a-z]\.[a-z]+acl\b[^\[]`).FindAllString(foreignGrantsSQL, -1); len(bare) > 0 {
		t.Fatalf("the foreign-grantor query reads ACLs as stored: %q", bare)
	}
}

// explainBuffers runs EXPLAIN (ANALYZE, BUFFERS) of query and sums the
// shared buffers its aclexplode scans hit or read.
func explainBuffers(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var raw []byte
	if err := pool.QueryRow(testContext(t), "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+query, args...).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output: %v (%d plans)", err, len(plans))
	}
	return plans[0].Plan.aclBuffers()
}

// dropCrowd drops the crowd's roles, after their schema is gone.
func dropCrowd(pool *pgxpool.Pool, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = pool.Exec(ctx, `DO $$ DECLARE r text; BEGIN
		FOR r IN SELECT rolname FROM pg_roles WHERE starts_with(rolname, '`+prefix+`') LOOP
			EXECUTE format('DROP OWNED BY %I', r); EXECUTE format('DROP ROLE %I', r);
		END LOOP; END $$`)
}

func deref(s *string) string {
	if s == nil {
		return "none"
	}
	return *s
}
