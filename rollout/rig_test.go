package rollout_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// sink records the commands a detector queues.
type sink struct {
	mu   sync.Mutex
	cmds []schemas.RevocationCommand
}

func (s *sink) Submit(_ context.Context, cmds []schemas.RevocationCommand) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmds = append(s.cmds, cmds...)
	return nil
}

func (s *sink) users() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.cmds {
		out = append(out, c.DBUser)
	}
	return out
}

// rig is a state store in its own schema and the test database as target
// "main", whose Vault-style users are named v-ro-<tag>-….
type rig struct {
	ctx     context.Context
	schema  string
	admin   *pgxpool.Pool
	st      *store.Store
	tag     string
	builder evidence.Builder
	targets target.Pools
	issuer  *revoker.Issuer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	r := &rig{ctx: ctx, schema: pgtest.Schema(t, "lg_rollout"), tag: pgtest.Suffix()[:8],
		builder: evidence.Builder{Source: "urn:leaseguard:test"}}
	r.admin = pgtest.Pool(t)
	r.st = r.open(t)
	if err := r.st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r.targets = target.Pools{"main": r.admin}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var err error
	if r.issuer, err = revoker.NewIssuer(revoker.NewSigner(priv), r.targets, 0, nil); err != nil {
		t.Fatal(err)
	}
	return r
}

// open connects to the rig's state store: each call is another process's
// connection pool.
func (r *rig) open(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(r.ctx, store.Config{URL: pgtest.URL(), Schema: r.schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// policies is the policy store of st with configured scope and modes.
func (r *rig) policies(t *testing.T, st *store.Store, scope, modes string) *rollout.Policies {
	t.Helper()
	spec, err := rollout.ParseSpec(scope, modes)
	if err != nil {
		t.Fatal(err)
	}
	return rollout.New(st.Pool(), r.builder, spec)
}

// detector is one process's expiry detector: its own pool, its own policy
// store, its own sink.
func (r *rig) detector(t *testing.T, st *store.Store, pol detectors.PolicySource) (*detectors.Expiry, *sink) {
	t.Helper()
	s := &sink{}
	d, err := detectors.NewExpiry(detectors.ExpiryConfig{Grace: 0, Interval: time.Second, Batch: 100},
		detectors.ExpiryDeps{Pool: st.Pool(), Reader: r.targets, Issuer: r.issuer, Sink: s, Evidence: r.builder, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	return d, s
}

// dueUser creates a managed user whose password expired and records its
// lease, expired a minute ago: due at the next pass.
func (r *rig) dueUser(t *testing.T, name string) string {
	t.Helper()
	user := "v-ro-" + r.tag + "-" + name
	if _, err := r.admin.Exec(r.ctx, "CREATE ROLE "+pgx.Identifier{user}.Sanitize()+" LOGIN VALID UNTIL '2001-01-01'"); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, user)
	exp := time.Now().Add(-time.Minute).UTC()
	issued := exp.Add(-time.Hour)
	id := "postgres/creds/reporting/" + r.tag + name
	ev := schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id, Mount: "postgres", Role: "reporting",
		Database: "main", DBUser: user, IssueTime: &issued, ExpireTime: &exp, ExpireSource: schemas.ExpireFromEvent,
		EventTime: issued, VaultRequestID: "req-" + name, Source: schemas.SourceRef{Transport: "test"}}
	if _, err := r.st.Apply(r.ctx, store.Batch{Leases: []schemas.LeaseEvent{ev}}); err != nil {
		t.Fatal(err)
	}
	return user
}

// action is the action of user's lease-expired finding recorded last.
func (r *rig) action(t *testing.T, user string) string {
	t.Helper()
	var a string
	err := r.st.Pool().QueryRow(r.ctx, `SELECT action FROM findings WHERE db_user = $1 ORDER BY detected_at DESC, action LIMIT 1`, user).Scan(&a)
	if err != nil {
		t.Fatalf("finding of %s: %v", user, err)
	}
	return a
}

func tick(t *testing.T, ctx context.Context, d *detectors.Expiry) {
	t.Helper()
	if _, err := d.Tick(ctx); err != nil {
		t.Fatal(err)
	}
}
