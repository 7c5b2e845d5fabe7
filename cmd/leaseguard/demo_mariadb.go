package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// demoMariaDBURL is the local MariaDB the demo plays its MySQL part on
// when it answers (make test and CI run one there); demo --mariadb names
// another.
const demoMariaDBURL = "mysql://root@127.0.0.1:3306/"

// The demo's MariaDB target and the TTL it gives the mysql mount's role:
// MySQL keeps no expiry, so the ledger takes it from LEASEGUARD_ROLE_TTLS.
const (
	demoMariaTarget = "maria"
	demoMariaTTL    = 4 * time.Second
)

// demoMaria is the demo's MariaDB part.
type demoMaria struct {
	url    string
	db     *sql.DB
	leases []*demoMyLease
}

type demoMyLease struct {
	label, story string
	cred         vaultsim.Cred
	// session is a client connection held open as the user.
	session   *sql.Conn
	sessionDB *sql.DB
	seen      map[string]bool
	result    *revoker.Executed
}

// openDemoMaria connects to the local MariaDB; on failure it says why the
// MariaDB part is skipped.
func openDemoMaria(ctx context.Context, url string) (*demoMaria, error) {
	if url == "" {
		return nil, errors.New("--mariadb is empty")
	}
	cfg, err := mysql.ParseURL(url)
	if err != nil {
		return nil, err
	}
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	// A killed client session makes the driver log to stderr; the demo's
	// narration says what happened.
	_ = driver.SetLogger(log.New(io.Discard, "", 0))
	db := sql.OpenDB(conn)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &demoMaria{url: url, db: db}, nil
}

// withMaria adds the MariaDB target next to PostgreSQL's, routes the mysql
// mount to it and gives its role a TTL.
func withMaria(cfg *Config, url string) {
	cfg.Targets = "pg=" + cfg.DatabaseURL + "," + demoMariaTarget + "=" + url
	cfg.Routes = "postgres=pg,mysql=" + demoMariaTarget
	cfg.RoleTTLs = fmt.Sprintf("mysql/reporting=%s", demoMariaTTL)
}

// mariaWorkload issues two credentials on MariaDB as Vault's mysql plugin
// would (two hosts each); F's client holds a session open.
func (d *demo) mariaWorkload(ctx context.Context) ([][]byte, error) {
	m := d.maria
	sim := &vaultsim.Sim{Mount: "mysql", DisplayName: "approle", EntityID: "2f6e0c1a-demo-" + d.sfx, RemoteAddress: "10.20.30.40"}
	var lines [][]byte
	for _, x := range []struct{ label, story string }{
		{"F", "MariaDB: expires while its client is still connected"},
		{"G", "MariaDB: expires; Vault's revocation never comes"},
	} {
		c, l, err := sim.IssueMySQL(ctx, m.db, "reporting", demoMariaTTL, "GRANT SELECT ON mysql.db TO {{name}}")
		if err != nil {
			return nil, err
		}
		m.leases = append(m.leases, &demoMyLease{label: x.label, story: x.story, cred: c, seen: map[string]bool{}})
		lines = append(lines, l...)
	}
	f := m.leases[0]
	return lines, m.sessionAs(ctx, f)
}

// sessionAs opens and holds a client session as the lease's user.
func (m *demoMaria) sessionAs(ctx context.Context, l *demoMyLease) error {
	cfg, err := mysql.ParseURL(m.url)
	if err != nil {
		return err
	}
	cfg.User, cfg.Passwd = l.cred.Username, l.cred.Password
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return err
	}
	l.sessionDB = sql.OpenDB(conn)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if l.session, err = l.sessionDB.Conn(sctx); err != nil {
		return fmt.Errorf("connect to MariaDB as %s: %w", l.cred.Username, err)
	}
	return nil
}

// mariaWatch waits for the MariaDB leases to expire in the ledger, then
// revokes them as an operator would with leaseguard revoke: MySQL keeps no
// expiry and the demo has no Vault to ask, so no drop can rest on the
// server or on Vault; it rests on the operator, and the evidence says so.
func (d *demo) mariaWatch(ctx context.Context, deadline time.Time) error {
	for _, l := range d.maria.leases {
		if err := d.waitExpired(ctx, l, deadline); err != nil {
			return err
		}
	}
	d.say("MariaDB      no VALID UNTIL there and no Vault to ask: the lease-expired rule cannot corroborate; an operator revokes")
	svc, err := d.operator()
	if err != nil {
		return err
	}
	for _, l := range d.maria.leases {
		if err := d.operatorRevoke(ctx, svc, l); err != nil {
			return err
		}
	}
	return nil
}

// waitExpired narrates the lease's ledger entry until it is past its
// expiry and the grace.
func (d *demo) waitExpired(ctx context.Context, l *demoMyLease, deadline time.Time) error {
	for ctx.Err() == nil && time.Now().Before(deadline) {
		lease, err := d.p.store.Lease(ctx, l.cred.LeaseID)
		if err == nil && !l.seen["tracked"] {
			l.seen["tracked"] = true
			d.say("ledger       %s tracked: %s", l.label, l.cred.LeaseID)
		}
		if err == nil && lease.ExpireAt != nil {
			if !l.seen["expiry"] {
				l.seen["expiry"] = true
				d.say("ledger       %s expires %s (from %s: mysql.user keeps no expiry)", l.label, lease.ExpireAt.Local().Format("15:04:05"), lease.ExpireSource)
			}
			if time.Now().After(lease.ExpireAt.Add(d.cfg.ExpiryGrace)) {
				return nil
			}
		}
		pauseFor(ctx, 200*time.Millisecond)
	}
	return fmt.Errorf("MariaDB lease %s did not expire in the ledger in time", l.label)
}

func pauseFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// operator is leaseguard revoke's service, on the demo's pipeline.
func (d *demo) operator() (*operator.Service, error) {
	logger := newLogger(io.Discard, "error", "text")
	exec, err := newOperatorExecutor(d.cfg, d.p.store, d.p.targets, logger)
	if err != nil {
		return nil, err
	}
	return operator.New(operator.Deps{State: d.p.store.Pool(), Targets: d.p.targets, Guard: d.cfg.dropperConfig().Guard,
		Batch: d.cfg.RevocationBatch, Logger: logger, Executor: exec.executor, Issuer: exec.issuer})
}

// operatorRevoke plans and carries out the revocation of one lease, as
// leaseguard revoke --lease-id … --yes does.
func (d *demo) operatorRevoke(ctx context.Context, svc *operator.Service, l *demoMyLease) error {
	req := operator.Request{Selector: operator.Selector{LeaseID: l.cred.LeaseID},
		Reason: "lease expired, no revocation from Vault", Actor: "demo-operator"}
	d.say("operator     leaseguard revoke --lease-id %s --reason %q --yes", l.cred.LeaseID, req.Reason)
	plan, err := svc.Plan(ctx, req)
	if err != nil {
		return err
	}
	res, err := svc.Execute(ctx, plan, nil)
	if err != nil {
		return err
	}
	for i := range res {
		if res[i].Result.DBUser == l.cred.Username {
			l.result = &res[i]
		}
	}
	if l.result == nil {
		return fmt.Errorf("the operator's plan for %s did not select %s", l.label, l.cred.Username)
	}
	r := l.result.Result
	d.say("revoker      %s: %s on the operator's word (corroboration %q), %d session(s) killed; statements: %s", l.label, r.Outcome,
		l.result.Command.Corroboration.Source, r.SessionsTerminated, strings.Join(r.Statements, "; "))
	return nil
}

// mariaRows are the MariaDB part's rows of the summary table; it returns
// how many expectations were not met.
func (d *demo) mariaRows(ctx context.Context, w io.Writer) int {
	failures := 0
	for _, l := range d.maria.leases {
		lease, _ := d.p.store.Lease(ctx, l.cred.LeaseID)
		hosts, sessions := d.maria.left(ctx, l.cred.Username)
		inDB := "gone"
		if hosts > 0 {
			inDB = fmt.Sprintf("present (%d hosts)", hosts)
		}
		action := "none"
		revs, _ := store.RevocationsByUser(ctx, d.p.store.Pool(), demoMariaTarget, l.cred.Username)
		if len(revs) > 0 {
			last := revs[len(revs)-1]
			action = string(last.Outcome)
			if last.Result != nil && last.Result.SessionsTerminated > 0 {
				action += fmt.Sprintf(" (%d session cut)", last.Result.SessionsTerminated)
			}
		}
		verdict := "ok"
		if hosts != 0 || sessions != 0 || len(revs) == 0 || revs[len(revs)-1].Outcome != schemas.OutcomeDropped {
			verdict = "NOT MET"
			failures++
		}
		fmt.Fprintf(w, "%s %s\t%s\t%s\t%s\t%s\t%s\n", l.label, l.cred.Role+"@mariadb", "issued", lease.State, inDB, action, verdict)
	}
	return failures
}

// left counts the user's hosts in mysql.user and its sessions in the
// processlist.
func (m *demoMaria) left(ctx context.Context, user string) (hosts, sessions int) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.db.QueryRowContext(ctx, "SELECT count(*) FROM mysql.user WHERE User = ?", user).Scan(&hosts); err != nil {
		hosts = -1
	}
	if err := m.db.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ?", user).Scan(&sessions); err != nil {
		sessions = -1
	}
	return hosts, sessions
}

// sessionEnded reports whether the held client session was ended by the
// server (the revoker's KILL CONNECTION).
func (l *demoMyLease) sessionEnded(ctx context.Context) bool {
	if l.session == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := l.session.PingContext(ctx)
	return err != nil && !errors.Is(err, context.DeadlineExceeded)
}

// cleanup removes every account the MariaDB part made.
func (m *demoMaria) cleanup(ctx context.Context) {
	for _, l := range m.leases {
		if l.session != nil {
			_ = l.session.Close()
			_ = l.sessionDB.Close()
		}
		for _, h := range []string{"%", "localhost"} {
			_, _ = m.db.ExecContext(ctx, "DROP USER IF EXISTS ?@?", l.cred.Username, h)
		}
	}
	_ = m.db.Close()
}

// settleEvidence waits (up to 5 s) for the relay to deliver the MariaDB
// revocations' evidence.
func (d *demo) settleEvidence(ctx context.Context) {
	deadline := time.Now().Add(5 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		all := true
		for _, l := range d.maria.leases {
			all = all && d.relayed(l.cred.Username)
		}
		if all {
			return
		}
		pauseFor(ctx, 100*time.Millisecond)
	}
}

// relayed reports whether a revocation event of the user was relayed.
func (d *demo) relayed(user string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range d.events {
		if ev.Type == "io.leaseguard.revocation.v1" && strings.HasSuffix(ev.Subject, "/"+user) {
			return true
		}
	}
	return false
}

// mariaSessions says whether the client session held as F was ended; it
// returns 1 when it was not.
func (d *demo) mariaSessions(ctx context.Context) int {
	f := d.maria.leases[0]
	if f.sessionEnded(ctx) {
		fmt.Fprintf(d.out, "MariaDB: the client session %s held as %s was ended by the server (KILL CONNECTION)\n", f.label, f.cred.Username)
		return 0
	}
	fmt.Fprintf(d.out, "MariaDB: the client session %s held as %s is still alive: NOT MET\n", f.label, f.cred.Username)
	return 1
}
