package revoker

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pause"
)

// afterCheck records RoleAbsentAfter and SessionsLeftAfter for items. It
// runs even if ctx has ended: the outcome rests on it.
//
// Sessions terminated inside the transaction take a moment to leave
// pg_stat_activity, so the check is repeated for a while. Sessions of an
// item that may be terminated and that are still there after half of
// d.settle (ones that logged in between the terminate and the commit, or
// slow to die) are terminated by the role's oid, and the check repeated
// until none is left or d.settle has passed. A session signalled in both
// places is counted twice in SessionsTerminated.
func (d *Dropper) afterCheck(ctx context.Context, pool *pgxpool.Pool, items []*item) {
	if len(items) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.statementTimeout+d.settle)
	defer cancel()

	fail := func(err error) {
		for _, it := range items {
			msg := "check after the drop: " + err.Error()
			if it.res.Reason != "" {
				msg = it.res.Reason + "; " + msg
			}
			it.res.Reason = msg
			var pgErr *pgconn.PgError
			if it.res.SQLState == "" && errors.As(err, &pgErr) {
				it.res.SQLState = pgErr.Code
			}
		}
	}
	start := time.Now()
	terminateAt, deadline := start.Add(d.settle/2), start.Add(d.settle)
	terminated := false
	_, err := pause.Until(ctx, d.settle, func() (struct{}, bool, error) {
		if err := d.check(ctx, pool, items); err != nil {
			return struct{}{}, false, err
		}
		var left []*item
		for _, it := range items {
			if it.res.SessionsLeftAfter > 0 {
				left = append(left, it)
			}
		}
		if len(left) == 0 {
			return struct{}{}, true, nil
		}
		if now := time.Now(); !terminated && !now.Before(terminateAt) && now.Before(deadline) {
			terminated = true
			return struct{}{}, false, d.terminateByOID(ctx, pool, left)
		}
		return struct{}{}, false, nil
	})
	if err != nil {
		fail(err)
	}
}

// terminateByOID terminates the sessions of the items that may be
// terminated, matched by the role's oid only.
// Those of a role found absent are ended only while no role has its oid.
func (d *Dropper) terminateByOID(ctx context.Context, pool *pgxpool.Pool, items []*item) error {
	var ours, ghosts []*item
	for _, it := range items {
		switch {
		case !it.mayTerminate || it.role.OID == 0:
		case it.state == stateAbsent:
			ghosts = append(ghosts, it)
		default:
			ours = append(ours, it)
		}
	}
	if err := terminateOIDs(ctx, pool, terminateByOIDSQL, ours); err != nil {
		return err
	}
	return terminateOIDs(ctx, pool, terminateGhostsByOIDSQL, ghosts)
}

// terminateOIDs runs sql, a terminate by oid, for items' roles and counts
// what it terminated in their results.
func terminateOIDs(ctx context.Context, pool *pgxpool.Pool, sql string, items []*item) error {
	if len(items) == 0 {
		return nil
	}
	oids := make([]uint32, 0, len(items))
	byOID := make(map[uint32]*item, len(items))
	for _, it := range items {
		if _, dup := byOID[it.role.OID]; !dup {
			oids = append(oids, it.role.OID)
		}
		byOID[it.role.OID] = it
	}
	for _, it := range byOID {
		it.res.Statements = append(it.res.Statements, sql)
	}
	counts, err := queryCounts[uint32](ctx, pool, sql, oids)
	if err != nil {
		return err
	}
	for oid, n := range counts {
		byOID[oid].res.SessionsTerminated += n
	}
	return nil
}

func (d *Dropper) check(ctx context.Context, pool *pgxpool.Pool, items []*item) error {
	names := make([]string, len(items))
	oids := make([]uint32, len(items))
	byName := make(map[string]*item, len(items))
	for i, it := range items {
		names[i], oids[i] = it.name, it.role.OID
		byName[it.name] = it
	}
	rows, err := pool.Query(ctx, afterSQL, names, oids)
	if err != nil {
		return err
	}
	var name string
	var absent bool
	var sessions int
	_, err = pgx.ForEachRow(rows, []any{&name, &absent, &sessions}, func() error {
		if it, ok := byName[name]; ok {
			it.res.RoleAbsentAfter = absent
			it.res.SessionsLeftAfter = sessions
		}
		return nil
	})
	return err
}
