package target

import (
	"sort"

	"github.com/leaseguard/leaseguard/target/engine"
)

// AllNames lists every target, of every engine, in a stable order.
func (s *Set) AllNames() []string {
	out := s.Names()
	for n := range s.mysqls {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Kind is the engine of the named target.
func (s *Set) Kind(name string) (engine.Kind, bool) {
	if _, ok := s.pools[name]; ok {
		return engine.KindPostgres, true
	}
	if _, ok := s.mysqls[name]; ok {
		return engine.KindMySQL, true
	}
	return "", false
}

// Engine returns the named target through the engine interface.
func (s *Set) Engine(name string) (engine.Engine, bool) {
	if p, ok := s.pools[name]; ok {
		return Postgres{Pool: p}, true
	}
	if e, ok := s.mysqls[name]; ok {
		return e, true
	}
	return nil, false
}

// Revoker returns the named target if its engine drops its accounts
// itself (MySQL); PostgreSQL targets are dropped by the revoker's own
// batched transactions, through Pool.
func (s *Set) Revoker(name string) (engine.Revoker, bool) {
	e, ok := s.mysqls[name]
	return e, ok
}
