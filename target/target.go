package target

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/dbpool"
	"github.com/leaseguard/leaseguard/target/engine"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// Target is one database leaseguard watches and revokes in.
type Target struct {
	Name string
	URL  string
	// Kind is the engine, from the URL: mysql:// is MySQL or MariaDB,
	// anything else PostgreSQL.
	Kind engine.Kind
}

// Route sends leases of a Vault mount, or of mount/role, to a target.
// Pattern uses path.Match syntax: "postgres" (a whole mount),
// "postgres/reporting", "postgres/*", "*".
type Route struct {
	Pattern string
	Target  string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ParseTargets reads "name=url,name=url". Names are letters, digits, '_',
// '.' and '-'; URLs are PostgreSQL connection URLs or key=value strings
// without commas, or mysql://user:password@host:port/ for MySQL and
// MariaDB.
func ParseTargets(s string) ([]Target, error) {
	var out []Target
	for _, entry := range splitList(s) {
		name, url, ok := strings.Cut(entry, "=")
		name, url = strings.TrimSpace(name), strings.TrimSpace(url)
		if !ok || name == "" || url == "" {
			return nil, fmt.Errorf("target %q: want name=url", redactEntry(entry))
		}
		if !nameRE.MatchString(name) {
			return nil, fmt.Errorf("target name %q: use letters, digits, '_', '.', '-'", name)
		}
		kind, err := kindOf(url)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", name, err)
		}
		out = append(out, Target{Name: name, URL: url, Kind: kind})
	}
	return out, nil
}

// ParseRoutes reads "pattern=target,pattern=target"; the first match wins.
func ParseRoutes(s string) ([]Route, error) {
	var out []Route
	for _, entry := range splitList(s) {
		pat, tgt, ok := strings.Cut(entry, "=")
		pat, tgt = strings.Trim(strings.TrimSpace(pat), "/"), strings.TrimSpace(tgt)
		if !ok || pat == "" || tgt == "" {
			return nil, fmt.Errorf("route %q: want pattern=target", entry)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("route %q: bad pattern: %w", entry, err)
		}
		out = append(out, Route{Pattern: pat, Target: tgt})
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func redactEntry(e string) string {
	name, _, _ := strings.Cut(e, "=")
	return name + "=…"
}

// Config is the set of targets and the routes to them.
type Config struct {
	Targets []Target
	Routes  []Route
	// MaxConns per target pool (0: DefaultMaxConns): the most connections
	// leaseguard opens to one target, whatever its parts do at once.
	MaxConns int32
	// MaxConnIdleTime: a connection of a target pool idle this long is
	// closed (0: DefaultConnIdleTime), at the pool's next health check
	// (Conn.HealthCheckPeriod). An observer passing over the target more
	// often keeps one connection open.
	MaxConnIdleTime time.Duration
	// Conn: connect timeout, server-side statement, lock and
	// idle-in-transaction timeouts, TCP keepalive and user timeout of
	// every connection (internal/dbpool). The revoker's drop transactions
	// set their own statement and lock timeouts on top.
	Conn dbpool.Settings
}

// Validate checks names are unique and routes name known targets.
func (c Config) Validate() error {
	if len(c.Targets) == 0 {
		return errors.New("no target database configured")
	}
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if seen[t.Name] {
			return fmt.Errorf("target %q configured twice", t.Name)
		}
		seen[t.Name] = true
	}
	for _, r := range c.Routes {
		if !seen[r.Target] {
			return fmt.Errorf("route %s names unknown target %q", r.Pattern, r.Target)
		}
	}
	if len(c.Targets) > 1 && len(c.Routes) == 0 {
		return errors.New("several targets but no routes: set which mount goes where")
	}
	if c.MaxConns < 0 || c.MaxConnIdleTime < 0 {
		return errors.New("target pool size and idle timeout must not be negative")
	}
	return c.Conn.Validate()
}

// kindOf tells the engine of a target URL, and checks the URL parses. The
// error never repeats the URL: it may hold a password.
func kindOf(url string) (engine.Kind, error) {
	if mysql.IsURL(url) {
		if _, err := mysql.ParseURL(url); err != nil {
			return "", fmt.Errorf("mysql url: %w", err)
		}
		return engine.KindMySQL, nil
	}
	if _, err := pgx.ParseConfig(url); err != nil {
		return "", errors.New("connection url does not parse")
	}
	return engine.KindPostgres, nil
}

// Defaults of a target's pool: its size when Config.MaxConns is 0, and how
// long a connection may sit idle when Config.MaxConnIdleTime is 0.
const (
	DefaultMaxConns     = 4
	DefaultConnIdleTime = time.Minute
)

// Set holds a pool per PostgreSQL target, an engine per MySQL target, and
// answers routing questions.
type Set struct {
	cfg    Config
	pools  map[string]*pgxpool.Pool
	mysqls map[string]*mysql.Engine
	ids    *identities
}

// Open creates (lazily connecting) pools for every target.
func Open(ctx context.Context, cfg Config) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	maxConns := cfg.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	s := &Set{cfg: cfg, pools: map[string]*pgxpool.Pool{}, mysqls: map[string]*mysql.Engine{}, ids: newIdentities()}
	for _, t := range cfg.Targets {
		if mysql.IsURL(t.URL) {
			e, err := mysql.Open(t.URL, int(maxConns))
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("target %s: %w", t.Name, err)
			}
			s.mysqls[t.Name] = e
			continue
		}
		pc, err := pgxpool.ParseConfig(t.URL)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("target %s: connection url does not parse", t.Name)
		}
		pc.MaxConns = maxConns
		pc.MaxConnIdleTime = cmp.Or(cfg.MaxConnIdleTime, DefaultConnIdleTime)
		pc.ConnConfig.RuntimeParams["application_name"] = "leaseguard"
		dbpool.Apply(pc, cfg.Conn)
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		s.pools[t.Name] = pool
	}
	return s, nil
}

// Close closes every pool.
func (s *Set) Close() {
	for _, p := range s.pools {
		p.Close()
	}
	for _, e := range s.mysqls {
		e.Close()
	}
}

// Names lists the PostgreSQL targets (those with a Pool) in a stable
// order; AllNames lists every target.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.pools))
	for n := range s.pools {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Pool returns the pool of the named target.
func (s *Set) Pool(name string) (*pgxpool.Pool, bool) {
	p, ok := s.pools[name]
	return p, ok
}

// Route names the target holding users of mount/role. With a single target
// and no routes, everything routes to it.
func (s *Set) Route(mount, role string) (string, bool) {
	return route(s.cfg, mount, role)
}

func route(cfg Config, mount, role string) (string, bool) {
	mount = strings.Trim(mount, "/")
	full := mount + "/" + role
	for _, r := range cfg.Routes {
		if ok, _ := path.Match(r.Pattern, full); ok {
			return r.Target, true
		}
		if !strings.Contains(r.Pattern, "/") {
			if ok, _ := path.Match(r.Pattern, mount); ok {
				return r.Target, true
			}
		}
	}
	if len(cfg.Routes) == 0 && len(cfg.Targets) == 1 {
		return cfg.Targets[0].Name, true
	}
	return "", false
}

// Ping checks every target is reachable.
func (s *Set) Ping(ctx context.Context) error {
	var errs []error
	for _, n := range s.AllNames() {
		e, _ := s.Engine(n)
		if err := e.Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// ValidUntil reads pg_roles.rolvaliduntil of users in the named target
// (none on a MySQL target).
// Users that do not exist, or whose validity is NULL or infinite, are
// missing from the result.
func (s *Set) ValidUntil(ctx context.Context, database string, users []string) (map[string]time.Time, error) {
	if _, ok := s.mysqls[database]; ok {
		// MySQL keeps no expiry: the lease's comes from Vault or the
		// configured role TTLs.
		return map[string]time.Time{}, nil
	}
	pool, ok := s.pools[database]
	if !ok {
		return nil, fmt.Errorf("unknown target %q", database)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT rolname, rolvaliduntil FROM pg_roles WHERE rolname = ANY($1)`, users)
	if err != nil {
		return nil, fmt.Errorf("read pg_roles of %s: %w", database, err)
	}
	out := make(map[string]time.Time, len(users))
	var name string
	var until pgtype.Timestamptz
	_, err = pgx.ForEachRow(rows, []any{&name, &until}, func() error {
		if until.Valid && until.InfinityModifier == pgtype.Finite {
			out[name] = until.Time
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pg_roles of %s: %w", database, err)
	}
	return out, nil
}

// DefaultName derives a target name from a connection URL: its database
// name, or "default".
func DefaultName(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil || cfg.Database == "" || !nameRE.MatchString(cfg.Database) {
		return "default"
	}
	return cfg.Database
}
