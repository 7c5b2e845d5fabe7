//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestLeaseguardMariaDB runs leaseguard itself with the local MariaDB as
// its only target: Vault's mysql plugin issues a user whose revocation
// statement fails; a client holds a session; the lease expires; Vault
// keeps it past its expiry. leaseguard reads the lease from the audit log,
// asks Vault (MySQL keeps no expiry), issues a signed command, and its
// revoker locks the account, kills the session and drops every host, with
// evidence; then the Vault link, seeing the user gone, ends the lease in
// Vault.
func TestLeaseguardMariaDB(t *testing.T) {
	vaultBin, lgBin := os.Getenv("E2E_VAULT_BIN"), os.Getenv("E2E_LEASEGUARD_BIN")
	if vaultBin == "" || lgBin == "" {
		t.Fatal("E2E_VAULT_BIN and E2E_LEASEGUARD_BIN must name the Vault and leaseguard binaries (make e2e sets them)")
	}
	r := setupMaria(t, vaultBin)
	dir := t.TempDir()
	schema := pgtest.Schema(t, "lg_e2emy")
	auditFile := filepath.Join(dir, "audit", "vault-audit.log")
	if err := os.MkdirAll(filepath.Dir(auditFile), 0o700); err != nil {
		t.Fatal(err)
	}
	// The username is audited in plain on this mount, so the ledger knows
	// the user without the audit-hash link.
	r.vault.must(t, "POST", "sys/mounts/"+r.mount+"/tune", map[string]any{"audit_non_hmac_response_keys": []string{"username"}})
	r.vault.must(t, "PUT", "sys/audit/file", map[string]any{"type": "file", "options": map[string]any{"file_path": auditFile, "mode": "0600"}})
	env := []string{
		"LEASEGUARD_DATABASE_URL=" + pgtest.URL(),
		"LEASEGUARD_DATABASE_SCHEMA=" + schema,
		"LEASEGUARD_TARGETS=maria=" + mariaURL(),
		"LEASEGUARD_DATA_DIR=" + filepath.Join(dir, "leaseguard"),
		"LEASEGUARD_METRICS_ADDR=127.0.0.1:0",
		"LEASEGUARD_LOG_FORMAT=text",
		"LEASEGUARD_INSTANCE=e2emy-" + suffix,
		"LEASEGUARD_ROLES=ingest,detectors,revoker,relay",
		"LEASEGUARD_AUDIT_FILE=" + auditFile,
		"LEASEGUARD_AUDIT_FILE_POLL=100ms",
		"LEASEGUARD_EXPIRY_GRACE=2s",
		"LEASEGUARD_DETECT_INTERVAL=250ms",
		"LEASEGUARD_MANAGED_ROLE_PATTERN=^v-my" + suffix + "-",
		"LEASEGUARD_ENFORCE_SCOPE=role:" + r.mount + "/*",
		"LEASEGUARD_VAULT_ADDR=" + r.vault.addr,
		"LEASEGUARD_VAULT_TOKEN=" + r.vault.token,
		"LEASEGUARD_VAULT_AUDIT_DEVICE=file",
		"LEASEGUARD_VAULT_FORCE=true",
	}
	logPath := filepath.Join(dir, "leaseguard.log")
	startLeaseguard(t, lgBin, env, logPath)
	t.Cleanup(func() {
		if t.Failed() {
			dumpTail(t, "leaseguard", logPath)
		}
	})
	pool := pgtest.Pool(t)

	c, held := r.issue(t, "stuck")
	var outcome, rule, source string
	var terminated int
	var ev *string
	poll(t, "leaseguard to drop the expired MariaDB user", 90*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := pool.QueryRow(ctx, `SELECT outcome, rule, command->'corroboration'->>'source', `+
			`(result->>'sessions_terminated')::int, evidence_id FROM `+pgx.Identifier{schema, "revocations"}.Sanitize()+
			` WHERE db_user = $1 AND state = 'done'`, c.username).Scan(&outcome, &rule, &source, &terminated, &ev)
		if err != nil {
			return false, err.Error()
		}
		return ev != nil, "outcome " + outcome
	})
	if outcome != "dropped" || rule != "lease-expired-not-revoked" || source != "vault_lookup" || terminated != 1 {
		t.Fatalf("outcome %s, rule %s, corroboration %s, sessions terminated %d; want dropped by lease-expired-not-revoked on Vault's word, 1 session killed",
			outcome, rule, source, terminated)
	}
	var evType string
	if err := pool.QueryRow(context.Background(), `SELECT type FROM `+pgx.Identifier{schema, "evidence_outbox"}.Sanitize()+
		` WHERE id = $1`, *ev).Scan(&evType); err != nil || evType != "io.leaseguard.revocation.v1" {
		t.Errorf("evidence %s: type %q, %v", *ev, evType, err)
	}
	if h, s := r.state(t, c.username); h != 0 || s != 0 || answers(held) {
		t.Errorf("after leaseguard's drop: %d hosts, %d sessions of %s", h, s, c.username)
	}
	// Vault's own revocation keeps failing; with the user verified gone
	// from the server, leaseguard ends the lease in Vault (revoke-force).
	poll(t, "leaseguard to revoke the lease in Vault", 60*time.Second, func() (bool, string) {
		return !r.vault.leaseExists(t, c.leaseID), "Vault still has the lease"
	})
}
