package evidence

import (
	"slices"
	"testing"

	"github.com/leaseguard/leaseguard/schemas"
)

// A MySQL user's revocation: a server identity with no database oid, no
// role oid, and the definer objects the drop left behind, all in the
// evidence, which the schema accepts.
func TestRevocationOfMySQLUser(t *testing.T) {
	t.Parallel()
	sch := evidenceSchema(t)
	cmd := sampleCommand(1)
	cmd.Database, cmd.DBUser, cmd.RoleOID = "maria", "v-token-app-NtjmLAvinPQnWlzG73", 0
	cmd.Target = schemas.TargetIdentity{SystemIdentifier: "mariadb:0123456789abcdef0123456789abcdef"}
	cmd.Corroboration.Source = schemas.CorroboratedByVaultLookup
	res := sampleResult(cmd, schemas.OutcomeDropped)
	res.ReassignedTo = ""
	res.Statements = []string{"ALTER USER 'v-token-app-NtjmLAvinPQnWlzG73'@'%' ACCOUNT LOCK", "KILL CONNECTION 42",
		"REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'v-token-app-NtjmLAvinPQnWlzG73'@'%'",
		"DROP USER IF EXISTS 'v-token-app-NtjmLAvinPQnWlzG73'@'%'"}
	res.Definers = []string{"procedure app.p", "view app.v"}
	ev, err := testBuilder().Revocation(cmd, res, sampleLease(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := validateDoc(sch, mustJSON(t, ev)); err != nil {
		t.Errorf("schema: %v", err)
	}
	v := view(t, ev)
	got, _ := v.Unmapped["definers"].([]any)
	if len(got) != 2 || got[0] != "procedure app.p" || got[1] != "view app.v" {
		t.Errorf("unmapped.definers = %v", v.Unmapped["definers"])
	}
	if !slices.Equal(res.Definers, []string{"procedure app.p", "view app.v"}) {
		t.Error("the result's definers changed")
	}
}
