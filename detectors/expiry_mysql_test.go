package detectors_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target"
)

// mysqlRole adds a MySQL account to the fixture's reader: present, no oid,
// and an engine that keeps no expiry (target.Set.Roles of a mysql:// target).
func (f *fixture) mysqlRole(db, user string) {
	if f.reader[db] == nil {
		f.reader[db] = map[string]target.Role{}
	}
	f.reader[db][user] = target.Role{NoExpiry: true}
}

// TestExpiryOnMySQLNeedsVault: MySQL keeps no expiry of an account, so an
// expired lease's user is dropped only on Vault's word. Without a Vault
// link the target is observe-only: the finding is unconfirmed and says
// why; with Vault saying the lease is past its expiry, the command rests
// on Vault and carries no role oid.
func TestExpiryOnMySQLNeedsVault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	past := f.now.Add(-time.Hour)
	f.leaseOnly(t, "mysql/creds/app/novault", "main", "v-my-novault", past)
	f.mysqlRole("main", "v-my-novault")
	if _, err := f.detector(t, "", "*").Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if cmds := f.sink.all(); len(cmds) != 0 {
		t.Fatalf("commands without Vault: %+v", cmds)
	}
	fd := findingOf(t, f, "mysql/creds/app/novault")
	why, _ := fd.Facts["corroboration"].(map[string]any)["why"].(string)
	if fd.Action != schemas.ActionUnconfirmed || !strings.Contains(why, "keeps no expiry") || !strings.Contains(why, "observe only") {
		t.Errorf("finding without Vault: action %s, why %q", fd.Action, why)
	}

	g := newFixture(t)
	g.leaseOnly(t, "mysql/creds/app/held", "main", "v-my-held", past)
	g.mysqlRole("main", "v-my-held")
	vault := vaultLeases{"mysql/creds/app/held": {IssueTime: past.Add(-time.Hour), ExpireTime: &past}}
	if _, err := g.detectorWith(t, "", "*", vault).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	cmds := g.sink.all()
	if len(cmds) != 1 || cmds[0].Corroboration.Source != schemas.CorroboratedByVaultLookup || cmds[0].RoleOID != 0 {
		t.Fatalf("commands with Vault: %+v", cmds)
	}
}
