package revoker

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
)

// foreignGrantsSQL lists, for the roles $1 (oids), the grantors of their
// privileges in this database and on shared objects that are neither the
// object's owner nor a superuser. DROP OWNED revokes a privilege as the
// best grantor the current user can act as; a superuser acts as the
// object's owner, so a privilege that a non-owner granted (Vault's
// connection role, holding GRANT OPTION, is the usual one) survives it and
// DROP ROLE then fails with "some objects depend on it". Such privileges
// are revoked by acting as their grantor.
//
// Each object is read once (DISTINCT): the targets of one batch usually
// share their objects, whose ACLs hold an entry for every Vault user
// granted on them, and exploding each ACL once per target made the query
// quadratic in the number of such users.
//
// Each ACL is also handed to aclexplode as a slice ([1:]), a plain copy
// made once per object: aclexplode detoasts its argument again for every
// row it returns, and an ACL of a few hundred entries is kept compressed
// (pg_class) or out of line (pg_namespace, pg_proc, …), so each entry cost
// a decompression or a TOAST fetch of the whole ACL: 80 ms for a table
// granted to 2,000 Vault users, on every batch, against 2 ms sliced.
const foreignGrantsSQL = `WITH dep AS (` +
	`SELECT DISTINCT classid, objid, objsubid FROM pg_shdepend ` +
	`WHERE deptype = 'a' AND refclassid = 'pg_authid'::regclass AND refobjid = ANY($1::oid[]) ` +
	`AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))), ` +
	`acl AS (` +
	`SELECT c.relowner AS owner, c.relacl[1:] AS acl FROM dep JOIN pg_class c ON dep.classid = 'pg_class'::regclass AND dep.objsubid = 0 AND c.oid = dep.objid ` +
	`UNION ALL SELECT c.relowner, a.attacl[1:] FROM dep JOIN pg_attribute a ON dep.classid = 'pg_class'::regclass AND dep.objsubid > 0 AND a.attrelid = dep.objid AND a.attnum = dep.objsubid JOIN pg_class c ON c.oid = a.attrelid ` +
	`UNION ALL SELECT n.nspowner, n.nspacl[1:] FROM dep JOIN pg_namespace n ON dep.classid = 'pg_namespace'::regclass AND n.oid = dep.objid ` +
	`UNION ALL SELECT p.proowner, p.proacl[1:] FROM dep JOIN pg_proc p ON dep.classid = 'pg_proc'::regclass AND p.oid = dep.objid ` +
	`UNION ALL SELECT t.typowner, t.typacl[1:] FROM dep JOIN pg_type t ON dep.classid = 'pg_type'::regclass AND t.oid = dep.objid ` +
	`UNION ALL SELECT l.lanowner, l.lanacl[1:] FROM dep JOIN pg_language l ON dep.classid = 'pg_language'::regclass AND l.oid = dep.objid ` +
	`UNION ALL SELECT s.srvowner, s.srvacl[1:] FROM dep JOIN pg_foreign_server s ON dep.classid = 'pg_foreign_server'::regclass AND s.oid = dep.objid ` +
	`UNION ALL SELECT w.fdwowner, w.fdwacl[1:] FROM dep JOIN pg_foreign_data_wrapper w ON dep.classid = 'pg_foreign_data_wrapper'::regclass AND w.oid = dep.objid ` +
	`UNION ALL SELECT m.lomowner, m.lomacl[1:] FROM dep JOIN pg_largeobject_metadata m ON dep.classid = 'pg_largeobject'::regclass AND m.oid = dep.objid ` +
	`UNION ALL SELECT d.datdba, d.datacl[1:] FROM dep JOIN pg_database d ON dep.classid = 'pg_database'::regclass AND d.oid = dep.objid ` +
	`UNION ALL SELECT s.spcowner, s.spcacl[1:] FROM dep JOIN pg_tablespace s ON dep.classid = 'pg_tablespace'::regclass AND s.oid = dep.objid) ` +
	`SELECT DISTINCT g.rolname::text, r.rolname::text FROM acl, aclexplode(acl.acl) AS e ` +
	`JOIN pg_roles r ON r.oid = e.grantee JOIN pg_roles g ON g.oid = e.grantor ` +
	`WHERE e.grantee = ANY($1::oid[]) AND e.grantor <> acl.owner AND NOT g.rolsuper AND NOT e.grantor = ANY($1::oid[]) ` +
	`ORDER BY 1, 2`

// grantorSteps returns, for each foreign grantor of the targets'
// privileges, the statements that revoke them as that grantor: make the
// grantor a member of the roles it granted to (DROP OWNED BY needs the
// privileges of the roles named), act as it, DROP OWNED BY those roles,
// and return to the revoker's own identity. The membership goes with the
// roles when they are dropped, later in the same transaction; a failure
// rolls all of it back with the savepoint.
//
// A non-superuser revoker needs membership in the grantor to SET ROLE to
// it (docs/operations.md, "Privileges"), as it does for DROP OWNED.
func grantorSteps(ctx context.Context, tx pgx.Tx, targets []*item) ([]txStep, error) {
	oids := make([]uint32, len(targets))
	for i, it := range targets {
		oids[i] = it.role.OID
	}
	rows, err := tx.Query(ctx, foreignGrantsSQL, oids)
	if err != nil {
		return nil, err
	}
	byGrantor := make(map[string][]string)
	var grantors []string
	var grantor, grantee string
	_, err = pgx.ForEachRow(rows, []any{&grantor, &grantee}, func() error {
		if _, ok := byGrantor[grantor]; !ok {
			grantors = append(grantors, grantor)
		}
		byGrantor[grantor] = append(byGrantor[grantor], grantee)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var steps []txStep
	for _, g := range grantors {
		names := byGrantor[g]
		quoted := make([]string, len(names))
		only := make(map[string]bool, len(names))
		for i, n := range names {
			quoted[i] = ident(n)
			only[n] = true
		}
		ids := strings.Join(quoted, ", ")
		set := func(st txStep) txStep { st.only = only; return st }
		steps = append(steps,
			set(roleStep("grantor membership", "GRANT ", ids, " TO "+ident(g))),
			set(txStep{step: "act as grantor", sql: "SET LOCAL ROLE " + ident(g)}),
			set(roleStep("drop owned as grantor", "DROP OWNED BY ", ids, "")),
			set(txStep{step: "end acting as grantor", sql: "RESET ROLE"}),
		)
	}
	return steps, nil
}
