package main

import (
	"context"
	"fmt"
	"time"

	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// mysqlTables is how many tables the database the users are granted
// SELECT on holds.
const mysqlTables = 3

// mysqlScenario drops MariaDB users through revoker.Executor, the path of
// a signed drop_role command for a mysql:// target (the engine's guards,
// named lock, ACCOUNT LOCK, KILL CONNECTION, REVOKE, DROP USER, the check
// against mysql.user and the processlist; outcome and evidence per
// command), against a serial DROP USER per user on one connection, each
// side on its own identical set of users, runs alternating which side
// goes first.
func (b *Bench) mysqlScenario(ctx context.Context) error {
	m, err := b.openMariaDB(ctx)
	if err != nil {
		return err
	}
	defer m.sweep(context.WithoutCancel(ctx))
	n := b.opt.mysqlUsers
	withM := func(f func(context.Context, *mariadb, int) (float64, error)) func(context.Context, int) (float64, error) {
		return func(ctx context.Context, r int) (float64, error) { return f(ctx, m, r) }
	}
	ours, base, err := b.alternate(ctx, "mysql", withM(b.mysqlLeaseguard), withM(b.mysqlBaseline), func() {})
	if err != nil {
		return err
	}
	v, bl := median(ours), median(base)
	b.results.add(row{figure: fmt.Sprintf("MariaDB revocations, %d users", n), value: v, baseline: bl, unit: "/s"})
	b.results.set("mysql_revocations_per_sec", v)
	b.results.set("mysql_drop_user_loop_per_sec", bl)
	b.results.set("mysql_revoker_ratio", v/bl)
	b.results.set("mysql_users", float64(n))
	b.results.note("mysql: %d MariaDB users made as Vault's mysql-database-plugin does (CREATE USER '{{name}}'@'%%' IDENTIFIED BY …; GRANT SELECT ON <db>.* TO it, "+
		"every user on the same database), %d holding a live session; revoker batches of %d signed drop_role commands per Executor call, "+
		"each user locked, its sessions killed, revoked, dropped and checked one at a time, evidence committed for each; baseline: DROP USER per user on one connection",
		n, b.opt.mysqlSessions, b.opt.revokeBatch)
	return nil
}

// mysqlUsers creates one side's database, users and sessions; the caller
// closes the sessions (the sweep drops the rest).
func (b *Bench) mysqlUsers(ctx context.Context, m *mariadb, what string) ([]string, *mysqlSessions, error) {
	db, err := m.appDatabase(ctx, what, mysqlTables)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, b.opt.mysqlUsers)
	for i := range names {
		names[i] = b.mysqlUserName("mysql")
	}
	pw := newPassword()
	if err := m.createUsers(ctx, names, pw, db); err != nil {
		return nil, nil, err
	}
	s, err := m.openSessions(ctx, names[:min(b.opt.mysqlSessions, len(names))], pw, db)
	if err != nil {
		return nil, nil, err
	}
	return names, s, nil
}

// mysqlLeaseguard drops the users through the Executor, in batches, as
// the revoker service does, and returns users per second.
func (b *Bench) mysqlLeaseguard(ctx context.Context, m *mariadb, r int) (float64, error) {
	stateSchema := b.schemaName(fmt.Sprintf("mystate%d", r+1))
	defer b.dropSchema(context.WithoutCancel(ctx), stateSchema)
	names, sess, err := b.mysqlUsers(ctx, m, fmt.Sprintf("myapp%d", r+1))
	defer sess.close()
	if err != nil {
		return 0, err
	}
	const db = "maria"
	rr, err := b.openRevoker(ctx, stateSchema, db, m.url)
	if err != nil {
		return 0, err
	}
	defer rr.close()
	st, reg, exec, issuer := rr.st, rr.reg, rr.exec, rr.issuer
	cmds := b.mysqlCommands(db, names, r)
	if err := issuer.Issue(ctx, cmds); err != nil {
		return 0, err
	}

	cs := sampleCPU()
	start := time.Now()
	var each []float64
	for lo := 0; lo < len(cmds); lo += b.opt.revokeBatch {
		// The Executor finishes a batch it started; an interrupt stops
		// the next.
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		done, err := executeAll(ctx, exec, cmds[lo:min(lo+b.opt.revokeBatch, len(cmds))])
		if err != nil {
			return 0, err
		}
		each = append(each, done...)
	}
	elapsed := time.Since(start)
	b.logf("mysql: run %d: revoker: %s", r+1, b.cpuSince(cs))
	if dropSecs, ok := histogramSum(reg, "leaseguard_revocation_batch_seconds"); ok {
		b.logf("mysql: run %d: %.0f%% of the revoker's %s in the engine's drops (%s users/s alone; per user %s), the rest claiming and recording outcomes with evidence",
			r+1, 100*dropSecs/elapsed.Seconds(), elapsed.Round(time.Millisecond), thousands(int64(float64(len(names))/dropSecs)), distOf(each))
	}
	if left, err := m.usersLeft(ctx, names); err != nil || left > 0 {
		return 0, fmt.Errorf("after the revoker: %d users left in mysql.user (%v)", left, err)
	}
	if err := b.mysqlEvidence(ctx, st, r, len(names)); err != nil {
		return 0, err
	}
	return float64(len(names)) / elapsed.Seconds(), nil
}

// mysqlCommands are the drop_role commands of the users, resting on an
// operator's word (a MySQL drop needs Vault's or an operator's).
func (b *Bench) mysqlCommands(db string, names []string, r int) []schemas.RevocationCommand {
	cmds := make([]schemas.RevocationCommand, len(names))
	now := time.Now().UTC()
	for i, u := range names {
		cmds[i] = schemas.RevocationCommand{
			ID: fmt.Sprintf("bench-%s-my%d-%d", b.sfx, r, i), Action: schemas.ActionDropRole,
			Issuer: "operator", Rule: "operator", Database: db, DBUser: u,
			LeaseID: fmt.Sprintf("mysql/creds/mysql/%s", randomString(24)), Reason: "benchmark",
			Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByOperator, CheckedAt: now, Detail: "benchmark"},
		}
	}
	return cmds
}

// mysqlEvidence checks that each of the n users dropped has its
// revocation evidence.
func (b *Bench) mysqlEvidence(ctx context.Context, st *store.Store, r, n int) error {
	var rows int
	if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM evidence_outbox WHERE type = 'io.leaseguard.revocation.v1'").Scan(&rows); err != nil {
		return err
	}
	if rows != n {
		return fmt.Errorf("%d revocation evidence events for %d users", rows, n)
	}
	b.logf("mysql: run %d: %d revocation evidence events", r+1, rows)
	return nil
}

// mysqlBaseline drops the users with DROP USER, one user per round trip
// over one connection.
func (b *Bench) mysqlBaseline(ctx context.Context, m *mariadb, r int) (float64, error) {
	names, sess, err := b.mysqlUsers(ctx, m, fmt.Sprintf("mybase%d", r+1))
	// DROP USER leaves the sessions running; they end after.
	defer sess.close()
	if err != nil {
		return 0, err
	}
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	cs := sampleCPU()
	start := time.Now()
	for _, u := range names {
		qctx, cancel := context.WithTimeout(ctx, mysqlQueryTimeout)
		_, err := conn.ExecContext(qctx, "DROP USER ?@'%'", u)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("baseline drop: %w", err)
		}
	}
	elapsed := time.Since(start)
	b.logf("mysql: run %d: DROP USER loop: %s", r+1, b.cpuSince(cs))
	if left, err := m.usersLeft(ctx, names); err != nil || left > 0 {
		return 0, fmt.Errorf("after the baseline: %d users left (%v)", left, err)
	}
	return float64(len(names)) / elapsed.Seconds(), nil
}

// executeAll runs a batch through the Executor and, as the revoker
// service does, runs again the commands handed back for a retry (their
// outcome could not be recorded: the state database did not answer in
// time on a loaded machine); a retried drop may find its user gone. It
// returns each drop's duration in milliseconds.
func executeAll(ctx context.Context, exec *revoker.Executor, batch []schemas.RevocationCommand) ([]float64, error) {
	var each []float64
	for attempt := 1; len(batch) > 0; attempt++ {
		var again []schemas.RevocationCommand
		for _, e := range exec.Execute(ctx, batch, nil) {
			ok := e.Result.Outcome == schemas.OutcomeDropped || (attempt > 1 && e.Result.Outcome == schemas.OutcomeAlreadyAbsent)
			switch {
			case !e.Recorded && e.Retry && attempt < 3:
				again = append(again, e.Command)
			case !e.Recorded:
				return nil, fmt.Errorf("revocation of %s not recorded: %v", e.Command.DBUser, e.Err)
			case !ok:
				return nil, fmt.Errorf("revocation of %s: %s: %s", e.Command.DBUser, e.Result.Outcome, e.Result.Reason)
			default:
				each = append(each, ms(e.Result.FinishedAt.Sub(e.Result.StartedAt)))
			}
		}
		batch = again
	}
	return each, nil
}
