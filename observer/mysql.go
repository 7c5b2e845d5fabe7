package observer

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/target/engine"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// MySQL and MariaDB targets. The observer's model (db_roles, db_sessions,
// the rules) is PostgreSQL's: roles keyed by oid, sessions by (pid,
// backend_start). A MySQL server has neither, so the read maps what it has
// onto them:
//
//   - an account is a name, all its hosts together (mysql.user); its oid is
//     mysql.AccountKey(name), a digest of the name: stable, so a session
//     whose name has no account left is a ghost whose former user is known
//     (the processlist keeps the name, unlike pg_stat_activity). A name
//     dropped and created again keeps its key: MySQL keeps nothing that
//     tells the two accounts apart. Two names of one key would make a ghost
//     look alive, so a read with such a pair fails, loudly;
//   - a session is a connection id with the server's start time as its
//     backend_start: ids are never reused while the server runs, and the
//     start (UNIX_TIMESTAMP() minus Uptime, read in one statement) stays the
//     same until it restarts. The processlist has no connection start (its
//     TIME is the time in the current state), so backend_start is a lower
//     bound of the session's start, not the start itself: the rules do not
//     tell a MySQL session started before a lease's end from one after;
//   - every connection read is a client's ("client backend"): the server's
//     own threads are left out of the read.

// mysqlTargets is what a target set has when some of its targets are MySQL
// or MariaDB (target.Set). A set without it has PostgreSQL targets only.
type mysqlTargets interface {
	AllNames() []string
	Engine(name string) (engine.Engine, bool)
}

// mysqlReader is a MySQL target as the observer reads it (*mysql.Engine).
type mysqlReader interface {
	Observe(ctx context.Context) (mysql.Observation, error)
}

var _ mysqlReader = (*mysql.Engine)(nil)

// mysqlTarget returns the named target if it is a MySQL or MariaDB one.
func (o *Observer) mysqlTarget(db string) (mysqlReader, bool) {
	mt, ok := o.Targets.(mysqlTargets)
	if !ok {
		return nil, false
	}
	e, ok := mt.Engine(db)
	if !ok || e.Kind() != engine.KindMySQL {
		return nil, false
	}
	r, ok := e.(mysqlReader)
	return r, ok
}

// readMySQL takes a snapshot of a MySQL target: its sessions, then its
// accounts (see Snapshot for why the order matters), mapped as above.
func readMySQL(ctx context.Context, m mysqlReader) ([]observed.DBSession, []observed.DBRole, error) {
	obs, err := m.Observe(ctx)
	if err != nil {
		return nil, nil, err
	}
	names := map[uint32]string{}
	roles := make([]observed.DBRole, 0, len(obs.Accounts))
	for _, a := range obs.Accounts {
		k, err := accountKey(names, a.Name)
		if err != nil {
			return nil, nil, err
		}
		roles = append(roles, observed.DBRole{OID: k, Name: a.Name, CanLogin: a.CanLogin, Superuser: a.Superuser})
	}
	sessions := make([]observed.DBSession, 0, len(obs.Sessions))
	for _, s := range obs.Sessions {
		k, err := accountKey(names, s.User)
		if err != nil {
			return nil, nil, err
		}
		d := observed.DBSession{PID: int32(s.ID), BackendStart: obs.ServerStart, UserOID: k, UserName: s.User,
			ClientAddr: s.Addr, ClientPort: s.Port, Datname: s.DB, BackendType: "client backend"}
		if s.ID <= 0 || s.ID > math.MaxInt32 {
			// Past a pid's range: counted as hidden, never tracked under
			// a truncated id.
			d.PID, d.BackendStart = 0, time.Time{}
		}
		sessions = append(sessions, d)
	}
	return sessions, roles, nil
}

// accountKey is name's key, checked against the names read so far.
func accountKey(names map[uint32]string, name string) (uint32, error) {
	k := mysql.AccountKey(name)
	if other, ok := names[k]; ok && other != name {
		return 0, fmt.Errorf("users %q and %q share the observer's key %d: the observer cannot tell their sessions apart", other, name, k)
	}
	names[k] = name
	return k, nil
}
