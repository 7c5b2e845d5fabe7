package revoker

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

func TestCheckName(t *testing.T) {
	t.Parallel()
	g := GuardConfig{Protected: []string{"v-keep"}}
	for _, tc := range []struct {
		name  string
		guard string
	}{
		{"v-token-readonly-abc-1795634398", ""},
		{"", GuardEmpty},
		{"v-" + strings.Repeat("x", 62), GuardInvalidName},
		{"v-\xff", GuardInvalidName},
		{"v-a\x00b", GuardInvalidName},
		{"postgres", GuardManagedPattern},
		{"V-upper", GuardManagedPattern},
		{"xv-inner", GuardManagedPattern},
		{"v-keep", GuardProtected},
		{"v-keep ", ""},
	} {
		err := g.CheckName(tc.name)
		var r *Refusal
		switch {
		case tc.guard == "" && err != nil:
			t.Errorf("CheckName(%q) = %v, want nil", tc.name, err)
		case tc.guard != "" && (!errors.As(err, &r) || r.Guard != tc.guard):
			t.Errorf("CheckName(%q) = %v, want guard %s", tc.name, err, tc.guard)
		}
	}
	if err := (GuardConfig{ManagedPattern: regexp.MustCompile(`^app_`)}).CheckName("v-x"); err == nil {
		t.Error("custom pattern not applied")
	}
}

// TestGuardsRefuse checks every guard against real roles: each refuses, no
// statement is executed, and the role is left as it was.
func TestGuardsRefuse(t *testing.T) {
	t.Parallel()
	type setup struct {
		pool   *pgxpool.Pool // the revoker's connection
		target string
		cfg    DropperConfig
		cmd    func(schemas.RevocationCommand) schemas.RevocationCommand
		db     string
	}
	for _, tc := range []struct {
		name  string
		guard string
		setup func(t *testing.T, admin *pgxpool.Pool, sfx string) setup
	}{
		{"protected", GuardProtected, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-prot-" + sfx
			createRole(t, admin, n, "LOGIN")
			return setup{pool: admin, target: n, cfg: DropperConfig{Guard: GuardConfig{Protected: []string{"other", n}}}}
		}},
		{"superuser", GuardSuperuser, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-su-" + sfx
			createRole(t, admin, n, "LOGIN SUPERUSER")
			return setup{pool: admin, target: n}
		}},
		{"unmanaged", GuardManagedPattern, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "lg_app_" + sfx
			createRole(t, admin, n, "LOGIN")
			return setup{pool: admin, target: n}
		}},
		{"replication", GuardReplication, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-repl-" + sfx
			createRole(t, admin, n, "LOGIN REPLICATION")
			return setup{pool: admin, target: n}
		}},
		{"bypassrls", GuardBypassRLS, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-rls-" + sfx
			createRole(t, admin, n, "LOGIN BYPASSRLS")
			return setup{pool: admin, target: n}
		}},
		{"own login role", GuardOwnRole, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			// The revoker logged in as a managed-looking, non-superuser
			// role, asked to drop itself.
			n := "v-lgadmin-" + sfx
			createRole(t, admin, n, "LOGIN CREATEROLE")
			return setup{pool: poolAs(t, n, nil), target: n}
		}},
		{"own session role under SET ROLE", GuardOwnRole, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			login, acting := "v-lgadmin-"+sfx, "v-lgacting-"+sfx
			createRole(t, admin, login, "LOGIN CREATEROLE")
			createRole(t, admin, acting, "NOLOGIN CREATEROLE")
			mustExec(t, admin, "GRANT "+ident(acting)+" TO "+ident(login))
			return setup{pool: poolAs(t, login, map[string]string{"role": acting}), target: login}
		}},
		{"own current role under SET ROLE", GuardOwnRole, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			login, acting := "v-lgadmin-"+sfx, "v-lgacting-"+sfx
			createRole(t, admin, login, "LOGIN CREATEROLE")
			createRole(t, admin, acting, "NOLOGIN CREATEROLE")
			mustExec(t, admin, "GRANT "+ident(acting)+" TO "+ident(login))
			return setup{pool: poolAs(t, login, map[string]string{"role": acting}), target: acting}
		}},
		{"pattern matching everything, own superuser role", GuardSuperuser, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			// With a pattern matching every name, the superuser the tests
			// run as is still refused.
			return setup{pool: admin, target: currentUser(t, admin),
				cfg: DropperConfig{Guard: GuardConfig{ManagedPattern: regexp.MustCompile(``)}}}
		}},
		{"other target", GuardDatabase, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-elsewhere-" + sfx
			createRole(t, admin, n, "LOGIN")
			return setup{pool: admin, target: n, db: "another"}
		}},
		{"role replaced since the command", GuardRoleOID, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-oid-" + sfx
			createRole(t, admin, n, "LOGIN")
			return setup{pool: admin, target: n, cmd: func(c schemas.RevocationCommand) schemas.RevocationCommand {
				c.RoleOID++ // issued for the role of that name before it was re-created
				return c
			}}
		}},
		{"issued for another database", GuardTarget, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-tgt-" + sfx
			createRole(t, admin, n, "LOGIN")
			return setup{pool: admin, target: n, cmd: func(c schemas.RevocationCommand) schemas.RevocationCommand {
				c.Target.DatabaseOID++
				return c
			}}
		}},
		{"issued for another cluster", GuardTarget, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-cluster-" + sfx
			createRole(t, admin, n, "LOGIN")
			return setup{pool: admin, target: n, cmd: func(c schemas.RevocationCommand) schemas.RevocationCommand {
				c.Target.SystemIdentifier = "1"
				return c
			}}
		}},
		{"group role", GuardGroupRole, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n, member := "v-token-group-"+sfx, "lg_member_"+sfx
			createRole(t, admin, n, "LOGIN")
			createRole(t, admin, member, "LOGIN")
			mustExec(t, admin, "GRANT "+ident(n)+" TO "+ident(member))
			return setup{pool: admin, target: n}
		}},
		{"createrole", GuardCreateRole, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-cr-" + sfx
			createRole(t, admin, n, "LOGIN CREATEROLE")
			return setup{pool: admin, target: n}
		}},
		{"password valid again (renewed since)", GuardCorroboration, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-renewed-" + sfx
			createRole(t, admin, n, "LOGIN VALID UNTIL 'infinity'")
			return setup{pool: admin, target: n, cmd: func(c schemas.RevocationCommand) schemas.RevocationCommand {
				c.Corroboration.Source = schemas.CorroboratedByValidUntil
				return c
			}}
		}},
		{"password valid in the future", GuardCorroboration, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			n := "v-token-future-" + sfx
			createRole(t, admin, n, "LOGIN VALID UNTIL '2999-01-01'")
			return setup{pool: admin, target: n, cmd: func(c schemas.RevocationCommand) schemas.RevocationCommand {
				c.Corroboration.Source = schemas.CorroboratedByValidUntil
				return c
			}}
		}},
		{"name too long", GuardInvalidName, func(t *testing.T, admin *pgxpool.Pool, sfx string) setup {
			// 63 bytes exist; the command names 64, which the server
			// would truncate to the existing role.
			n := "v-" + sfx + strings.Repeat("x", 63-2-len(sfx))
			createRole(t, admin, n, "LOGIN")
			return setup{pool: admin, target: n, cmd: func(c schemas.RevocationCommand) schemas.RevocationCommand {
				c.DBUser += "y"
				return c
			}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			admin := pgtest.Pool(t)
			s := tc.setup(t, admin, pgtest.Suffix())
			d := newTestDropper(t, s.cfg)
			cmd := command(t, s.pool, s.target)
			if s.cmd != nil {
				cmd = s.cmd(cmd)
			}
			db := testTarget
			if s.db != "" {
				db = s.db
			}
			_, loginBefore := roleState(t, admin, s.target)

			res := d.Drop(ctx, s.pool, db, cmd)
			wantOutcome(t, res, schemas.OutcomeRefused)
			if res.Guard != tc.guard || res.Reason == "" {
				t.Errorf("guard %q (%q), want %q", res.Guard, res.Reason, tc.guard)
			}
			if len(res.Statements) != 0 || res.SessionsTerminated != 0 || res.ReassignedTo != "" {
				t.Errorf("something was executed: %+v", res)
			}
			exists, loginAfter := roleState(t, admin, s.target)
			if !exists || loginAfter != loginBefore {
				t.Errorf("role changed: exists %v, login %v (was %v)", exists, loginAfter, loginBefore)
			}

			// The batch path refuses the same way.
			batch := d.DropBatch(ctx, s.pool, db, []schemas.RevocationCommand{cmd, command(t, s.pool, "v-absent-"+pgtest.Suffix())}, nil)
			wantOutcome(t, batch[0], schemas.OutcomeRefused)
			if batch[0].Guard != tc.guard || len(batch[0].Statements) != 0 {
				t.Errorf("batch: guard %q, statements %q", batch[0].Guard, batch[0].Statements)
			}
			if exists, loginAfter := roleState(t, admin, s.target); !exists || loginAfter != loginBefore {
				t.Errorf("batch changed the role: exists %v, login %v", exists, loginAfter)
			}
		})
	}
}

// TestGuardsAllowWhenConfigured drops a group role, a CREATEROLE role and a
// role whose password has expired when the configuration (or the database)
// allows it: the guards above refuse for the reason they name, not always.
func TestGuardsAllowWhenConfigured(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	admin := pgtest.Pool(t)
	sfx := pgtest.Suffix()
	group, member, cr, expired := "v-token-g-"+sfx, "lg_m_"+sfx, "v-token-c-"+sfx, "v-token-e-"+sfx
	createRole(t, admin, group, "LOGIN")
	createRole(t, admin, member, "LOGIN")
	mustExec(t, admin, "GRANT "+ident(group)+" TO "+ident(member))
	createRole(t, admin, cr, "LOGIN CREATEROLE")
	createRole(t, admin, expired, "LOGIN VALID UNTIL '2000-01-01'")
	d := newTestDropper(t, DropperConfig{Guard: GuardConfig{AllowGroupRoles: true, AllowCreateRole: true}})
	exp := command(t, admin, expired)
	exp.Corroboration.Source = schemas.CorroboratedByValidUntil
	for _, cmd := range []schemas.RevocationCommand{command(t, admin, group), command(t, admin, cr), exp} {
		wantOutcome(t, d.Drop(ctx, admin, testTarget, cmd), schemas.OutcomeDropped)
	}
}

func TestCheckRoleOrder(t *testing.T) {
	t.Parallel()
	s := sessionFacts{CurrentUser: "leaseguard", SessionUser: "leaseguard"}
	all := roleFacts{Name: "leaseguard", OID: 7, Superuser: true, Replication: true, BypassRLS: true, CreateRole: true, HasMembers: true}
	e := expectation{oid: 8, corroboration: schemas.CorroboratedByValidUntil}
	want := []string{GuardRoleOID, GuardSuperuser, GuardOwnRole, GuardReplication, GuardBypassRLS, GuardGroupRole, GuardCreateRole, GuardCorroboration}
	for _, g := range want {
		r, ok := asRefusal(checkRole(all, s, "x", e, GuardConfig{}))
		if !ok || r.Guard != g {
			t.Fatalf("got %v, want guard %s", r, g)
		}
		switch g {
		case GuardRoleOID:
			e.oid = 7
		case GuardSuperuser:
			all.Superuser = false
		case GuardOwnRole:
			all.Name = "v-x"
		case GuardReplication:
			all.Replication = false
		case GuardBypassRLS:
			all.BypassRLS = false
		case GuardGroupRole:
			all.HasMembers = false
		case GuardCreateRole:
			all.CreateRole = false
		}
	}
	all.ValidUntilPassed = true
	if err := checkRole(all, s, "x", e, GuardConfig{}); err != nil {
		t.Errorf("role past its validity refused: %v", err)
	}
	if r, ok := asRefusal(checkRole(roleFacts{Name: "keeper"}, s, "keeper", expectation{}, GuardConfig{})); !ok || r.Guard != GuardReassignTarget {
		t.Errorf("reassign target not refused: %v", r)
	}
	if err := checkRole(roleFacts{Name: "v-ok"}, s, "keeper", expectation{}, GuardConfig{}); err != nil {
		t.Errorf("plain role refused: %v", err)
	}
	if err := checkTarget(sessionFacts{Target: schemas.TargetIdentity{SystemIdentifier: "1", DatabaseOID: 2}},
		expectation{target: schemas.TargetIdentity{SystemIdentifier: "1", DatabaseOID: 3}}); err == nil {
		t.Error("another database's command accepted")
	}
}
