package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/revoker"
)

// defaultDatabaseURL is used when neither TEST_DATABASE_URL nor
// LEASEGUARD_DATABASE_URL is set.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Exit codes: 0 every figure measured (targets met or not), 1 a scenario
// failed, 2 usage.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	scenarioAll = "decode,nats,kafka,revoke,mysql,expiry,vault,memory,observer"
)

// Main holds what the harness takes from its environment.
type Main struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// options are the command-line settings.
type options struct {
	only       map[string]bool
	quick      bool
	runs       int
	out        string
	bin        string
	profileDir string
	timeout    time.Duration
	dbURL      string

	decodeEntries int
	decodeRunTime time.Duration

	e2eEntries int
	pacedRate  int
	pacedFor   time.Duration
	resolver   bool

	revokeUsers    int
	revokeSessions int
	revokeBatch    int
	revokeInFlight int

	expirySizes     []int
	expiryGrants    string
	expiryGrace     time.Duration
	expirySetup     time.Duration
	detectInterval  time.Duration
	expiryRateLimit int

	rssLeases []int
	rssWindow time.Duration

	vaultBin          string
	vaultWhy          string // why there is no vaultBin
	vaultLeases       int
	vaultExpiryLeases int
	vaultWait         time.Duration
	// vaultClientTimeout: how long the revoke-prefix request waits for
	// Vault's answer (0: vaultWait).
	vaultClientTimeout time.Duration
	vaultSharedDB      bool

	mysqlURL      string
	mysqlUsers    int
	mysqlSessions int

	obs observerOptions
}

func (m *Main) parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("leaseguard-bench", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	only := fs.String("only", scenarioAll, "comma-separated scenarios to run: decode, nats, kafka (or e2e for both), revoke, mysql, expiry, vault, memory, observer")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: small sizes, one run per scenario (about a minute)")
	fs.IntVar(&o.runs, "runs", 0, "runs per scenario (0: decode 5, nats/kafka/revoke/expiry/vault 3, memory 1; -quick: 1)")
	fs.StringVar(&o.out, "out", filepath.Join("bench", "results.json"), "where to write the JSON results (empty: do not write)")
	fs.StringVar(&o.bin, "leaseguard", filepath.Join("bin", "leaseguard"), "leaseguard binary run as a child process by the expiry and memory scenarios")
	fs.StringVar(&o.profileDir, "cpuprofile", "", "directory to write a CPU profile per in-process scenario (<scenario>.pprof)")
	fs.DurationVar(&o.timeout, "timeout", time.Hour, "give up after this long (cleanup still runs; what was measured is written, marked bench_incomplete)")
	fs.StringVar(&o.dbURL, "database-url", "", "PostgreSQL URL (default TEST_DATABASE_URL, then LEASEGUARD_DATABASE_URL, then the local test database)")
	fs.IntVar(&o.decodeEntries, "decode-entries", 0, "entries in the decode corpus (default 20000; -quick 10000)")
	fs.IntVar(&o.e2eEntries, "e2e-entries", 0, "entries published per end-to-end run (default 200000; -quick 20000)")
	fs.BoolVar(&o.resolver, "resolver", true, "run the expiry resolver beside end-to-end ingest, kicked after each batch that issued, as run does")
	fs.IntVar(&o.pacedRate, "paced-rate", 10000, "entries/s of the paced end-to-end phase that measures lag at a steady load (0: skip)")
	fs.IntVar(&o.revokeUsers, "revoke-users", 0, "users dropped per revocation run (default 2000; -quick 200)")
	fs.IntVar(&o.revokeSessions, "revoke-sessions", 0, "users of each revocation run that hold a live session (default 1%)")
	fs.IntVar(&o.revokeBatch, "revoke-batch", 0, "commands per Executor call (default LEASEGUARD_REVOCATION_BATCH, else 100)")
	fs.IntVar(&o.revokeInFlight, "revoke-in-flight", 0, "batches the revoke scenario carries out at once, as the revoker service does (default LEASEGUARD_REVOCATION_BATCHES_IN_FLIGHT, else the service's default)")
	expiry := fs.String("expiry-leases", "", "leases expiring in the same second per expiry run, comma-separated sizes (default 1000,10000; -quick 100)")
	fs.StringVar(&o.expiryGrants, "expiry-grants", "auto", "how the expiry scenario's users get their privileges: direct (on the tables), group (membership in a group role), both, or auto (both up to 2,000 users, group above)")
	fs.DurationVar(&o.expiryGrace, "expiry-grace", 0, "LEASEGUARD_EXPIRY_GRACE of the expiry scenario")
	fs.DurationVar(&o.expirySetup, "expiry-setup", 20*time.Millisecond, "time the expiry scenario allows per user to create the users and ingest their leases before the first expires (raise it on a busy machine)")
	fs.DurationVar(&o.detectInterval, "detect-interval", 200*time.Millisecond, "LEASEGUARD_DETECT_INTERVAL of the expiry scenario")
	fs.IntVar(&o.expiryRateLimit, "expiry-rate-limit", 100000, "LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE of the expiry scenario (the default 600 would hold 1,000 drops back by design)")
	rss := fs.String("rss-leases", "", "ledger sizes of the memory scenario, comma-separated (default 10000,1000000; -quick 10000,100000)")
	vaultBin := fs.String("vault", "", "Vault binary of the vault scenario (default "+vaultBinEnv+", then the binary scripts/ensure-vault.sh caches; none: the scenario is skipped)")
	fs.IntVar(&o.vaultLeases, "vault-leases", 0, "leases Vault issues and revokes by prefix per vault run (default 2000; -quick 200)")
	fs.IntVar(&o.vaultExpiryLeases, "vault-expiry-leases", 0, "leases expiring in about the same second per vault run (default 1000; -quick 100)")
	fs.DurationVar(&o.vaultWait, "vault-wait", 12*time.Minute, "how long the vault scenario waits for Vault to drop the users of one phase")
	fs.DurationVar(&o.vaultClientTimeout, "vault-client-timeout", 0, "how long the revoke-prefix request waits for Vault's answer before the users are polled on and Vault is asked again with sync=false (default -vault-wait)")
	fs.BoolVar(&o.vaultSharedDB, "vault-shared-db", false, "grant Vault's users on the harness's database instead of a database of the run's own on the same server")
	fs.StringVar(&o.mysqlURL, "mysql-url", "", "MariaDB or MySQL of the mysql scenarios, an administrative account (default TEST_MYSQL_URL, else "+defaultMySQLURL+")")
	fs.IntVar(&o.mysqlUsers, "mysql-users", 0, "MariaDB users dropped per mysql run (default 2000; -quick 200)")
	fs.DurationVar(&o.rssWindow, "rss-window", 0, "how long the memory scenario runs leaseguard per ledger size (default 16s; -quick 11s)")
	observerFlags(fs, &o.obs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.only, err = parseOnly(*only); err != nil {
		return o, err
	}
	if o.expirySizes, err = parseExpiry(*expiry, o.expiryGrants, o.quick); err != nil {
		return o, err
	}
	if o.rssLeases, err = parseRSS(*rss, o.quick); err != nil {
		return o, err
	}
	if err = o.obs.finish(o.quick); err != nil {
		return o, err
	}
	m.defaults(&o, *vaultBin)
	return o, nil
}

// parseOnly reads -only: the scenarios to run.
func parseOnly(only string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case "e2e":
			out["nats"], out["kafka"] = true, true
		case "decode", "nats", "kafka", "revoke", "mysql", "expiry", "vault", "memory", "observer":
			out[s] = true
		default:
			return nil, fmt.Errorf("-only: unknown scenario %q (want %s)", s, scenarioAll)
		}
	}
	return out, nil
}

// parseRSS reads -rss-leases: two increasing ledger sizes.
func parseRSS(rss string, quick bool) ([]int, error) {
	if rss == "" {
		rss = "10000,1000000"
		if quick {
			rss = "10000,100000"
		}
	}
	var out []int
	for _, s := range strings.Split(rss, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-rss-leases: %q is not a positive number", s)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, errors.New("-rss-leases: sizes must increase")
		}
		out = append(out, n)
	}
	if len(out) != 2 {
		return nil, errors.New("-rss-leases: want two sizes, small and large")
	}
	return out, nil
}

// defaults fills in the sizes and settings left unset, full or -quick.
func (m *Main) defaults(o *options, vaultBin string) {
	pick := func(v *int, full, quick int) {
		if *v <= 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	pick(&o.decodeEntries, 20000, 10000)
	pick(&o.e2eEntries, 200000, 20000)
	pick(&o.revokeUsers, 2000, 200)
	pick(&o.vaultLeases, 2000, 200)
	pick(&o.vaultExpiryLeases, 1000, 100)
	pick(&o.mysqlUsers, 2000, 200)
	o.mysqlSessions = max(1, o.mysqlUsers/100)
	if o.mysqlURL == "" {
		o.mysqlURL = cmp.Or(m.Getenv("TEST_MYSQL_URL"), defaultMySQLURL)
	}
	if o.only["vault"] {
		o.vaultBin, o.vaultWhy = m.vaultBinary(vaultBin)
	}
	if o.revokeSessions <= 0 {
		o.revokeSessions = max(1, o.revokeUsers/100)
	}
	if o.revokeBatch <= 0 {
		o.revokeBatch = 100
		if v, err := strconv.Atoi(m.Getenv("LEASEGUARD_REVOCATION_BATCH")); err == nil && v > 0 {
			o.revokeBatch = v
		}
	}
	if o.revokeInFlight <= 0 {
		o.revokeInFlight = revoker.DefaultInFlight
		if v, err := strconv.Atoi(m.Getenv("LEASEGUARD_REVOCATION_BATCHES_IN_FLIGHT")); err == nil && v > 0 {
			o.revokeInFlight = v
		}
	}
	o.decodeRunTime = time.Second
	o.pacedFor = 5 * time.Second
	if o.quick {
		o.decodeRunTime = 300 * time.Millisecond
		o.pacedFor = 2 * time.Second
	}
	if o.rssWindow <= 0 {
		o.rssWindow = 16 * time.Second
		if o.quick {
			o.rssWindow = 11 * time.Second
		}
	}
	for _, env := range []string{"TEST_DATABASE_URL", "LEASEGUARD_DATABASE_URL"} {
		if o.dbURL == "" {
			o.dbURL = m.Getenv(env)
		}
	}
	if o.dbURL == "" {
		o.dbURL = defaultDatabaseURL
	}
}

// runsFor returns how many runs a scenario gets.
func (o options) runsFor(scenario string) int {
	if o.runs > 0 {
		return o.runs
	}
	if o.quick {
		if scenario == "decode" {
			return 3
		}
		return 1
	}
	switch scenario {
	case "decode":
		return 5
	case "memory":
		return 1
	}
	return 3
}

// Bench is one harness run: its options, the names it creates, the admin
// pool, what must be undone, and the figures.
type Bench struct {
	opt     options
	stdout  io.Writer
	stderr  io.Writer
	sfx     string
	admin   *pgxpool.Pool
	undo    *cleanups
	results *results
	started time.Time
	// dropOnly: users/s of the revoker's drop transactions alone, per run.
	dropOnly []float64
	// obsFailed: observer passes that failed in the observer scenario.
	obsFailed int
}

// Run runs the selected scenarios and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	opt, err := m.parse(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(m.Stderr, "leaseguard-bench:", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, opt.timeout)
	defer cancel()

	b := &Bench{opt: opt, stdout: m.Stdout, stderr: m.Stderr, sfx: newSuffix(), undo: &cleanups{}, results: newResults(), started: time.Now()}
	failed := b.run(ctx)
	b.undo.run(b.stderr)

	return b.report(ctx, failed)
}

// report prints the table and writes results.json. A run stopped early
// (-timeout, Ctrl-C) still writes the figures of what it measured, marked
// bench_incomplete = 1: half an hour of measurements is not thrown away
// because the last scenario ran out of time.
func (b *Bench) report(ctx context.Context, failed bool) int {
	stopped := ctx.Err() != nil
	if stopped && b.results.any() {
		b.results.set("bench_incomplete", 1)
	}
	b.results.print(b.stdout, b)
	if stopped {
		fmt.Fprintf(b.stdout, "\nstopped (%v) before every scenario finished\n", context.Cause(ctx))
	}
	if b.opt.out != "" && b.results.any() {
		if err := b.results.writeJSON(b.opt.out); err != nil {
			fmt.Fprintln(b.stderr, "leaseguard-bench: write results:", err)
			return exitFailed
		}
		fmt.Fprintf(b.stdout, "\nresults written to %s\n", b.opt.out)
	}
	if failed || stopped {
		return exitFailed
	}
	return exitOK
}

// run connects and runs each scenario; it reports whether one failed. A
// failed scenario does not stop the others unless the context ended.
func (b *Bench) run(ctx context.Context) (failed bool) {
	b.logf("leaseguard-bench: %d CPUs, %s, suffix %s, database %s", runtime.NumCPU(), runtime.Version(), b.sfx, redactURL(b.opt.dbURL))
	if err := b.connect(ctx); err != nil {
		b.logf("error: %v", err)
		return true
	}
	scenarios := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"decode", b.decodeScenario},
		{"nats", b.natsScenario},
		{"kafka", b.kafkaScenario},
		{"revoke", b.revokeScenario},
		{"mysql", b.mysqlScenario},
		{"expiry", b.expiryScenario},
		{"vault", b.vaultScenario},
		{"memory", b.memoryScenario},
		{"observer", b.observerScenario},
	}
	for _, s := range scenarios {
		if !b.opt.only[s.name] {
			continue
		}
		if ctx.Err() != nil {
			b.logf("%s: skipped: %v", s.name, ctx.Err())
			failed = true
			continue
		}
		start := time.Now()
		b.logf("== %s", s.name)
		err := s.fn(ctx)
		// Each scenario removes what it made; a sweep catches what a
		// failure left behind before the next one starts.
		b.sweep(context.WithoutCancel(ctx))
		if err != nil {
			b.logf("%s: FAILED after %s: %s", s.name, time.Since(start).Round(time.Millisecond), short(err))
			b.results.note("%s scenario failed: %s", s.name, short(err))
			failed = true
			continue
		}
		b.logf("%s: done in %s", s.name, time.Since(start).Round(100*time.Millisecond))
	}
	b.vaultCompare()
	return failed
}

// short is an error's message cut to a readable length (a client error
// can list thousands of per-message errors).
func short(err error) string {
	s := err.Error()
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
}

// logf writes a progress line to stderr.
func (b *Bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "%7.1fs  %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// newSuffix returns 6 random hex characters naming everything this run
// creates (schemas lgbench_<sfx>_*, roles v-lb<sfx>-*).
func newSuffix() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// startProfile starts a CPU profile of the named scenario when
// -cpuprofile is set; the returned function stops it.
func (b *Bench) startProfile(name string) (func(), error) {
	if b.opt.profileDir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(b.opt.profileDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(b.opt.profileDir, name+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err == nil {
			b.logf("%s: CPU profile written to %s", name, path)
		}
	}, nil
}
