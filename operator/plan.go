package operator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target/engine"
)

// Plan is what a Request resolves to: the users to drop, and what was left
// out and why. Planning changes nothing.
type Plan struct {
	// Request is the request planned, its RequestID filled in.
	Request   Request
	PlannedAt time.Time
	// Items are the users to drop, one per database and user, ordered by
	// database and user. Items a guard will refuse are included: executing
	// them records the refusal and its evidence.
	Items []Item
	// Skipped are live leases the selector matched that cannot be revoked:
	// their user is known only as an audit HMAC, or no target database is
	// known for them. leaseguard cannot say these users are gone.
	Skipped []Skipped
	// Matched counts the ledger's leases the selector matched.
	Matched int
	// Gone counts matched leases left out because their user is gone:
	// revoked or expired in the ledger and the role absent from the target.
	Gone int
	// Unmanaged counts roles of the database that do not match the managed
	// pattern, or are built in, and were left alone (AllManaged only).
	Unmanaged int
	// Warnings are problems met while planning that did not stop it, such
	// as a target that could not be read.
	Warnings []string
}

// Item is one user to drop.
type Item struct {
	Database string `json:"database"`
	DBUser   string `json:"db_user"`
	// LeaseID is the lease behind the user, if the ledger knows one (the
	// most recent live one when there are several).
	LeaseID    string `json:"lease_id,omitempty"`
	LeaseState string `json:"lease_state,omitempty"`
	// Why says what selected the item.
	Why string `json:"why"`
	// Exists says whether the role existed in the target when planned;
	// Unverified says the target could not be read, so nobody knows.
	Exists     bool `json:"exists"`
	Unverified bool `json:"unverified,omitempty"`
	// Guard and Refusal name the guard that will refuse the item and why,
	// as far as the plan can tell (names, and role attributes read from
	// pg_roles); the revoker checks every guard again when it acts.
	Guard   string `json:"guard,omitempty"`
	Refusal string `json:"refusal,omitempty"`
}

// Skipped is a live lease the plan cannot act on.
type Skipped struct {
	LeaseID  string `json:"lease_id"`
	Database string `json:"database,omitempty"`
	DBUser   string `json:"db_user,omitempty"`
	Reason   string `json:"reason"`
}

// Plan resolves req to the users it names. Ledger selectors take the
// matching leases whose user may still exist: live (active) leases, and
// revoked or expired ones whose role is still in the target — Vault's own
// revocation failed for those. AllManaged takes every role of the database
// that matches the managed pattern. A request that names its RequestID
// (resuming an interrupted execution) also takes back that request's
// commands the interruption left without an outcome. Nothing is changed.
func (s *Service) Plan(ctx context.Context, req Request) (Plan, error) {
	if err := req.Validate(); err != nil {
		return Plan{}, err
	}
	if req.Database != "" {
		if !s.known(req.Database) {
			return Plan{}, invalid("no target database named %q is configured (known: %s)", req.Database, strings.Join(s.names(), ", "))
		}
	}
	now := s.d.Clock()
	resumed := req.RequestID != ""
	if !resumed {
		req.RequestID = newRequestID(now)
	}
	p := Plan{Request: req, PlannedAt: now.UTC()}
	var err error
	if req.AllManaged {
		err = s.planAllManaged(ctx, &p)
	} else {
		err = s.planLedger(ctx, &p)
	}
	if err == nil && resumed {
		err = s.planUnfinished(ctx, &p)
	}
	if err != nil {
		return Plan{}, err
	}
	sort.SliceStable(p.Items, func(i, j int) bool {
		a, b := p.Items[i], p.Items[j]
		if a.Database != b.Database {
			return a.Database < b.Database
		}
		return a.DBUser < b.DBUser
	})
	return p, nil
}

func (s *Service) planAllManaged(ctx context.Context, p *Plan) error {
	db := p.Request.Database
	roles, _, err := s.readTarget(ctx, db, nil)
	if err != nil {
		return fmt.Errorf("target %s: %w", db, err)
	}
	var names []string
	for name, a := range roles.roles {
		if a.BuiltIn || !s.d.Guard.ManagedPattern.MatchString(name) {
			p.Unmanaged++
			continue
		}
		names = append(names, name)
	}
	leases, err := store.LeasesOfUsers(ctx, s.d.State, db, names)
	if err != nil {
		return err
	}
	why := fmt.Sprintf("all managed roles of %s: matches %s", db, s.d.Guard.ManagedPattern)
	for _, name := range names {
		it := Item{Database: db, DBUser: name, Why: why, Exists: true}
		if l, ok := leases[name]; ok {
			it.LeaseID, it.LeaseState = l.LeaseID, string(l.State)
		} else {
			it.Why += "; no live lease in the ledger"
		}
		s.preview(&it, &roles)
		p.Items = append(p.Items, it)
	}
	return nil
}

type userKey struct{ db, user string }

func (s *Service) planLedger(ctx context.Context, p *Plan) error {
	req := p.Request
	f := store.LeaseFilter{LeaseID: req.LeaseID, Prefix: req.Prefix, EntityID: req.EntityID,
		TokenAccessor: req.TokenAccessor, Database: req.Database}
	if req.DBUser != "" {
		f.DBUsers = []string{req.DBUser}
	}
	leases, err := store.LeasesForSelector(ctx, s.d.State, f)
	if err != nil {
		return err
	}
	p.Matched = len(leases)

	// Read the selected users' roles in each target, once per target.
	users := map[string][]string{}
	for _, l := range leases {
		if l.Database != "" && l.DBUser != "" && !l.DBUserHMAC {
			users[l.Database] = append(users[l.Database], l.DBUser)
		}
	}
	roles := map[string]*targetRoles{}
	unreadable := map[string]error{}
	for db, us := range users {
		tr, ok, err := s.readTarget(ctx, db, us)
		if !ok {
			continue
		}
		if err != nil {
			unreadable[db] = err
			p.Warnings = append(p.Warnings, fmt.Sprintf("target %s could not be read (%v): its matched leases are all planned", db, err))
			continue
		}
		roles[db] = &tr
	}

	sel := req.Kind() + " " + req.Value()
	seen := map[userKey]int{}
	extra := map[int]int{}
	for _, l := range leases {
		active := l.State == store.StateActive
		if l.DBUser == "" || l.DBUserHMAC || l.Database == "" {
			if active {
				p.Skipped = append(p.Skipped, Skipped{LeaseID: l.LeaseID, Database: l.Database, DBUser: l.DBUser, Reason: unresolvable(l)})
			} else {
				p.Gone++ // over in Vault's view, and nothing to look up
			}
			continue
		}
		k := userKey{l.Database, l.DBUser}
		if i, dup := seen[k]; dup {
			extra[i]++
			continue
		}
		it := Item{Database: l.Database, DBUser: l.DBUser, LeaseID: l.LeaseID, LeaseState: string(l.State)}
		known := s.known(l.Database)
		tr := roles[l.Database]
		switch {
		case !known:
			if !active {
				p.Gone++
				continue
			}
			it.Why = fmt.Sprintf("%s matches; lease active", sel)
			it.Guard, it.Refusal = GuardUnknownTarget, fmt.Sprintf("no target database named %q is configured", l.Database)
		case tr == nil:
			it.Why = fmt.Sprintf("%s matches; lease %s", sel, l.State)
			it.Unverified = true
		default:
			_, it.Exists = tr.roles[l.DBUser]
			if !it.Exists && !active {
				p.Gone++
				continue
			}
			it.Why = fmt.Sprintf("%s matches; lease %s", sel, l.State)
			if !active {
				it.Why += " in the ledger but the role still exists"
			}
			s.preview(&it, tr)
		}
		seen[k] = len(p.Items)
		p.Items = append(p.Items, it)
	}
	for i, n := range extra {
		p.Items[i].Why += fmt.Sprintf(" (and %d more lease(s) of this user)", n)
	}

	if req.DBUser != "" {
		return s.planUnleasedUser(ctx, p, seen)
	}
	return nil
}

// planUnleasedUser adds the named user in every target (or the requested
// one) where the role exists but the ledger has no lease of it: a user
// created in an audit gap, or by hand, is still the operator's to drop.
func (s *Service) planUnleasedUser(ctx context.Context, p *Plan, seen map[userKey]int) error {
	req := p.Request
	dbs := s.names()
	if req.Database != "" {
		dbs = []string{req.Database}
	}
	for _, db := range dbs {
		if _, done := seen[userKey{db, req.DBUser}]; done {
			continue
		}
		tr, _, err := s.readTarget(ctx, db, []string{req.DBUser})
		if err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("target %s could not be read (%v): whether %s exists there is unknown", db, err, req.DBUser))
			continue
		}
		if _, ok := tr.roles[req.DBUser]; !ok {
			continue
		}
		it := Item{Database: db, DBUser: req.DBUser, Exists: true,
			Why: fmt.Sprintf("%s %s matches; role exists, no lease of it in the ledger", KindDBUser, req.DBUser)}
		s.preview(&it, &tr)
		p.Items = append(p.Items, it)
	}
	return nil
}

// planUnfinished adds the commands of this request that an earlier,
// interrupted execution claimed but did not record: their user may be gone
// already (its drop committed), so the selector alone would no longer find
// them, and only executing them again records their outcome.
func (s *Service) planUnfinished(ctx context.Context, p *Plan) error {
	req := p.Request
	open, err := store.UnfinishedRevocations(ctx, s.d.State, RuleOperatorRevoke)
	if err != nil {
		return err
	}
	planned := map[userKey]bool{}
	for _, it := range p.Items {
		planned[userKey{it.Database, it.DBUser}] = true
	}
	for _, r := range open {
		k := userKey{r.Database, r.DBUser}
		if planned[k] || r.CommandID != CommandID(req.RequestID, r.Database, r.DBUser, r.LeaseID, req.Reason, req.Actor) {
			continue
		}
		if req.Database != "" && r.Database != req.Database {
			continue
		}
		planned[k] = true
		it := Item{Database: r.Database, DBUser: r.DBUser, LeaseID: r.LeaseID,
			Why: "unfinished command of this request " + req.RequestID + " (resumed)"}
		if tr, ok, err := s.readTarget(ctx, r.Database, []string{r.DBUser}); !ok {
			it.Guard, it.Refusal = GuardUnknownTarget, fmt.Sprintf("no target database named %q is configured", r.Database)
		} else if err != nil {
			it.Unverified = true
		} else {
			_, it.Exists = tr.roles[r.DBUser]
			s.preview(&it, &tr)
		}
		p.Items = append(p.Items, it)
	}
	return nil
}

func unresolvable(l store.Lease) string {
	switch {
	case l.Database == "":
		return "no target database is known for the lease (LEASEGUARD_ROUTES)"
	case l.DBUserHMAC:
		return "the user name is known only as its audit HMAC"
	}
	return "the ledger does not know the lease's user"
}

// preview fills in the guard that will refuse it, as far as names and
// pg_roles attributes tell. The revoker re-checks everything when it acts.
func (s *Service) preview(it *Item, tr *targetRoles) {
	kind := tr.kind
	if kind == "" {
		kind = engine.KindPostgres
	}
	if err := s.d.Guard.CheckNameFor(kind, it.DBUser); err != nil {
		var r *revoker.Refusal
		if errors.As(err, &r) {
			it.Guard, it.Refusal = r.Guard, r.Reason
		} else {
			it.Guard, it.Refusal = "name", err.Error()
		}
		return
	}
	a, ok := tr.roles[it.DBUser]
	if !ok {
		return
	}
	switch {
	case a.Superuser:
		it.Guard, it.Refusal = revoker.GuardSuperuser, fmt.Sprintf("role %q is a superuser", it.DBUser)
	case it.DBUser == tr.currentUser || it.DBUser == tr.sessionUser:
		it.Guard, it.Refusal = revoker.GuardOwnRole, fmt.Sprintf("role %q is the revoker's own login role", it.DBUser)
	case a.Replication:
		it.Guard, it.Refusal = revoker.GuardReplication, fmt.Sprintf("role %q has REPLICATION", it.DBUser)
	case a.BypassRLS:
		it.Guard, it.Refusal = revoker.GuardBypassRLS, fmt.Sprintf("role %q has BYPASSRLS", it.DBUser)
	}
}

// newRequestID is the time of the request and 8 random hex digits: sortable
// and readable, unique enough for requests made by hand.
func newRequestID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// WillDrop reports whether the plan expects the item to be dropped: the
// role exists and no guard is known to refuse it.
func (it Item) WillDrop() bool { return it.Exists && it.Guard == "" }

// Expect says in a few words what executing the item should do.
func (it Item) Expect() string {
	switch {
	case it.Guard != "":
		return "would be refused: " + it.Guard
	case it.Unverified:
		return "unknown: target unreadable"
	case it.Exists:
		return "would be dropped"
	}
	return "already absent"
}
