package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is used when TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the test server's connection URL.
func URL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Suffix returns a short random lowercase hex string for unique names.
func Suffix() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// Pool opens a pool on the test server, closed at cleanup.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return poolWith(t, URL(), nil)
}

func poolWith(t testing.TB, url string, params map[string]string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to test postgres: %v", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("test postgres at %s is unreachable (make test starts it): %v", redact(url), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Schema creates a fresh schema named prefix_<suffix> and drops it (cascade)
// at cleanup. It returns the schema name.
func Schema(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + "_" + Suffix()
	pool := Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// URLWithSearchPath returns the test URL with search_path set to schema, for
// code that opens its own pool.
func URLWithSearchPath(schema string) string {
	u := URL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "search_path=" + schema
}

// DropRoleAtCleanup drops the named roles (and what they own in this
// database) when the test ends, if they still exist.
func DropRoleAtCleanup(t testing.TB, pool *pgxpool.Pool, roles ...string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, r := range roles {
			id := pgx.Identifier{r}.Sanitize()
			var exists bool
			if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", r).Scan(&exists); err != nil || !exists {
				continue
			}
			_, _ = pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", r)
			_, _ = pool.Exec(ctx, "DROP OWNED BY "+id)
			if _, err := pool.Exec(ctx, "DROP ROLE IF EXISTS "+id); err != nil {
				t.Errorf("drop role %s: %v", r, err)
			}
		}
	})
}

func redact(u string) string {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return "(unparseable url)"
	}
	return cfg.Host + "/" + cfg.Database
}
