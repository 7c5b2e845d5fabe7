package observer

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/dbpool"
	"github.com/leaseguard/leaseguard/internal/faultproxy"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// TestDutyOfAVanishedHolderIsFreed: the holder's lock connection goes
// silent (a hung network, the process frozen) while the server keeps its
// session. The duty must not stay with that session: the server ends it
// within seconds, and another process takes the duty over. Before, the
// session kept the lock for as long as the server kept it open, and no
// process observed the target again.
func TestDutyOfAVanishedHolderIsFreed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	direct := newStore(t)
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start("127.0.0.1:0", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	u.Host = proxy.Addr()
	behind, err := store.Open(ctx, store.Config{URL: u.String(), Schema: direct.Schema(), Conn: dbpool.Settings{ConnectTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(behind.Close)
	t.Cleanup(func() { proxy.SetMode(faultproxy.Reset) }) // before the pool closes

	held, err := tryDuty(ctx, behind, "main", "vanishing", at(0))
	if err != nil || held == nil {
		t.Fatalf("take the duty: %v, %v", held, err)
	}
	t.Cleanup(func() { held.Release(ctx) })
	proxy.SetMode(faultproxy.Blackhole)

	start := time.Now()
	var taken *Duty
	for taken == nil {
		if time.Since(start) > 15*time.Second {
			t.Fatal("the duty stayed with the vanished holder's session")
		}
		if taken, err = tryDuty(ctx, direct, "main", "successor", at(time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer taken.Release(ctx)
	t.Logf("duty taken over %s after its holder went silent", time.Since(start).Round(10*time.Millisecond))
	if taken.Epoch() != held.Epoch()+1 {
		t.Errorf("epoch %d after %d", taken.Epoch(), held.Epoch())
	}
}

// TestDutyHolderKeepsItsSessionBusy: a live holder keeps its lock session
// from looking idle between passes, so the server's idle-session timeout
// only ever ends the session of a holder that vanished. Watched on the
// server for a few beats: the session's last activity stays within two
// beats.
func TestDutyHolderKeepsItsSessionBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	d, err := tryDuty(ctx, s, "main", "live", at(0))
	if err != nil || d == nil {
		t.Fatalf("take the duty: %v, %v", d, err)
	}
	defer d.Release(ctx)
	var pid int
	if err := s.Pool().QueryRow(ctx, `SELECT holder_pid FROM observer_targets WHERE database = 'main'`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	watched := time.Now()
	for time.Since(watched) < 3*dutyIdle/2 {
		var idle float64
		err := s.Pool().QueryRow(ctx, `SELECT extract(epoch FROM now() - state_change) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&idle)
		if err != nil {
			t.Fatalf("the holder's lock session is gone: %v", err)
		}
		if idle > (2 * dutyBeat).Seconds() {
			t.Fatalf("the holder's lock session has been idle for %.1fs", idle)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDutiesShareOneSession: an observer of several targets holds all
// their duties on one state-store session, not one session each (with 50
// targets that was 50 connections outside the pool); released, they free
// it.
func TestDutiesShareOneSession(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	pool := pgtest.Pool(t)
	o, err := New(Config{Holder: "shared"}, Deps{Store: s, Targets: target.Pools{"a": pool, "b": pool, "c": pool}})
	if err != nil {
		t.Fatal(err)
	}
	for _, db := range []string{"a", "b", "c"} {
		if _, err := o.Pass(ctx, db); err != nil {
			t.Fatalf("pass over %s: %v", db, err)
		}
	}
	var duties, sessions, alive int
	err = s.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT holder_pid),
		(SELECT count(*) FROM pg_stat_activity WHERE pid IN (SELECT holder_pid FROM observer_targets))
		FROM observer_targets`).Scan(&duties, &sessions, &alive)
	if err != nil {
		t.Fatal(err)
	}
	if duties != 3 || sessions != 1 || alive != 1 {
		t.Errorf("%d duties on %d sessions (%d alive); want 3 on 1", duties, sessions, alive)
	}
	pid := 0
	_ = s.Pool().QueryRow(ctx, `SELECT min(holder_pid) FROM observer_targets`).Scan(&pid)
	o.Release(ctx)
	gone, err := pause.Until(ctx, 5*time.Second, func() (bool, bool, error) {
		var n int
		err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n)
		return n == 0, n == 0, err
	})
	if err != nil || !gone {
		t.Errorf("the lock session outlived the released duties (%v)", err)
	}
}
