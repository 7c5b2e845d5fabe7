package observer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/leaseguard/leaseguard/target/engine"
)

// Targets that share a server. PostgreSQL roles are the cluster's, not a
// database's, and MySQL and MariaDB accounts (mysql.user) the server's:
// two targets that are two databases of one server read the same roles. A
// role is then judged for the server, against the leases of every target
// on it (observed.Pass.ServerTargets): a lease that names a sibling target
// accounts for the role as well as one naming this target, and a finding
// about a role has one id per server, whichever target's pass records it.
// Sessions stay the database's (pg_stat_activity's datname).
//
// A server is known by its key: for PostgreSQL the cluster's system
// identifier (pg_control_system(), executable by any role) and the port
// it listens on (current_setting('port'), readable by any role); for MySQL
// and MariaDB the server's identity (mysql.Engine.Identity: server_uuid, or
// a digest of host name, port, data directory and server id). A physical
// replica has its primary's system identifier, and its roles are the
// primary's: at the same port they are one server here, which is what they
// are for roles. No superuser or pg_read_all_settings is needed
// (data_directory would need one of them).

// serverKeyTTL: how long the server key of a target not passed over by
// this process is reused before it is read again (a failed read is retried
// after it too). A target's own key is read at each of its passes, on the
// connection the pass uses: only targets another process observes, and
// the first pass's siblings, are read here, a few at a time.
const serverKeyTTL = 10 * time.Minute

// keyReadsAtOnce bounds the reads of other targets' keys in flight (each
// may open a connection).
const keyReadsAtOnce = 4

// serverKeySQL reads a PostgreSQL target's server key.
const serverKeySQL = `SELECT (SELECT system_identifier FROM pg_control_system())::text || ':' || current_setting('port')`

// serverKeys caches the server key of every configured target.
type serverKeys struct {
	// refresh serialises the reads, so that the passes of many targets
	// read each stale key once.
	refresh sync.Mutex
	mu      sync.Mutex
	m       map[string]serverKey
}

type serverKey struct {
	key string
	err error
	at  time.Time
}

// server is what a pass is told of its target's server.
type server struct {
	key string
	// targets share the server, this one included, sorted; unknown are
	// the configured targets whose key could not be read: they may share
	// it.
	targets, unknown []string
}

// server reads which configured targets share db's server. A target whose
// own key cannot be read has no pass: judged alone, its roles' leases under
// a sibling target would go unseen.
func (o *Observer) server(ctx context.Context, db string) (server, error) {
	rctx, cancel := context.WithTimeout(ctx, o.cfg.ReadTimeout)
	key, err := o.readServerKey(rctx, db)
	cancel()
	if err != nil {
		return server{}, fmt.Errorf("target %s: read which server it is on: %w", db, err)
	}
	own := serverKey{key: key, at: time.Now()}
	o.keys.mu.Lock()
	if o.keys.m == nil {
		o.keys.m = map[string]serverKey{}
	}
	o.keys.m[db] = own
	o.keys.mu.Unlock()
	names := o.allTargets()
	keys := o.serverKeys(ctx, names)
	s := server{key: own.key}
	for _, n := range names {
		switch k := keys[n]; {
		case k.err != nil:
			s.unknown = append(s.unknown, n)
		case k.key == own.key:
			s.targets = append(s.targets, n)
		}
	}
	return s, nil
}

// allTargets are every configured target, observed by this process or not.
func (o *Observer) allTargets() []string {
	var names []string
	if mt, ok := o.Targets.(mysqlTargets); ok {
		names = mt.AllNames()
	} else {
		names = o.Targets.Names()
	}
	names = slices.Clone(names)
	slices.Sort(names)
	return slices.Compact(names)
}

// serverKeys returns the keys of names, reading those not read within
// serverKeyTTL (keyReadsAtOnce at a time, each within ReadTimeout).
func (o *Observer) serverKeys(ctx context.Context, names []string) map[string]serverKey {
	o.keys.refresh.Lock()
	defer o.keys.refresh.Unlock()
	now := time.Now()
	out := make(map[string]serverKey, len(names))
	var stale []string
	o.keys.mu.Lock()
	for _, n := range names {
		k, ok := o.keys.m[n]
		if ok && now.Sub(k.at) < serverKeyTTL {
			out[n] = k
			continue
		}
		stale = append(stale, n)
	}
	o.keys.mu.Unlock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	sem := make(chan struct{}, keyReadsAtOnce)
	for _, n := range stale {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, o.cfg.ReadTimeout)
			defer cancel()
			key, err := o.readServerKey(rctx, n)
			mu.Lock()
			out[n] = serverKey{key: key, err: err, at: now}
			mu.Unlock()
		})
	}
	wg.Wait()
	o.keys.mu.Lock()
	if o.keys.m == nil {
		o.keys.m = map[string]serverKey{}
	}
	for _, n := range stale {
		// A read cut short by the caller's end is not kept.
		if ctx.Err() == nil {
			o.keys.m[n] = out[n]
		}
	}
	o.keys.mu.Unlock()
	return out
}

// readServerKey reads the key of one target.
func (o *Observer) readServerKey(ctx context.Context, db string) (string, error) {
	if pool, ok := o.Targets.Pool(db); ok {
		var key string
		if err := pool.QueryRow(ctx, serverKeySQL).Scan(&key); err != nil {
			return "", err
		}
		return "postgres:" + key, nil
	}
	if mt, ok := o.Targets.(mysqlTargets); ok {
		if e, ok := mt.Engine(db); ok && e.Kind() == engine.KindMySQL {
			id, err := e.Identity(ctx)
			if err != nil {
				return "", err
			}
			return id.SystemIdentifier, nil
		}
	}
	return "", fmt.Errorf("unknown target %q", db)
}
