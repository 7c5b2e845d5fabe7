package main

import (
	"context"
	"fmt"
	"time"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
)

// resumeGoal is the goal of every dependency fault: all work resumes
// within 10 s of the restore, and /readyz is not ready while stuck.
var resumeGoal = Goal{Recovery: 10 * time.Second, NotReady: true, HeldBack: true}

// settleTimeout bounds the wait for the last outcome after a restore; past
// the goal, so that a slow recovery is measured rather than cut off.
const settleTimeout = 3 * time.Minute

// fault is something a case does to a dependency and undoes.
type fault struct {
	apply, restore func() error
}

// proxyFault switches a proxy to mode, and back to pass.
func proxyFault(p *faultproxy.Proxy, m faultproxy.Mode) fault {
	return fault{
		apply:   func() error { p.SetMode(m); return nil },
		restore: func() error { p.SetMode(faultproxy.Pass); return nil },
	}
}

// natsKill kills the nats-server with SIGKILL, and starts it again.
func (e *caseEnv) natsKill() fault {
	return fault{
		apply:   func() error { e.nats.proc.kill(); return nil },
		restore: e.restartNATS,
	}
}

// start starts leaseguard 0 and watches its /readyz.
func (e *caseEnv) start() error {
	if _, err := e.startLeaseguard(0); err != nil {
		return err
	}
	e.ready = watchReady(e.metricsURL(0))
	return nil
}

// runDuringDrops: users fall due from shortly after their issue until well
// into the fault; the fault is applied as soon as the first user has been
// dropped, held for the fault time, and undone.
func (e *caseEnv) runDuringDrops(ctx context.Context, f fault, goal Goal) (Observation, Goal, error) {
	if err := e.start(); err != nil {
		return Observation{}, goal, err
	}
	d := e.h.opt.fault
	first := time.Now().Add(2 * time.Second)
	if err := e.issueAndPublish(ctx, e.h.opt.users, first, first.Add(d)); err != nil {
		return Observation{}, goal, err
	}
	if err := e.waitFirstDrop(ctx, time.Minute); err != nil {
		return Observation{}, goal, err
	}
	return e.holdAndObserve(ctx, f, nil, goal)
}

// runDuringIngest: the fault is applied before any entry is published;
// the entries are published while it holds, and every user is due by the
// restore.
func (e *caseEnv) runDuringIngest(ctx context.Context, f fault, goal Goal) (Observation, Goal, error) {
	if err := e.start(); err != nil {
		return Observation{}, goal, err
	}
	d := e.h.opt.fault
	lines, err := e.issue(ctx, e.h.opt.users, time.Now(), time.Now().Add(d/2))
	if err != nil {
		return Observation{}, goal, err
	}
	parts := chunks(lines, 4)
	during := func(ctx context.Context) error {
		for _, p := range parts {
			if err := e.publish(ctx, p); err != nil {
				return err
			}
			if err := hold(ctx, d/time.Duration(len(parts)+1)); err != nil {
				return err
			}
		}
		return nil
	}
	return e.holdAndObserve(ctx, f, during, goal)
}

// holdAndObserve applies f, runs during (if any) and holds the fault for
// the rest of the fault time, restores, waits for the pipeline to settle
// and observes.
func (e *caseEnv) holdAndObserve(ctx context.Context, f fault, during func(context.Context) error, goal Goal) (Observation, Goal, error) {
	if err := f.apply(); err != nil {
		return Observation{}, goal, fmt.Errorf("apply the fault: %w", err)
	}
	at := time.Now()
	if during != nil {
		if err := during(ctx); err != nil {
			_ = f.restore()
			return Observation{}, goal, err
		}
	}
	if err := hold(ctx, time.Until(at.Add(e.fault))); err != nil {
		return Observation{}, goal, err
	}
	if err := f.restore(); err != nil {
		return Observation{}, goal, fmt.Errorf("restore: %w", err)
	}
	restored := time.Now()
	return e.settleAndObserve(ctx, at, restored, goal)
}

// settleAndObserve waits for the last outcome and gathers the figures'
// input; a settle that times out is reported, not fatal.
func (e *caseEnv) settleAndObserve(ctx context.Context, faultAt, restored time.Time, goal Goal) (Observation, Goal, error) {
	settle := settleTimeout
	if e.settle > 0 {
		settle = e.settle
	}
	settleErr := e.waitSettled(ctx, settle)
	obs, err := e.observe(ctx, restored)
	if err != nil {
		return obs, goal, err
	}
	if e.ready != nil && !faultAt.IsZero() {
		obs.NotReady = e.ready.notReadyBetween(faultAt, restored)
	}
	if settleErr != nil {
		obs.Extra = append(obs.Extra, settleErr.Error())
	}
	obs.Extra = append(obs.Extra, e.extra...)
	return obs, goal, nil
}
