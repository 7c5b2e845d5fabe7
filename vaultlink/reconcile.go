package vaultlink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/backoff"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target/engine"
)

// RuleVaultRevoke names the findings that record how Vault was brought in
// agreement after a drop: a failed revoke (medium), and the resolution
// after failures or by revoke-force (info, low).
const RuleVaultRevoke = "vault-lease-revoke"

// Methods by which Vault let go of a lease (vault_revocations.method).
const (
	MethodRevoke      = "revoke"
	MethodRevokeForce = "revoke-force"
	MethodAbsent      = "absent"
)

// ReconcilerConfig configures the Reconciler.
type ReconcilerConfig struct {
	// Force allows sys/leases/revoke-force/<lease id> when the revoke fails
	// and the user is verified gone from the target (pg_roles; mysql.user
	// on MySQL) (default true via DefaultReconcilerConfig).
	Force bool
	// Interval between passes (default 2s).
	Interval time.Duration
	// Batch: leases claimed per pass (default 50).
	Batch int
	// MinBackoff, MaxBackoff: retry waits after failures, doubling (default
	// 10s, 30m), with jitter (internal/backoff).
	MinBackoff, MaxBackoff time.Duration
	// Hold: how long a claimed lease is invisible to other workers (default 2m).
	Hold time.Duration
	// Margin re-read before the cursor of dropped outcomes (default 1m).
	Margin time.Duration
}

// DefaultReconcilerConfig returns the defaults (force on).
func DefaultReconcilerConfig() ReconcilerConfig {
	return ReconcilerConfig{Force: true, Interval: 2 * time.Second, Batch: 50, MinBackoff: 10 * time.Second,
		MaxBackoff: 30 * time.Minute, Hold: 2 * time.Minute, Margin: time.Minute}
}

func (c ReconcilerConfig) withDefaults() ReconcilerConfig {
	d := DefaultReconcilerConfig()
	if c.Interval <= 0 {
		c.Interval = d.Interval
	}
	if c.Batch <= 0 {
		c.Batch = d.Batch
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = d.MinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(d.MaxBackoff, c.MinBackoff)
	}
	if c.Hold <= 0 {
		c.Hold = d.Hold
	}
	if c.Margin <= 0 {
		c.Margin = d.Margin
	}
	return c
}

// LeaseRevoker is what the reconciler asks of Vault (*Client).
type LeaseRevoker interface {
	Revoke(ctx context.Context, leaseID string) error
	RevokeForce(ctx context.Context, leaseID string) error
	LookupLease(ctx context.Context, leaseID string) (LeaseInfo, bool, error)
}

var _ LeaseRevoker = (*Client)(nil)

// Targets gives the target databases' pools (*target.Set).
type Targets interface {
	Pool(name string) (*pgxpool.Pool, bool)
}

// ReconcilerDeps are the reconciler's collaborators.
type ReconcilerDeps struct {
	// Pool of the state store: dropped outcomes are read from revocations,
	// the queue is vault_revocations.
	Pool     *pgxpool.Pool
	Vault    LeaseRevoker
	Targets  Targets
	Evidence evidence.Builder
	Logger   *slog.Logger
	Metrics  *Metrics
	Clock    func() time.Time
	// Progress hears of each pass (nil: nobody).
	Progress *progress.Worker
}

// Reconciler revokes in Vault the leases whose users leaseguard dropped, so
// that Vault stops retrying its own revocation and stops counting them. It
// never touches a target database except to read pg_roles (on MySQL:
// mysql.user), and nothing it does undoes a drop.
//
// Each dropped outcome with a lease id is queued once (vault_revocations).
// sys/leases/revoke runs the role's revocation statements again, often what
// failed Vault in the first place; when it fails (Vault answers 400) and the
// user is verified absent from the target's pg_roles (or mysql.user), and
// Vault still holds that exact lease, sys/leases/revoke-force/<lease id> is
// used (unless Force is off). Failures are retried with backoff, durably; the first failure
// and the resolution after failures (always a revoke-force) are recorded in
// evidence as findings of RuleVaultRevoke.
type Reconciler struct {
	cfg ReconcilerConfig
	ReconcilerDeps
}

// NewReconciler builds a reconciler.
func NewReconciler(cfg ReconcilerConfig, d ReconcilerDeps) (*Reconciler, error) {
	if d.Pool == nil || d.Vault == nil || d.Targets == nil {
		return nil, errors.New("vault reconciler: pool, vault and targets are required")
	}
	if d.Evidence.Source == "" {
		return nil, errors.New("vault reconciler: evidence source is required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	return &Reconciler{cfg: cfg.withDefaults(), ReconcilerDeps: d}, nil
}

// Run works the queue until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	for {
		r.Progress.Start()
		n, err := r.Pass(ctx)
		r.Progress.Finish(err)
		if err != nil && ctx.Err() == nil {
			r.Logger.Warn("vault reconciler pass failed", "err", err)
		}
		wait := r.cfg.Interval
		if err == nil && n >= r.cfg.Batch {
			wait = 0
		}
		if !pause.For(ctx, wait, nil) {
			return nil
		}
	}
}

// Pass queues new dropped outcomes, then works the due leases (one batch).
// It returns how many leases it worked.
func (r *Reconciler) Pass(ctx context.Context) (int, error) {
	now := r.Clock()
	if _, err := EnqueueDroppedLeases(ctx, r.Pool, r.cfg.Margin, 1000, now); err != nil {
		return 0, err
	}
	items, err := ClaimVaultRevocations(ctx, r.Pool, now, r.cfg.Hold, r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, it := range items {
		if err := r.work(ctx, it); err != nil {
			errs = append(errs, err)
		}
	}
	if n, err := PendingVaultRevocations(ctx, r.Pool); err == nil {
		r.Metrics.pending.Set(float64(n))
	}
	return len(items), errors.Join(errs...)
}

// Drain runs passes until nothing is due or ctx ends (the offline revoke
// path); it returns the leases still pending.
func (r *Reconciler) Drain(ctx context.Context) (int64, error) {
	for ctx.Err() == nil {
		n, err := r.Pass(ctx)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			break
		}
	}
	return PendingVaultRevocations(context.WithoutCancel(ctx), r.Pool)
}

// attempt is what one try at a lease found.
type attempt struct {
	revokeErr error
	// catalog is where the user's absence was checked: pg_roles, or
	// mysql.user (every host of the name).
	catalog    string
	userAbsent *bool
	checkErr   error
	forceTried bool
	forceErr   error
	whyNoForce string
}

func (r *Reconciler) work(ctx context.Context, it VaultRevocation) error {
	a := attempt{revokeErr: r.Vault.Revoke(ctx, it.LeaseID)}
	if a.revokeErr == nil {
		return r.done(ctx, it, MethodRevoke, a)
	}
	switch {
	case !r.cfg.Force:
		a.whyNoForce = "revoke-force is turned off (LEASEGUARD_VAULT_FORCE=false)"
	case Status(a.revokeErr) != 400:
		// Unreachable, sealed, permission denied: Vault did not try the
		// revocation statements; forcing would not help.
		a.whyNoForce = "Vault did not attempt the revocation"
	default:
		var absent bool
		var err error
		absent, a.catalog, err = r.userAbsent(ctx, it.Database, it.DBUser)
		if err != nil {
			a.checkErr = err
			a.whyNoForce = "could not verify the user gone from " + a.catalog
			break
		}
		a.userAbsent = &absent
		if !absent {
			a.whyNoForce = "the user exists in " + a.catalog
			break
		}
		_, found, err := r.Vault.LookupLease(ctx, it.LeaseID)
		if err != nil {
			a.checkErr = err
			a.whyNoForce = "could not look the lease up in Vault"
			break
		}
		if !found {
			return r.done(ctx, it, MethodAbsent, a)
		}
		a.forceTried = true
		a.forceErr = r.Vault.RevokeForce(ctx, it.LeaseID)
		if a.forceErr == nil {
			return r.done(ctx, it, MethodRevokeForce, a)
		}
	}
	return r.failed(ctx, it, a)
}

// engineTargets is what a target set has when some targets are not
// PostgreSQL (target.Set): each answers through its engine.
type engineTargets interface {
	Engine(name string) (engine.Engine, bool)
}

// Where userAbsent looks, as messages and evidence name it.
const (
	catalogPostgres = "pg_roles"
	catalogMySQL    = "mysql.user"
)

// userAbsent re-reads the target's pg_roles (on MySQL: mysql.user, every
// host of the name); it returns which of the two it read.
func (r *Reconciler) userAbsent(ctx context.Context, database, user string) (bool, string, error) {
	pool, ok := r.Targets.Pool(database)
	if et, isSet := r.Targets.(engineTargets); !ok && isSet {
		if e, found := et.Engine(database); found {
			catalog := catalogPostgres
			if e.Kind() == engine.KindMySQL {
				catalog = catalogMySQL
			}
			g, err := e.Verify(ctx, user)
			return g.Absent, catalog, err
		}
	}
	if !ok {
		return false, "the target", fmt.Errorf("unknown target %q", database)
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, user).Scan(&exists); err != nil {
		return false, catalogPostgres, fmt.Errorf("pg_roles of %s: %w", database, err)
	}
	return !exists, catalogPostgres, nil
}

func (r *Reconciler) done(ctx context.Context, it VaultRevocation, method string, a attempt) error {
	now := r.Clock()
	r.Metrics.revocations.WithLabelValues(method).Inc()
	log := r.Logger.With("lease_id", it.LeaseID, "database", it.Database, "db_user", it.DBUser, "method", method, "attempts", it.Attempts)
	// Evidence of the resolution: always for revoke-force (a sudo act),
	// and after an earlier failure was recorded.
	if method != MethodRevokeForce && it.FailureEvidenceID == "" {
		log.Debug("lease revoked in vault")
		return FinishVaultRevocation(ctx, r.Pool, it.LeaseID, method, "", now)
	}
	sev, summary := schemas.SeverityInfo, ""
	switch method {
	case MethodRevokeForce:
		sev = schemas.SeverityLow
		summary = fmt.Sprintf("Vault let go of lease %s by revoke-force of that exact lease after its revoke failed; user %s was verified gone from %s of %s",
			it.LeaseID, it.DBUser, a.catalog, it.Database)
	case MethodAbsent:
		summary = fmt.Sprintf("Vault no longer holds lease %s (user %s of %s dropped by leaseguard), after %d attempt(s)", it.LeaseID, it.DBUser, it.Database, it.Attempts)
	default:
		summary = fmt.Sprintf("Vault revoked lease %s (user %s of %s dropped by leaseguard) after %d attempt(s)", it.LeaseID, it.DBUser, it.Database, it.Attempts)
	}
	facts := r.facts(it, a)
	facts["method"] = method
	f := r.finding(it, "resolved", sev, summary, facts, now)
	err := pgx.BeginFunc(ctx, r.Pool, func(tx pgx.Tx) error {
		evID, err := r.record(ctx, tx, f)
		if err != nil {
			return err
		}
		return FinishVaultRevocation(ctx, tx, it.LeaseID, method, evID, now)
	})
	if err != nil {
		return err
	}
	log.Info("lease revoked in vault")
	return nil
}

func (r *Reconciler) failed(ctx context.Context, it VaultRevocation, a attempt) error {
	now := r.Clock()
	r.Metrics.revocations.WithLabelValues("failed").Inc()
	last := a.revokeErr
	if a.forceErr != nil {
		last = a.forceErr
	}
	next := now.Add(r.backoff(it.Attempts))
	msg := last.Error()
	if a.whyNoForce != "" {
		msg += " (no revoke-force: " + a.whyNoForce + ")"
	}
	r.Logger.Warn("vault revocation failed; will retry", "lease_id", it.LeaseID, "database", it.Database, "db_user", it.DBUser,
		"attempts", it.Attempts, "err", last, "no_force", a.whyNoForce, "next_attempt_at", next)
	if it.FailureEvidenceID != "" {
		return RetryVaultRevocation(ctx, r.Pool, it.LeaseID, next, Status(last), msg, "")
	}
	facts := r.facts(it, a)
	facts["next_attempt_at"] = next.UTC().Format(time.RFC3339Nano)
	summary := fmt.Sprintf("Vault could not be brought to let go of lease %s although leaseguard dropped its user %s of %s: %s; leaseguard retries (the drop stands)",
		it.LeaseID, it.DBUser, it.Database, msg)
	f := r.finding(it, "failed", schemas.SeverityMedium, summary, facts, now)
	return pgx.BeginFunc(ctx, r.Pool, func(tx pgx.Tx) error {
		evID, err := r.record(ctx, tx, f)
		if err != nil {
			return err
		}
		return RetryVaultRevocation(ctx, tx, it.LeaseID, next, Status(last), msg, evID)
	})
}

func (r *Reconciler) facts(it VaultRevocation, a attempt) map[string]any {
	f := map[string]any{
		"dropped_by_command": it.CommandID,
		"dropped_at":         it.DroppedAt.UTC().Format(time.RFC3339Nano),
		"attempts":           it.Attempts,
		"force_enabled":      r.cfg.Force,
	}
	addErr := func(prefix string, err error) {
		if err == nil {
			return
		}
		var ve *Error
		if errors.As(err, &ve) {
			f[prefix+"_status"] = ve.Status
			if len(ve.Errors) > 0 {
				f[prefix+"_errors"] = strings.Join(ve.Errors, "; ")
			}
		}
		f[prefix+"_error"] = err.Error()
	}
	addErr("revoke", a.revokeErr)
	if a.userAbsent != nil {
		// user_absent_from_pg_roles, or user_absent_from_mysql_user.
		f["user_absent_from_"+strings.ReplaceAll(a.catalog, ".", "_")] = *a.userAbsent
	}
	addErr("check", a.checkErr)
	if a.forceTried {
		f["revoke_force_attempted"] = true
		addErr("revoke_force", a.forceErr)
	}
	if a.whyNoForce != "" {
		f["no_revoke_force"] = a.whyNoForce
	}
	return f
}

func (r *Reconciler) finding(it VaultRevocation, kind string, sev schemas.Severity, summary string, facts map[string]any, now time.Time) schemas.Finding {
	return schemas.Finding{
		Type: schemas.FindingType, ID: findingID(RuleVaultRevoke, it.LeaseID, kind), Rule: RuleVaultRevoke, Severity: sev,
		Mode: schemas.ModeEnforce, InScope: true, DetectedAt: now.UTC(), Database: it.Database, DBUser: it.DBUser,
		LeaseID: it.LeaseID, Summary: summary, Facts: facts, Action: schemas.ActionNone,
	}
}

// record appends the finding's evidence and inserts it in tx; it returns
// the evidence id.
func (r *Reconciler) record(ctx context.Context, tx pgx.Tx, f schemas.Finding) (string, error) {
	// A Vault error text that looks like a secret is withheld from the
	// evidence and the stored finding alike (evidence.Builder,
	// store.InsertFinding).
	ev, err := r.Evidence.Finding(f, nil)
	if err != nil {
		return "", fmt.Errorf("build vault revocation evidence: %w", err)
	}
	if _, err := store.InsertFinding(ctx, tx, f, ev.ID); err != nil {
		return "", err
	}
	// Evidence last: appending holds the chain head lock until commit.
	if _, err := evidence.Append(ctx, tx, ev); err != nil {
		return "", fmt.Errorf("append vault revocation evidence: %w", err)
	}
	return ev.ID, nil
}

// backoff after the n-th attempt: MinBackoff doubling, at most MaxBackoff,
// with jitter (internal/backoff).
func (r *Reconciler) backoff(n int) time.Duration {
	return backoff.Policy{Base: r.cfg.MinBackoff, Max: r.cfg.MaxBackoff}.Wait(n)
}

func findingID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
