package main

import (
	"context"
	"time"
)

// runTwoNodes: two leaseguard processes share the state store and the
// JetStream (the same durable consumers) with the same signing key; once
// the burst's first user is dropped, one of them is killed (kill -9) and
// not restarted. The commands the killed one held come back to the other
// after the revoker's AckWait, so the goal is that of a kill -9 (killGoal),
// counted from the kill.
func runTwoNodes(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
	goal := restartGoal(killGoal)
	if err := e.start(); err != nil {
		return Observation{}, goal, err
	}
	if _, err := e.startLeaseguard(1); err != nil {
		return Observation{}, goal, err
	}
	if err := e.burst(ctx, e.h.opt.users); err != nil {
		return Observation{}, goal, err
	}
	if err := e.waitFirstDrop(ctx, time.Minute); err != nil {
		return Observation{}, goal, err
	}
	e.procs[1].kill()
	return e.settleAndObserve(ctx, time.Time{}, time.Now(), goal)
}
