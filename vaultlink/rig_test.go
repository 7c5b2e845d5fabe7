package vaultlink_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// rig: a migrated state store, the test server as target "main", a fake
// Vault, and the real revoker to drop users.
type rig struct {
	st     *store.Store
	admin  *pgxpool.Pool
	vault  *vaulttest.Server
	clock  *clock
	signer *revoker.Signer
	exec   *revoker.Executor
	logs   *syncBuffer
	token  string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	schema := pgtest.Schema(t, "lg_vault")
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	admin := pgtest.Pool(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := revoker.NewSigner(priv)
	verifier, err := revoker.NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	dropper, err := revoker.NewDropper(revoker.DropperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{
		Dropper: dropper, Verifier: verifier, Targets: target.Pools{"main": admin}, State: st.Pool(),
		Evidence: evidence.Builder{Source: "urn:leaseguard:test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	v := vaulttest.New(t, c.Now)
	tok := "hvs.leaseguard-" + pgtest.Suffix()
	v.AddToken(tok, vaulttest.Token{TTL: 24 * time.Hour, Renewable: true, Sudo: true})
	return &rig{st: st, admin: admin, vault: v, clock: c, signer: signer, exec: exec, logs: &syncBuffer{}, token: tok}
}

func (r *rig) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (r *rig) client(t *testing.T, mod func(*vaultlink.Config)) *vaultlink.Client {
	t.Helper()
	cfg := vaultlink.Config{Addr: r.vault.URL, Token: r.token, Timeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := vaultlink.New(cfg, vaultlink.Deps{Logger: r.logger(), Clock: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *rig) reconciler(t *testing.T, c vaultlink.LeaseRevoker, force bool) *vaultlink.Reconciler {
	t.Helper()
	cfg := vaultlink.DefaultReconcilerConfig()
	cfg.Force = force
	rec, err := vaultlink.NewReconciler(cfg, vaultlink.ReconcilerDeps{
		Pool: r.st.Pool(), Vault: c, Targets: target.Pools{"main": r.admin},
		Evidence: evidence.Builder{Source: "urn:leaseguard:test", Clock: r.clock.Now}, Logger: r.logger(), Clock: r.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// role creates a login role the test owns.
func (r *rig) role(t *testing.T, name string) {
	t.Helper()
	if _, err := r.admin.Exec(context.Background(), "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, name)
}

// drop drops user through the real revoker with a command naming leaseID,
// and returns the outcome.
func (r *rig) drop(t *testing.T, user, leaseID string) schemas.Outcome {
	t.Helper()
	cmd := cmdtest.Drop(t, r.admin, "main", user)
	cmd.Issuer, cmd.Rule, cmd.LeaseID = "detector", "lease-expired-not-revoked", leaseID
	if err := r.signer.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	out := r.exec.Execute(context.Background(), []schemas.RevocationCommand{cmd}, nil)
	if len(out) != 1 {
		t.Fatalf("executed %d commands", len(out))
	}
	return out[0].Result.Outcome
}

func (r *rig) queued(t *testing.T, leaseID string) vaultlink.VaultRevocation {
	t.Helper()
	v, err := vaultlink.GetVaultRevocation(context.Background(), r.st.Pool(), leaseID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// findings returns the vault-lease-revoke findings of a lease.
func (r *rig) findings(t *testing.T, leaseID string) []schemas.Finding {
	t.Helper()
	rows, err := r.st.Pool().Query(context.Background(), `SELECT finding FROM findings WHERE rule = $1 AND lease_id = $2 ORDER BY detected_at, id`,
		vaultlink.RuleVaultRevoke, leaseID)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ F schemas.Finding }])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]schemas.Finding, len(fs))
	for i, f := range fs {
		out[i] = f.F
	}
	return out
}

// newLeaseID is a lease id as Vault makes them: 24 base62 characters
// under <mount>/creds/<role>/.
func newLeaseID(role string) string {
	return "postgres/creds/" + role + "/" + pgtest.Suffix() + pgtest.Suffix() + "ZxYw"
}
