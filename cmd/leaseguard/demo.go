package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/store"
)

func (m *Main) demoCommand() *cobra.Command {
	var timeout time.Duration
	var maria string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "play a small Vault workload on local PostgreSQL and embedded NATS",
		Long: "Demo plays a small Vault workload against the PostgreSQL of LEASEGUARD_DATABASE_URL and an\n" +
			"embedded JetStream server, in a schema and users of its own, narrates what leaseguard does\n" +
			"about it, and removes what it made.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return demoCmd(cmd.Context(), m, timeout, maria) },
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 50*time.Second, "give up if the workload has not played out by then")
	cmd.Flags().StringVar(&maria, "mariadb", demoMariaDBURL, "the MariaDB or MySQL server (root) of the MySQL part; when it does not answer, that part is skipped, saying so")
	return cmd
}

// demoDatabaseURL is the local PostgreSQL that make demo starts.
const demoDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// demoCmd plays a small Vault workload against the local PostgreSQL and an
// embedded JetStream server and narrates what leaseguard does about it.
func demoCmd(ctx context.Context, m *Main, timeout time.Duration, mariaURL string) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	// The demo always runs on embedded defaults, in its own schema and
	// data directory, and removes them at the end. Its database is the
	// local test server unless LEASEGUARD_DATABASE_URL names another.
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = demoDatabaseURL
	}
	sfx := randomSuffix()
	dataDir, err := os.MkdirTemp("", "leaseguard-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	cfg.DatabaseSchema = "leaseguard_demo_" + sfx
	cfg.DataDir = dataDir
	cfg.NATSURL, cfg.NATSListen = "", ""
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.ExpiryGrace = 2 * time.Second
	cfg.DetectInterval = 250 * time.Millisecond
	cfg.CommandSigningKey, cfg.CommandVerifyKeys = "", ""
	cfg.Instance = "demo"
	cfg.Targets, cfg.Routes = "", ""
	// The demo narrates the lease path; the observer (which would also act
	// on unrelated users of this server) stays off.
	cfg.Roles = "ingest,detectors,revoker,relay"
	// Nothing is enforced unless a scope says where. The demo's schema and
	// users are its own, so it enforces everywhere (a real rollout pilots
	// first: leaseguard pilot report, then leaseguard scope expand).
	cfg.EnforceScope = "*"
	// The MariaDB part runs when the local MariaDB answers; without it the
	// demo says so and plays the PostgreSQL part alone (make demo sets up
	// PostgreSQL only).
	maria, mariaErr := openDemoMaria(ctx, mariaURL)
	if maria != nil {
		withMaria(&cfg, mariaURL)
	}
	if err := cfg.Validate(); err != nil {
		return configError{err}
	}

	ctx, cancel := context.WithTimeout(ctx, timeout+15*time.Second)
	defer cancel()
	d := &demo{m: m, cfg: cfg, sfx: sfx, start: time.Now(), out: &lockedWriter{w: m.Stdout}, maria: maria, mariaErr: mariaErr}
	defer d.cleanup()
	return d.run(ctx, timeout)
}

type demoLease struct {
	label    string
	cred     vaultsim.Cred
	story    string
	wantGone bool
	vault    string // what Vault did
	conn     *pgx.Conn
	seen     map[string]bool
}

type demo struct {
	m     *Main
	cfg   Config
	sfx   string
	start time.Time
	out   io.Writer

	admin     *pgxpool.Pool
	p         *pipeline
	appSchema string
	leases    []*demoLease

	mu     sync.Mutex
	events []evidence.Event
	raw    [][]byte

	// maria is the MariaDB part; nil when skipped, mariaErr saying why.
	maria    *demoMaria
	mariaErr error
}

// lockedWriter writes one call at a time: the demo's evidence subscription
// writes from its own goroutine.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "%6.1fs  %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) run(ctx context.Context, timeout time.Duration) error {
	fmt.Fprintln(d.out, "leaseguard demo: a Vault database secrets engine, simulated on this PostgreSQL, audited into an embedded JetStream")
	if d.maria == nil {
		fmt.Fprintf(d.out, "MariaDB part SKIPPED: no MariaDB answers (%v); the PostgreSQL part runs alone\n", d.mariaErr)
	} else {
		fmt.Fprintf(d.out, "MariaDB part: the same simulated Vault issues users on the MariaDB at %s (target %q)\n", redactURL(d.maria.url), demoMariaTarget)
	}
	fmt.Fprintln(d.out)
	var err error
	if d.admin, err = pgxpool.New(ctx, d.cfg.DatabaseURL); err != nil {
		return err
	}
	if err := d.admin.Ping(ctx); err != nil {
		return fmt.Errorf("PostgreSQL at %s: %w (make demo starts it)", redactURL(d.cfg.DatabaseURL), err)
	}
	// The narration is the demo's output; LEASEGUARD_LOG_LEVEL=debug adds
	// the pipeline's own log on stderr.
	logger := newLogger(io.Discard, "error", "text")
	if d.cfg.LogLevel == "debug" {
		logger = newLogger(d.m.Stderr, "debug", "text")
	}
	if d.p, err = startPipeline(ctx, d.cfg, logger, nil); err != nil {
		return err
	}
	d.say("leaseguard running: state schema %s, metrics on http://%s/metrics, grace %s", d.cfg.DatabaseSchema, d.p.opsSrv.Addr(), d.cfg.ExpiryGrace)
	d.say("enforcement scope %q: everywhere, given explicitly (the default, empty, only pilots: findings say would_drop, nothing is dropped)", d.cfg.EnforceScope)
	sub, err := d.p.nc.Subscribe(d.cfg.EvidenceSubject, d.onEvidence)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()

	if err := d.workload(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	d.watch(ctx, timeout)
	if d.maria != nil {
		if err := d.mariaWatch(ctx, deadline); err != nil {
			return err
		}
		d.settleEvidence(ctx)
	}
	return d.summary(ctx)
}

func (d *demo) workload(ctx context.Context) error {
	d.appSchema = "lg_demo_app_" + d.sfx
	app := pgx.Identifier{d.appSchema}.Sanitize()
	orders := pgx.Identifier{d.appSchema, "orders"}.Sanitize()
	if _, err := d.admin.Exec(ctx, "CREATE SCHEMA "+app+"; CREATE TABLE "+orders+" (id int, total numeric)"); err != nil {
		return fmt.Errorf("create demo schema: %w", err)
	}
	grants := []string{"GRANT USAGE ON SCHEMA " + app + " TO {{name}}", "GRANT SELECT ON " + orders + " TO {{name}}"}
	sim := &vaultsim.Sim{Pool: d.admin, Mount: "postgres", DisplayName: "approle", EntityID: "2f6e0c1a-demo-" + d.sfx, RemoteAddress: "10.20.30.40"}

	var lines [][]byte
	add := func(label, role, story, vault string, ttl time.Duration, wantGone bool) (*demoLease, error) {
		c, l, err := sim.Issue(ctx, role, ttl, grants...)
		if err != nil {
			return nil, err
		}
		dl := &demoLease{label: label, cred: c, story: story, vault: vault, wantGone: wantGone, seen: map[string]bool{}}
		d.leases = append(d.leases, dl)
		lines = append(lines, l...)
		lines = append(lines, sim.Noise()...)
		return dl, nil
	}
	a, err := add("A", "reporting", "expires; Vault's revocation never comes", "issued", 4*time.Second, true)
	if err != nil {
		return err
	}
	b, err := add("B", "reporting", "expires while its client is still connected", "issued", 4*time.Second, true)
	if err != nil {
		return err
	}
	c, err := add("C", "etl", "expires owning a table it created", "issued", 5*time.Second, true)
	if err != nil {
		return err
	}
	r, err := add("D", "reporting", "renewed for 10 minutes: must stay", "issued, renewed", 4*time.Second, false)
	if err != nil {
		return err
	}
	e, err := add("E", "reporting", "revoked by Vault itself", "issued, revoked", 10*time.Minute, true)
	if err != nil {
		return err
	}
	_ = a
	// B holds a live session; C creates a table of its own.
	if b.conn, err = d.connect(ctx, b.cred); err != nil {
		return err
	}
	if _, err := d.admin.Exec(ctx, "GRANT CREATE ON SCHEMA "+app+" TO "+pgx.Identifier{c.cred.Username}.Sanitize()); err != nil {
		return err
	}
	if c.conn, err = d.connect(ctx, c.cred); err != nil {
		return err
	}
	if _, err := c.conn.Exec(ctx, "CREATE TABLE "+pgx.Identifier{d.appSchema, "etl_scratch"}.Sanitize()+" (x int)"); err != nil {
		return err
	}
	_ = c.conn.Close(ctx)
	c.conn = nil
	renew, err := sim.Renew(ctx, &r.cred, 10*time.Minute)
	if err != nil {
		return err
	}
	revoke, err := sim.Revoke(ctx, e.cred)
	if err != nil {
		return err
	}
	lines = append(lines, renew...)
	lines = append(lines, revoke...)
	if d.maria != nil {
		my, err := d.mariaWorkload(ctx)
		if err != nil {
			return fmt.Errorf("MariaDB part: %w", err)
		}
		lines = append(lines, my...)
	}
	for _, l := range lines {
		if _, err := d.p.js.Publish(ctx, "vault.audit.demo", l); err != nil {
			return fmt.Errorf("publish audit entry: %w", err)
		}
	}
	d.say("Vault issued %d credentials; %d audit entries published on vault.audit.demo", len(d.leases), len(lines))
	for _, l := range d.leases {
		d.say("  %s  %-52s  %s", l.label, l.cred.Username, l.story)
	}
	if d.maria != nil {
		for _, l := range d.maria.leases {
			d.say("  %s  %-52s  %s", l.label, l.cred.Username+"@{%,localhost}", l.story)
		}
	}
	return nil
}

func (d *demo) connect(ctx context.Context, c vaultsim.Cred) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(d.cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	cc.User, cc.Password = c.Username, c.Password
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect as %s: %w", c.Username, err)
	}
	return conn, nil
}

func (d *demo) onEvidence(msg *nats.Msg) {
	var ev evidence.Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		return
	}
	d.mu.Lock()
	d.events = append(d.events, ev)
	d.raw = append(d.raw, append([]byte(nil), msg.Data...))
	d.mu.Unlock()
	var data struct {
		Unmapped map[string]any `json:"unmapped"`
	}
	_ = json.Unmarshal(ev.Data, &data)
	u := data.Unmapped
	switch ev.Type {
	case "io.leaseguard.finding.v1":
		d.say("evidence #%d  finding    %v on %s: %v", ev.ChainSeq, u["rule"], ev.Subject, u["action"])
	case "io.leaseguard.revocation.v1":
		extra := ""
		if n, ok := u["sessions_terminated"].(float64); ok && n > 0 {
			extra = fmt.Sprintf(", %d live session(s) terminated", int(n))
		}
		d.say("evidence #%d  revocation %v for %s%s", ev.ChainSeq, u["outcome"], ev.Subject, extra)
	}
}

// watch narrates ledger changes until every lease reached its end state.
func (d *demo) watch(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := true
		for _, l := range d.leases {
			lease, err := d.p.store.Lease(ctx, l.cred.LeaseID)
			if errors.Is(err, store.ErrNotFound) {
				done = false
				continue
			}
			if err != nil {
				continue
			}
			if !l.seen["tracked"] {
				l.seen["tracked"] = true
				d.say("ledger       %s tracked: %s", l.label, l.cred.LeaseID)
			}
			if lease.ExpireAt != nil && !l.seen["expiry"] {
				l.seen["expiry"] = true
				d.say("ledger       %s expires %s (from %s)", l.label, lease.ExpireAt.Local().Format("15:04:05"), lease.ExpireSource)
			}
			if st := string(lease.State); st != "active" && !l.seen[st] {
				l.seen[st] = true
				d.say("ledger       %s is %s", l.label, st)
			}
			gone := !roleExists(ctx, d.admin, l.cred.Username)
			if gone && !l.seen["gone"] {
				l.seen["gone"] = true
				d.say("database     %s's user is gone from pg_roles", l.label)
			}
			if l.wantGone && (!gone || (l.label != "E" && !d.hasRevocation(l))) {
				done = false
			}
		}
		if done {
			// Let the relay deliver the last events.
			time.Sleep(1500 * time.Millisecond)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (d *demo) hasRevocation(l *demoLease) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range d.events {
		if ev.Type == "io.leaseguard.revocation.v1" && strings.HasSuffix(ev.Subject, "/"+l.cred.Username) {
			return true
		}
	}
	return false
}

func (d *demo) summary(ctx context.Context) error {
	fmt.Fprintln(d.out)
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tVAULT\tLEDGER\tUSER IN DB\tLEASEGUARD\tEXPECTED")
	failures := 0
	for _, l := range d.leases {
		lease, _ := d.p.store.Lease(ctx, l.cred.LeaseID)
		gone := !roleExists(ctx, d.admin, l.cred.Username)
		action := "none"
		revs, _ := store.RevocationsByUser(ctx, d.p.store.Pool(), d.cfg.targetName(), l.cred.Username)
		if len(revs) > 0 {
			action = string(revs[len(revs)-1].Outcome)
			if r := revs[len(revs)-1].Result; r != nil && r.SessionsTerminated > 0 {
				action += fmt.Sprintf(" (%d session cut)", r.SessionsTerminated)
			}
		}
		inDB := "present"
		if gone {
			inDB = "gone"
		}
		ok := gone == l.wantGone && (l.label != "D" || action == "none") && (l.label != "E" || action == "none")
		verdict := "ok"
		if !ok {
			verdict = "NOT MET"
			failures++
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%s\t%s\n", l.label, l.cred.Role, l.vault, lease.State, inDB, action, verdict)
	}
	if d.maria != nil {
		failures += d.mariaRows(ctx, tw)
	}
	_ = tw.Flush()
	if d.maria != nil {
		failures += d.mariaSessions(ctx)
	} else {
		fmt.Fprintln(d.out, "MariaDB part skipped (see the top)")
	}

	rep, err := evidence.VerifyOutbox(ctx, d.p.store.Pool(), evidence.VerifyOptions{})
	d.mu.Lock()
	relayed := len(d.events)
	d.mu.Unlock()
	fmt.Fprintln(d.out)
	if err != nil || !rep.OK() {
		fmt.Fprintf(d.out, "evidence chain: BROKEN (%v %v)\n", err, rep.FirstBreak)
		failures++
	} else {
		fmt.Fprintf(d.out, "evidence chain: %d events in the outbox verify (sha256 hash chain); %d relayed to %s\n", rep.Checked, relayed, d.cfg.EvidenceSubject)
	}
	kinds := map[string]int{}
	d.mu.Lock()
	for _, ev := range d.events {
		kinds[ev.Type]++
	}
	d.mu.Unlock()
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(ks)
	fmt.Fprintf(d.out, "evidence types: %s\n", strings.Join(ks, ", "))
	fmt.Fprintf(d.out, "finished in %.1fs\n", time.Since(d.start).Seconds())
	if failures > 0 {
		return exitError{code: exitNotClean, err: fmt.Errorf("%d expectation(s) not met", failures)}
	}
	return nil
}

// cleanup stops leaseguard and removes everything the demo created.
func (d *demo) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, l := range d.leases {
		if l.conn != nil {
			_ = l.conn.Close(ctx)
		}
	}
	if d.p != nil {
		_ = d.p.stop()
	}
	if d.maria != nil {
		d.maria.cleanup(ctx)
	}
	if d.admin == nil {
		return
	}
	defer d.admin.Close()
	for _, l := range d.leases {
		id := pgx.Identifier{l.cred.Username}.Sanitize()
		if roleExists(ctx, d.admin, l.cred.Username) {
			_, _ = d.admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", l.cred.Username)
			_, _ = d.admin.Exec(ctx, "DROP OWNED BY "+id+"; DROP ROLE IF EXISTS "+id)
		}
	}
	for _, s := range []string{d.appSchema, d.cfg.DatabaseSchema} {
		if s != "" {
			_, _ = d.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE")
		}
	}
}

func randomSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// targetName is the name of the first target (the only one by default).
func (c Config) targetName() string {
	return c.parsed().targets.Targets[0].Name
}

func roleExists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) bool {
	var ok bool
	_ = q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&ok)
	return ok
}
