package operator

import (
	"context"
	"fmt"
	"time"

	"github.com/leaseguard/leaseguard/target/engine"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// engineTargets is what a target set has when some targets are not
// PostgreSQL (target.Set): each is read through its engine.
type engineTargets interface {
	Engine(name string) (engine.Engine, bool)
	AllNames() []string
}

// names lists every target, of every engine.
func (s *Service) names() []string {
	if et, ok := s.d.Targets.(engineTargets); ok {
		return et.AllNames()
	}
	return s.d.Targets.Names()
}

// known reports whether a target of that name is configured.
func (s *Service) known(db string) bool {
	if _, ok := s.d.Targets.Pool(db); ok {
		return true
	}
	if et, ok := s.d.Targets.(engineTargets); ok {
		_, ok = et.Engine(db)
		return ok
	}
	return false
}

// readTarget reads the named roles (nil: every role) of a target of any
// engine; ok is false when no target has that name.
func (s *Service) readTarget(ctx context.Context, db string, names []string) (tr targetRoles, ok bool, err error) {
	if pool, found := s.d.Targets.Pool(db); found {
		tr, err = readRoles(ctx, pool, names)
		return tr, true, err
	}
	et, isSet := s.d.Targets.(engineTargets)
	if !isSet {
		return tr, false, nil
	}
	e, found := et.Engine(db)
	if !found {
		return tr, false, nil
	}
	tr, err = readAccounts(ctx, e, names)
	return tr, true, err
}

// readAccounts reads a MySQL target's accounts for the plan: the server's
// own are built in, global SUPER is a superuser. The revoker's own account
// is not previewed here; the revoker refuses it when it acts.
func readAccounts(ctx context.Context, e engine.Engine, names []string) (targetRoles, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tr := targetRoles{kind: e.Kind(), roles: map[string]roleAttrs{}}
	accts, err := e.Accounts(ctx, nil)
	if err != nil {
		return tr, fmt.Errorf("read accounts: %w", err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, a := range accts {
		if names == nil || want[a.Name] {
			tr.roles[a.Name] = roleAttrs{BuiltIn: mysql.BuiltIn(a.Name), Superuser: a.Superuser}
		}
	}
	return tr, nil
}
