package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/dbpool"
)

// DefaultSchema is the schema used when Config.Schema is empty.
const DefaultSchema = "leaseguard"

// ErrNotFound is returned when the requested row does not exist.
var ErrNotFound = errors.New("not found")

// Config says where the ledger lives.
type Config struct {
	// URL is a PostgreSQL connection URL or DSN. Its search_path, if any, is
	// replaced by Schema.
	URL string
	// Schema holds every table of the ledger (default "leaseguard").
	Schema string
	// MaxConns caps the pool (0: DefaultMaxConns).
	MaxConns int32
	// Conn: connect timeout, server-side statement, lock and
	// idle-in-transaction timeouts, TCP keepalive and user timeout of
	// every connection (internal/dbpool; zero fields take its defaults).
	Conn dbpool.Settings
}

// DefaultMaxConns is the pool size when Config.MaxConns is 0. Every part of
// leaseguard run shares the pool; a connection given up on (a silent
// server) keeps its slot while it closes, so there is room to spare.
const DefaultMaxConns = 10

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	return c
}

// Validate checks c; an empty Schema stands for DefaultSchema.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("database url is required")
	}
	if _, err := pgxpool.ParseConfig(c.URL); err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	if len(c.Schema) > 63 {
		return fmt.Errorf("schema %q is longer than 63 bytes", c.Schema)
	}
	if strings.ContainsRune(c.Schema, 0) {
		return errors.New("schema contains a NUL byte")
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("max conns %d is negative", c.MaxConns)
	}
	return c.Conn.Validate()
}

// Store is the lease ledger. It is safe for concurrent use, also by several
// processes on the same schema.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	// lockKey is this schema's key for advisory locks (see lockClass*).
	lockKey int32
	// beat throttles the audit stream's liveness row (audit_signals.go).
	beat heartbeat
}

// Open creates the connection pool. It does not connect: call Ping or
// Migrate to find out whether the database is reachable.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	pcfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	dbpool.Apply(pcfg, cfg.Conn)
	pcfg.MaxConns = DefaultMaxConns
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return &Store{pool: pool, schema: cfg.Schema, lockKey: schemaLockKey(cfg.Schema)}, nil
}

// Pool returns the pool; its connections have the ledger schema as search_path.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the schema that holds the ledger.
func (s *Store) Schema() string { return s.schema }

// Close closes the pool. It is safe to call more than once.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Advisory lock classes (the first key of the two-key form). The second key
// is derived from the schema name, so ledgers in different schemas of one
// database do not block each other.
const (
	// lockClassMigrate serialises Migrate.
	lockClassMigrate int32 = 0x4c47_0001
	// lockClassPrefix orders prefix revocations against lease upserts: Apply
	// holds it shared, or exclusive when its batch revokes by prefix, so a
	// lease inserted concurrently with a prefix revocation is never missed by
	// both transactions.
	lockClassPrefix int32 = 0x4c47_0002
)

func schemaLockKey(schema string) int32 {
	h := fnv.New32a()
	h.Write([]byte(schema))
	return int32(h.Sum32())
}
