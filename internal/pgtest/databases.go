package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Databases are databases of their own on the test server, for tests of
// many targets. Creating one takes seconds (a copy of template1 and its
// WAL), so a test binary makes them once (sync.Once in its own code) and
// drops them from TestMain after m.Run, whether its tests passed or not.
type Databases struct {
	Names []string
	admin *pgxpool.Pool
}

// createAtOnce bounds the CREATE DATABASE statements in flight: each
// writes the template's pages, and the machine is shared.
const createAtOnce = 4

// CreateDatabases creates n databases named lgt_<suffix>_<i>, a few at a
// time. On an error the ones made are dropped again.
func CreateDatabases(ctx context.Context, n int) (*Databases, error) {
	admin, err := pgxpool.New(ctx, URL())
	if err != nil {
		return nil, fmt.Errorf("connect to test postgres: %w", err)
	}
	sfx := Suffix()
	d := &Databases{admin: admin, Names: make([]string, n)}
	for i := range n {
		d.Names[i] = fmt.Sprintf("lgt_%s_%d", sfx, i)
	}
	if err := d.each(func(name string) error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		_, err := admin.Exec(cctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	}); err != nil {
		d.Drop()
		return nil, fmt.Errorf("create databases: %w", err)
	}
	return d, nil
}

// URL is the test server's URL with the database name replaced.
func (d *Databases) URL(name string) string {
	u, err := url.Parse(URL())
	if err != nil {
		panic("TEST_DATABASE_URL is not a URL: " + err.Error())
	}
	u.Path = "/" + name
	return u.String()
}

// Drop drops every database (those never created included), ending the
// sessions still in them. It is safe to call more than once.
func (d *Databases) Drop() {
	if d == nil || d.admin == nil {
		return
	}
	_ = d.each(func(name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := d.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	})
	d.admin.Close()
	d.admin = nil
}

// each calls f for every name, createAtOnce at a time, and returns the
// errors joined.
func (d *Databases) each(f func(name string) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, createAtOnce)
	for _, name := range d.Names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := f(name); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
