package revoker

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

func TestInformalRate(t *testing.T) {
	if os.Getenv("LG_RATE") == "" {
		t.Skip()
	}
	ctx := context.Background()
	pool := pgtest.Pool(t)
	schema := schemaWithTables(t, pool)
	const n = 2000
	mk := func(tag string, sessions int) []string {
		sfx := pgtest.Suffix()
		var names []string
		var sb strings.Builder
		for i := range n {
			nm := fmt.Sprintf("v-rate-%s-%s-%04d", tag, sfx, i)
			names = append(names, nm)
			fmt.Fprintf(&sb, "CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT ON %s.accounts, %s.orders TO %s;", ident(nm), ident(schema), ident(nm), ident(schema), ident(schema), ident(nm))
			if i%200 == 199 {
				pgtest.DropRoleAtCleanup(t, pool, names[i-199:i+1]...)
				mustExec(t, pool, "BEGIN;"+sb.String()+"COMMIT")
				sb.Reset()
			}
		}
		for i := range sessions {
			c := connectAs(t, names[i*(n/sessions)])
			_, _ = c.Exec(ctx, "SELECT count(*) FROM "+ident(schema)+".accounts")
		}
		fmt.Printf("created %d users (%s)\n", n, tag)
		return names
	}
	report := func(what string, start time.Time) {
		el := time.Since(start)
		fmt.Printf("%-40s %d users in %v: %.0f/s\n", what, n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	}
	d := newTestDropper(t, DropperConfig{})
	check := func(res []schemas.RevocationResult) {
		bad := 0
		for _, r := range res {
			if r.Outcome != schemas.OutcomeDropped {
				bad++
				if bad < 3 {
					t.Errorf("%s: %s %s", r.DBUser, r.Outcome, r.Reason)
				}
			}
		}
	}

	names := mk("serialraw", 20)
	start := time.Now()
	for _, nm := range names {
		mustExec(t, pool, "DROP OWNED BY "+ident(nm)+"; DROP ROLE "+ident(nm))
	}
	report("serial DROP OWNED; DROP ROLE", start)

	names = mk("serialdrop", 20)
	start = time.Now()
	var res []schemas.RevocationResult
	for _, nm := range names {
		res = append(res, d.Drop(ctx, pool, testTarget, command(nm)))
	}
	report("serial Drop", start)
	check(res)

	for _, bs := range []int{50, 100, 200} {
		names = mk(fmt.Sprintf("batch%d", bs), 20)
		start = time.Now()
		res = nil
		for i := 0; i < n; i += bs {
			var cmds []schemas.RevocationCommand
			for _, nm := range names[i:min(i+bs, n)] {
				cmds = append(cmds, command(nm))
			}
			res = append(res, d.DropBatch(ctx, pool, testTarget, cmds)...)
		}
		report(fmt.Sprintf("DropBatch %d", bs), start)
		check(res)
	}

	for _, workers := range []int{2, 4} {
		wp := pgtest.Pool(t)
		_ = wp
		cfg, _ := pgxpool.ParseConfig(pgtest.URL())
		cfg.MaxConns = int32(workers + 2)
		p, _ := pgxpool.NewWithConfig(ctx, cfg)
		names = mk(fmt.Sprintf("conc%d", workers), 20)
		start = time.Now()
		ch := make(chan string)
		var mu sync.Mutex
		res = nil
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for nm := range ch {
					r := d.Drop(ctx, p, testTarget, command(nm))
					mu.Lock()
					res = append(res, r)
					mu.Unlock()
				}
			})
		}
		for _, nm := range names {
			ch <- nm
		}
		close(ch)
		wg.Wait()
		report(fmt.Sprintf("concurrent Drop, %d workers", workers), start)
		check(res)
		p.Close()
	}
}
