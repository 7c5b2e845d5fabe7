package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
)

func TestVaultConfigValidate(t *testing.T) {
	base := func() Config {
		c := Config{VaultConfig: VaultConfig{VaultTimeout: 10 * time.Second, VaultRetryMax: 30 * time.Minute, VaultVerifyRecheck: time.Minute}}
		return c
	}
	for _, tc := range []struct {
		name string
		mod  func(*VaultConfig)
		want string
	}{
		{"off", func(*VaultConfig) {}, ""},
		{"token file", func(v *VaultConfig) { v.VaultAddr, v.VaultTokenFile = "https://vault:8200", "/run/token" }, ""},
		{"token without address", func(v *VaultConfig) { v.VaultToken = "hvs.x" }, "LEASEGUARD_VAULT_ADDR: must be set"},
		{"address without token", func(v *VaultConfig) { v.VaultAddr = "https://vault:8200" }, "token or a token file is required"},
		{"both tokens", func(v *VaultConfig) {
			v.VaultAddr, v.VaultToken, v.VaultTokenFile = "https://vault:8200", "hvs.x", "/run/token"
		}, "not both"},
		{"one audit device", func(v *VaultConfig) {
			v.VaultAddr, v.VaultToken, v.VaultAuditDevice = "https://vault:8200", "hvs.x", "file"
		}, ""},
		{"audit devices", func(v *VaultConfig) {
			v.VaultAddr, v.VaultToken, v.VaultAuditDevice = "https://vault:8200", "hvs.x", "file, socket/"
			v.VaultLinkRevokes, v.VaultHashWanted = true, 200
		}, ""},
		{"no audit device in the list", func(v *VaultConfig) {
			v.VaultAddr, v.VaultToken, v.VaultAuditDevice = "https://vault:8200", "hvs.x", " , "
		}, "LEASEGUARD_VAULT_AUDIT_DEVICE: no audit device"},
		{"audit device path", func(v *VaultConfig) {
			v.VaultAddr, v.VaultToken, v.VaultAuditDevice = "https://vault:8200", "hvs.x", "file,../sys"
		}, "LEASEGUARD_VAULT_AUDIT_DEVICE: \"../sys\" is not an audit device path"},
		{"audit device without address", func(v *VaultConfig) { v.VaultAuditDevice = "file" }, "LEASEGUARD_VAULT_ADDR: must be set"},
		{"no lease hashing budget", func(v *VaultConfig) {
			v.VaultAddr, v.VaultToken, v.VaultAuditDevice = "https://vault:8200", "hvs.x", "file"
			v.VaultLinkRevokes, v.VaultHashWanted = true, 0
		}, "LEASEGUARD_VAULT_LEASE_HASH_WANTED"},
		{"short backoff", func(v *VaultConfig) {
			v.VaultAddr, v.VaultToken, v.VaultRetryMax = "https://vault:8200", "hvs.x", time.Second
		}, "LEASEGUARD_VAULT_RETRY_MAX_BACKOFF"},
	} {
		c := base()
		tc.mod(&c.VaultConfig)
		var errs []string
		c.VaultConfig.validate(func(name, format string, args ...any) {
			errs = append(errs, env(name)+": "+fmt.Sprintf(format, args...))
		})
		got := strings.Join(errs, "; ")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// leaseguard revoke, with Vault configured, revokes the dropped users'
// leases in Vault: plainly, or by revoke-force of the exact lease when
// Vault's own revocation fails; with Vault sealed the drops stand and the
// leases stay queued.
func TestRevokeRevokesInVault(t *testing.T) {
	r := newRevokeRig(t)
	ok := r.issue(t, "alice", "ro")
	failing := r.issue(t, "bob", "ro")
	later := r.issue(t, "carol", "ro")
	r.load(t)
	v := vaulttest.New(t, nil)
	v.AddToken("hvs.cli-token", vaulttest.Token{TTL: time.Hour, Renewable: true, Sudo: true})
	for _, c := range []string{ok.LeaseID, failing.LeaseID, later.LeaseID} {
		v.AddLease(c, vaulttest.Lease{IssueTime: time.Now().Add(-time.Minute), ExpireTime: time.Now().Add(time.Hour)})
	}
	v.SetRevokeFails(failing.LeaseID, true)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("hvs.cli-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LEASEGUARD_VAULT_ADDR", v.URL)
	t.Setenv("LEASEGUARD_VAULT_TOKEN_FILE", tokenFile)

	for _, c := range []string{ok.LeaseID, failing.LeaseID} {
		code, out, stderr := runMain(t, "", "revoke", "--lease-id", c, "--reason", "INC-1", "--yes")
		if code != 0 {
			t.Fatalf("revoke %s: exit %d\n%s\n%s", c, code, out, stderr)
		}
	}
	revokes, forces := v.Calls("revoke"), v.Calls("revoke-force")
	if len(revokes) != 2 || revokes[0].Arg != ok.LeaseID || revokes[1].Arg != failing.LeaseID || revokes[1].Status != 400 {
		t.Errorf("revoke calls = %+v", revokes)
	}
	if len(forces) != 1 || forces[0].Arg != failing.LeaseID || forces[0].Status != 204 {
		t.Errorf("revoke-force calls = %+v", forces)
	}
	if v.HasLease(ok.LeaseID) || v.HasLease(failing.LeaseID) || !v.HasLease(later.LeaseID) {
		t.Errorf("vault still holds: ok %v, failing %v; later %v", v.HasLease(ok.LeaseID), v.HasLease(failing.LeaseID), v.HasLease(later.LeaseID))
	}

	v.SetSealed(true)
	code, out, stderr := runMain(t, "", "revoke", "--lease-id", later.LeaseID, "--reason", "INC-2", "--yes")
	if code != 0 || r.exists(t, later.Username) {
		t.Fatalf("sealed vault: exit %d\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(stderr, "not yet revoked in Vault") || strings.Contains(stderr+out, "hvs.cli-token") {
		t.Errorf("stderr: %s", stderr)
	}
}

// TestRunWithVault: `leaseguard run` with Vault configured keeps its token
// (lookup-self) and, in the revoker role, revokes in Vault the lease of a
// dropped outcome recorded in the state store.
func TestRunWithVault(t *testing.T) {
	schema := pgtest.Schema(t, "lg_runvault")
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	t.Setenv("LEASEGUARD_ROLES", "revoker")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_LOG_FORMAT", "json")
	v := vaulttest.New(t, nil)
	v.AddToken("hvs.run-token", vaulttest.Token{TTL: time.Hour, Renewable: true, Sudo: true})
	lease := "pg/creds/ro/" + strings.Repeat("r", 24)
	v.AddLease(lease, vaulttest.Lease{IssueTime: time.Now(), ExpireTime: time.Now().Add(time.Hour)})
	t.Setenv("LEASEGUARD_VAULT_ADDR", v.URL)
	t.Setenv("LEASEGUARD_VAULT_TOKEN", "hvs.run-token")
	stderr := &syncBuffer{}
	m := NewMain(strings.NewReader(""), &syncBuffer{}, stderr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- m.Run(ctx, []string{"run"}) }()
	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s", what, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("run did not start", func() bool { return strings.Contains(stderr.String(), `"msg":"leaseguard running"`) })
	wait("token not looked up", func() bool { return len(v.Calls("lookup-self")) == 1 })
	pool := pgtest.Pool(t)
	_, err := pool.Exec(context.Background(), `INSERT INTO `+pgx.Identifier{schema, "revocations"}.Sanitize()+`
		(command_id, database, db_user, lease_id, rule, state, outcome, command, finished_at)
		VALUES ('cmd-run', 'main', 'v-run-user', $1, 'lease-expired-not-revoked', 'done', 'dropped', '{}', now())`, lease)
	if err != nil {
		t.Fatal(err)
	}
	wait("lease not revoked in Vault", func() bool { return !v.HasLease(lease) })
	if c := v.Calls("revoke"); len(c) != 1 || c[0].Arg != lease {
		t.Errorf("revoke calls = %+v", c)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("run exited %d: %s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "hvs.run-token") {
		t.Error("the token is in the logs")
	}
}
