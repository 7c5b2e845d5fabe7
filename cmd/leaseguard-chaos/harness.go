package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// harness is what every case shares: the options, an administrative
// connection to PostgreSQL, the run's suffix and work directory.
type harness struct {
	opt   options
	admin *pgxpool.Pool
	// sfx makes the run's schemas and user names unique.
	sfx     string
	workDir string
	// signingKey is every leaseguard's command signing key (base64 seed),
	// so processes that share a state store accept each other's commands.
	signingKey string
	failed     bool
}

func newHarness(ctx context.Context, opt options) (*harness, error) {
	h := &harness{opt: opt, sfx: suffix()}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	h.signingKey = base64.StdEncoding.EncodeToString(seed)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(cctx, opt.dbURL)
	if err == nil {
		err = pool.Ping(cctx)
	}
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL at %s: %w (make postgres starts it)", redact(opt.dbURL), err)
	}
	h.admin = pool
	h.workDir = opt.workDir
	if h.workDir == "" {
		if h.workDir, err = os.MkdirTemp("", "leaseguard-chaos-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(h.workDir, 0o700); err != nil {
		return nil, err
	}
	fmt.Printf("leaseguard-chaos: %s form, %d users per case, faults of %s; logs in %s\n",
		map[bool]string{true: "short", false: "full"}[opt.short], opt.users, opt.fault, h.workDir)
	return h, nil
}

func (h *harness) close() {
	h.admin.Close()
	if h.opt.keep || h.failed || h.opt.workDir != "" {
		fmt.Printf("logs kept in %s\n", h.workDir)
		return
	}
	_ = os.RemoveAll(h.workDir)
}

// runCase runs one case in its own environment and returns its figures.
func (h *harness) runCase(ctx context.Context, c Case) Figures {
	fmt.Printf("\n=== %s: %s\n", c.Name, c.What)
	start := time.Now()
	e, err := h.newCaseEnv(ctx, c)
	var f Figures
	if err == nil {
		var obs Observation
		var goal Goal
		obs, goal, err = c.Run(ctx, e)
		f = Compute(c.Name, obs, goal)
		f.Note = e.note
		e.close()
	}
	if err != nil {
		f.Case = c.Name
		f.Failures = append(f.Failures, "error: "+err.Error())
	}
	if !f.OK() {
		h.failed = true
	}
	printFigures(os.Stdout, f, time.Since(start))
	return f
}

// urlVia is the PostgreSQL URL with its host replaced by addr (a proxy).
func (h *harness) urlVia(addr string) string {
	u, err := url.Parse(h.opt.dbURL)
	if err != nil {
		return h.opt.dbURL
	}
	u.Host = addr
	return u.String()
}

// dbAddr is PostgreSQL's host:port.
func (h *harness) dbAddr() string {
	u, err := url.Parse(h.opt.dbURL)
	if err != nil || u.Host == "" {
		return "127.0.0.1:5432"
	}
	if !strings.Contains(u.Host, ":") {
		return u.Host + ":5432"
	}
	return u.Host
}

func (h *harness) caseDir(name string) (string, error) {
	dir := filepath.Join(h.workDir, name)
	return dir, os.MkdirAll(dir, 0o700)
}

// dropSchema removes a case's schema.
func (h *harness) dropSchema(schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, _ = h.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
}

// dropUsers removes the run's users that a case left behind.
func (h *harness) dropUsers(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := h.admin.Query(ctx, "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", prefix)
	if err != nil {
		return
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, n := range names {
		id := pgx.Identifier{n}.Sanitize()
		_, _ = h.admin.Exec(ctx, "DROP OWNED BY "+id+"; DROP ROLE IF EXISTS "+id)
	}
}

func suffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), "xxxxx")
	}
	return p.String()
}
