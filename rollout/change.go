package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// ConfigurationActor is the actor of version 1, the configured starting
// point.
const ConfigurationActor = "configuration"

const configurationReason = "the configured starting point (LEASEGUARD_ENFORCE_SCOPE, LEASEGUARD_RULE_MODES), recorded at first start"

// Status is the policy in force when a process starts.
type Status struct {
	Current Record
	// Recorded: this call recorded the configured policy as version 1.
	Recorded bool
	// Drift: the configured policy differs from the one in force (a later
	// start with another configuration, or runtime changes). The one in
	// force stays; Rollback with ToConfiguration adopts the configured one.
	Drift bool
}

// Bootstrap records the configured policy as version 1 (actor
// "configuration", with its evidence) when the state store holds none, and
// returns the policy in force. Processes starting together record it once.
func (p *Policies) Bootstrap(ctx context.Context) (Status, error) {
	var st Status
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := lockExclusive(ctx, tx); err != nil {
			return err
		}
		recorded, err := p.recordFirst(ctx, tx)
		if err != nil {
			return err
		}
		st.Recorded = recorded
		st.Current, err = current(ctx, tx)
		return err
	})
	if err != nil {
		return Status{}, fmt.Errorf("record the configured policy: %w", err)
	}
	st.Drift = !st.Current.Equal(p.configured)
	return st, nil
}

// recordFirst inserts version 1 unless a version exists.
func (p *Policies) recordFirst(ctx context.Context, tx pgx.Tx) (bool, error) {
	now, err := storeNow(ctx, tx)
	if err != nil {
		return false, err
	}
	c := schemas.PolicyChange{Version: 1, Kind: schemas.PolicyConfiguration, Actor: ConfigurationActor,
		Reason: configurationReason, ChangedAt: now, Scope: p.configured.Scope.String(), Modes: modeMap(p.configured.Modes)}
	ev, err := p.evidence.Policy(c)
	if err != nil {
		return false, fmt.Errorf("build policy evidence: %w", err)
	}
	modes, err := encodeModes(p.configured.Modes)
	if err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO rollout_policies (version, kind, scope, modes, actor, reason, changed_at, evidence_id)
		VALUES (1, $1, $2, $3, $4, $5, $6, $7) ON CONFLICT (version) DO NOTHING`,
		string(c.Kind), c.Scope, modes, c.Actor, c.Reason, now, ev.ID)
	if err != nil || tag.RowsAffected() == 0 {
		return false, err
	}
	// Evidence last: appending holds the chain head lock until commit.
	if _, err := evidence.Append(ctx, tx, ev); err != nil {
		return false, fmt.Errorf("append policy evidence: %w", err)
	}
	return true, nil
}

// Expand is a change of the policy: scope patterns to add and modes to set.
type Expand struct {
	Actor  string
	Reason string
	// Add: scope patterns ("*", "db:<glob>", "role:<glob>") added to the
	// scope in force.
	Add string
	// Modes: "rule=mode,…" set over the modes in force (either way:
	// enforce to observe is a change too).
	Modes string
	// ExpectVersion, when not 0, refuses the change unless that version is
	// in force (the one the operator looked at).
	ExpectVersion int64
}

// Expand records the policy in force widened by e, and returns it.
func (p *Policies) Expand(ctx context.Context, e Expand) (Record, error) {
	if err := checkWho(e.Actor, e.Reason); err != nil {
		return Record{}, err
	}
	if strings.TrimSpace(e.Add) == "" && strings.TrimSpace(e.Modes) == "" {
		return Record{}, fmt.Errorf("%w: name scope patterns to add or modes to set", ErrInvalid)
	}
	add, err := detectors.ParseScope(e.Add)
	if err != nil {
		return Record{}, fmt.Errorf("%w: scope: %v", ErrInvalid, err)
	}
	return p.change(ctx, e.ExpectVersion, func(_ pgx.Tx, cur Record) (Spec, schemas.PolicyChange, error) {
		modes, err := cur.Modes.With(e.Modes)
		if err == nil {
			err = detectors.ValidateModes(modes)
		}
		if err != nil {
			return Spec{}, schemas.PolicyChange{}, fmt.Errorf("%w: modes: %v", ErrInvalid, err)
		}
		next := Spec{Scope: cur.Scope.Union(add), Modes: modes}
		return next, schemas.PolicyChange{Kind: schemas.PolicyExpand, Actor: e.Actor, Reason: e.Reason}, nil
	})
}

// Rollback returns to an earlier policy.
type Rollback struct {
	Actor  string
	Reason string
	// To is the version to return to; 0 is the one before the version in
	// force.
	To int64
	// ToConfiguration returns to the configured policy instead (how a
	// changed configuration is adopted).
	ToConfiguration bool
	ExpectVersion   int64
}

// Rollback records, as a new version, the policy of an earlier version or
// the configured one.
func (p *Policies) Rollback(ctx context.Context, r Rollback) (Record, error) {
	if err := checkWho(r.Actor, r.Reason); err != nil {
		return Record{}, err
	}
	if r.To < 0 || (r.To != 0 && r.ToConfiguration) {
		return Record{}, fmt.Errorf("%w: roll back to one version, or to the configuration", ErrInvalid)
	}
	return p.change(ctx, r.ExpectVersion, func(tx pgx.Tx, cur Record) (Spec, schemas.PolicyChange, error) {
		c := schemas.PolicyChange{Kind: schemas.PolicyRollback, Actor: r.Actor, Reason: r.Reason}
		if r.ToConfiguration {
			c.RestoredConfiguration = true
			return p.configured, c, nil
		}
		to := r.To
		if to == 0 {
			to = cur.Version - 1
		}
		if to < 1 || to >= cur.Version {
			return Spec{}, c, fmt.Errorf("%w: no earlier version than %d to roll back to (the configuration is --to config)", ErrInvalid, cur.Version)
		}
		old, err := version(ctx, tx, to)
		if err != nil {
			return Spec{}, c, err
		}
		c.RestoredVersion = to
		return old.Spec, c, nil
	})
}

// change records the next version in one transaction: the row, the pilot
// judgements made due again (so the next pass judges them under the new
// policy) and the evidence naming the actor. next computes the new spec
// and the change's kind, actor and reason from the policy in force.
func (p *Policies) change(ctx context.Context, expect int64,
	next func(tx pgx.Tx, cur Record) (Spec, schemas.PolicyChange, error)) (Record, error) {
	var out Record
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := lockExclusive(ctx, tx); err != nil {
			return err
		}
		cur, err := current(ctx, tx)
		if err != nil {
			return err
		}
		if expect != 0 && cur.Version != expect {
			return fmt.Errorf("%w: version %d is in force, not %d", ErrConflict, cur.Version, expect)
		}
		spec, c, err := next(tx, cur)
		if err != nil {
			return err
		}
		if spec.Equal(cur.Spec) {
			return fmt.Errorf("%w: version %d already has scope %q and these modes", ErrNothingChanges, cur.Version, cur.Scope.String())
		}
		out, err = p.insert(ctx, tx, cur, spec, c)
		return err
	})
	return out, err
}

// insert records version cur.Version+1 with its evidence.
func (p *Policies) insert(ctx context.Context, tx pgx.Tx, cur Record, spec Spec, c schemas.PolicyChange) (Record, error) {
	now, err := storeNow(ctx, tx)
	if err != nil {
		return Record{}, err
	}
	prev := cur.state(cur.Version)
	c.Version, c.ChangedAt, c.Scope, c.Modes, c.Previous = cur.Version+1, now, spec.Scope.String(), modeMap(spec.Modes), &prev
	ev, err := p.evidence.Policy(c)
	if err != nil {
		return Record{}, fmt.Errorf("build policy evidence: %w", err)
	}
	modes, err := encodeModes(spec.Modes)
	if err != nil {
		return Record{}, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO rollout_policies (version, kind, scope, modes, actor, reason, restored_version,
			restored_configuration, changed_at, evidence_id)
		VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, 0), $8, $9, $10)`,
		c.Version, string(c.Kind), c.Scope, modes, c.Actor, c.Reason, c.RestoredVersion, c.RestoredConfiguration, now, ev.ID)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return Record{}, fmt.Errorf("%w: another change recorded version %d first", ErrConflict, c.Version)
	}
	if err != nil {
		return Record{}, fmt.Errorf("record policy version %d: %w", c.Version, err)
	}
	if _, err := store.RearmPilots(ctx, tx, detectors.RuleLeaseExpired, []string{detectors.RuleRenewalPastMaxTTL}); err != nil {
		return Record{}, err
	}
	// Evidence last: appending holds the chain head lock until commit.
	if _, err := evidence.Append(ctx, tx, ev); err != nil {
		return Record{}, fmt.Errorf("append policy evidence: %w", err)
	}
	return Record{Version: c.Version, Kind: c.Kind, Spec: spec, Actor: c.Actor, Reason: c.Reason,
		RestoredVersion: c.RestoredVersion, RestoredConfiguration: c.RestoredConfiguration, ChangedAt: now, EvidenceID: ev.ID}, nil
}

// lockExclusive takes the policy's lock for the change's transaction,
// first, holding nothing else: it waits for the passes in flight (which hold
// it shared from their start), so their pilot findings are committed before
// the change arms them again, and passes starting meanwhile wait for the
// change and then read it.
func lockExclusive(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+policyLockKey+`)`); err != nil {
		return fmt.Errorf("lock the policy: %w", err)
	}
	return nil
}

// storeNow is the state store's time: every process records changes on
// one clock.
func storeNow(ctx context.Context, tx pgx.Tx) (time.Time, error) {
	var now time.Time
	if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return now, fmt.Errorf("read the state store's time: %w", err)
	}
	return now.UTC(), nil
}
