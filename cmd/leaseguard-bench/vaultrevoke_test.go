package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultdev"
)

// slowVault stands in for Vault's sys/leases/revoke-prefix where a real
// Vault cannot be made slow on demand: it drops real PostgreSQL roles, one
// every step, as Vault 1.21 revokes a prefix's leases one at a time
// (vault/expiration.go, revokePrefixCommon). With sync (the default) it
// answers when the last is gone and stops when the client goes away, as
// Vault's request context ends with the HTTP request's
// (vault/request_handling.go, switchedLockHandleRequest); with sync=false
// it answers at once and drops the rest in the background, as Vault's
// LazyRevoke hands each lease to its expiration manager.
type slowVault struct {
	pool  *pgxpool.Pool
	roles []string
	step  time.Duration
	bg    context.Context

	mu      sync.Mutex
	next    int
	syncs   int
	asyncs  int
	stopped int // sync requests cut by the client
}

func (v *slowVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/v1/sys/leases/revoke-prefix/") {
		http.Error(w, `{"errors":["unsupported path"]}`, http.StatusNotFound)
		return
	}
	body := struct {
		Sync *bool `json:"sync"`
	}{}
	_ = json.NewDecoder(r.Body).Decode(&body)
	if body.Sync != nil && !*body.Sync {
		v.mu.Lock()
		v.asyncs++
		v.mu.Unlock()
		go v.dropAll(v.bg)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	v.mu.Lock()
	v.syncs++
	v.mu.Unlock()
	if !v.dropAll(r.Context()) {
		v.mu.Lock()
		v.stopped++
		v.mu.Unlock()
		http.Error(w, `{"errors":["context canceled"]}`, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// counts are the requests seen: sync, sync cut by the client, sync=false.
func (v *slowVault) counts() (syncs, stopped, asyncs int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.syncs, v.stopped, v.asyncs
}

// dropAll drops the roles left, one every step, until ctx ends; it
// reports whether it dropped them all.
func (v *slowVault) dropAll(ctx context.Context) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(v.step):
		}
		v.mu.Lock()
		if v.next >= len(v.roles) {
			v.mu.Unlock()
			return true
		}
		role := v.roles[v.next]
		v.next++
		v.mu.Unlock()
		if _, err := v.pool.Exec(context.WithoutCancel(ctx), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			return false
		}
	}
}

// revokeRig is a slow Vault over n real roles and the prefixRevoke that
// measures it through the Vault API client with the given client timeout.
func revokeRig(t *testing.T, n int, step, clientTimeout, wait time.Duration) (*slowVault, prefixRevoke) {
	t.Helper()
	pool := pgtest.Pool(t)
	ctx := context.Background()
	sfx := pgtest.Suffix()
	roles := make([]string, n)
	for i := range roles {
		roles[i] = fmt.Sprintf("v-lbt%s-%d", sfx, i)
		if _, err := pool.Exec(ctx, "CREATE ROLE "+pgx.Identifier{roles[i]}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.DropRoleAtCleanup(t, pool, roles...)
	bg, cancel := context.WithCancel(context.Background())
	fake := &slowVault{pool: pool, roles: roles, step: step, bg: bg}
	srv := httptest.NewServer(fake)
	t.Cleanup(func() { cancel(); srv.Close() })
	c, err := vaultdev.NewClient(srv.URL, "root", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetClientTimeout(clientTimeout)
	p := prefixRevoke{
		revoke: func(ctx context.Context, sync bool) error {
			_, err := vaultdev.Call(ctx, c, http.MethodPut, "sys/leases/revoke-prefix/db/creds/r", map[string]any{"sync": sync})
			return err
		},
		left: func(ctx context.Context) (int, error) {
			var k int
			err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)", roles).Scan(&k)
			return k, err
		},
		n: n, wait: wait, poll: 20 * time.Millisecond, logf: t.Logf,
	}
	return fake, p
}

// TestPrefixRevokeOutlastsTheClientTimeout: Vault takes longer to revoke
// than the client waits for its answer (issue 19: "vault PUT
// sys/leases/revoke-prefix/…: context deadline exceeded"). The wait goes
// on until the users are gone, Vault finishing what the cut request left.
func TestPrefixRevokeOutlastsTheClientTimeout(t *testing.T) {
	t.Parallel()
	const n = 12
	fake, p := revokeRig(t, n, 80*time.Millisecond, 300*time.Millisecond, 20*time.Second)
	out, err := p.run(context.Background())
	if err != nil {
		t.Fatalf("revoke-prefix against a Vault slower than the client: %v", err)
	}
	left, err := p.left(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if left != 0 || out.left != 0 {
		t.Fatalf("%d users left in pg_roles (measured %d)", left, out.left)
	}
	// n steps of 80 ms at the least: the figure is Vault's pace, not the
	// client's timeout.
	if out.elapsed < n*80*time.Millisecond {
		t.Fatalf("elapsed %s, shorter than Vault's %s", out.elapsed, n*80*time.Millisecond)
	}
	if _, stopped, asyncs := fake.counts(); !out.async || stopped != 1 || asyncs != 1 {
		t.Fatalf("async %v, sync requests cut %d, sync=false requests %d: want the cut request followed by one sync=false",
			out.async, stopped, asyncs)
	}
	if r := out.rate(n); r <= 0 || r > float64(n)/(n*0.08) {
		t.Fatalf("rate %.1f users/s, above Vault's pace of %.1f/s", r, 1/0.08)
	}
}

// TestPrefixRevokeReportsWhatItMeasured: Vault does not finish within the
// wait; the run ends at the wait, saying how many users are left and how
// many went.
func TestPrefixRevokeReportsWhatItMeasured(t *testing.T) {
	t.Parallel()
	const n = 50
	_, p := revokeRig(t, n, 100*time.Millisecond, 200*time.Millisecond, 700*time.Millisecond)
	start := time.Now()
	out, err := p.run(context.Background())
	if err == nil {
		t.Fatal("no error although users were left")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the run took %s with a wait of 700 ms", took)
	}
	left, lerr := p.left(context.Background())
	if lerr != nil {
		t.Fatal(lerr)
	}
	// Vault went on meanwhile: the count measured at the end is at least
	// what is left now.
	if out.left < left || out.left == 0 || out.left == n {
		t.Fatalf("measured %d left (now %d) of %d", out.left, left, n)
	}
	if out.elapsed < 700*time.Millisecond {
		t.Fatalf("elapsed %s, shorter than the wait", out.elapsed)
	}
	// Vault drops one user per 100 ms: the users gone, not all n, make
	// the rate.
	if r := out.rate(n); r <= 0 || r > 1/0.1 {
		t.Fatalf("rate %.2f/s with %d of %d users gone, above Vault's pace of 10/s", r, n-out.left, n)
	}
}

// TestPrefixRevokeSyncAnswered: a Vault that answers in time is measured
// with its synchronous revoke-prefix alone.
func TestPrefixRevokeSyncAnswered(t *testing.T) {
	t.Parallel()
	const n = 5
	fake, p := revokeRig(t, n, 10*time.Millisecond, 30*time.Second, time.Minute)
	out, err := p.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if syncs, _, asyncs := fake.counts(); out.left != 0 || out.async || out.answered == 0 || syncs != 1 || asyncs != 0 {
		t.Fatalf("left %d, async %v, answered %s, sync %d, async requests %d", out.left, out.async, out.answered, syncs, asyncs)
	}
}
