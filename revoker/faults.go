package revoker

import (
	"context"
	"fmt"
)

// Step names a point of a drop where DropperConfig.Faults is called.
type Step string

// The steps of a drop, in order. The first four are the Dropper's, the last
// is the Executor's.
const (
	// StepBeforeNologin: the role was read and passed every guard, under its
	// lock; nothing has changed yet.
	StepBeforeNologin Step = "before_nologin"
	// StepAfterNologin: ALTER ROLE … NOLOGIN ran in the open transaction.
	StepAfterNologin Step = "after_nologin"
	// StepBeforeCommit: every statement of the drop ran and the target
	// transaction id was handed to the before-commit hook; not committed.
	StepBeforeCommit Step = "before_commit"
	// StepAfterCommit: the drop committed; the check after it (pg_roles,
	// sessions) was not made.
	StepAfterCommit Step = "after_commit"
	// StepBeforeRecord: the Executor has the outcomes and has not recorded
	// them in the state store.
	StepBeforeRecord Step = "before_record"
)

// DropSteps lists the steps of a drop in order.
func DropSteps() []Step {
	return []Step{StepBeforeNologin, StepAfterNologin, StepBeforeCommit, StepAfterCommit, StepBeforeRecord}
}

// FaultFunc is called at each Step of a drop with the ids of the commands
// the step acts on. It exists for tests, which use it to stop a drop at a
// step or to hold it there while something else happens.
//
// Returning nil lets the drop go on. Returning an error stops the drop at
// that step as a crash of the process would: an open target transaction is
// rolled back (as the server does when the connection dies) and nothing
// after the step runs (no fallback per role, no check after the commit, no
// record). The Executor hands the commands back for another attempt, as a
// redelivery after a crash would bring them (a stop at one of the Dropper's
// steps is a transient failure: on a command's last attempt, it is recorded
// as failed). A call that blocks holds the drop there, with its locks.
type FaultFunc func(ctx context.Context, step Step, commandIDs []string) error

// faultError is a drop stopped by a FaultFunc.
type faultError struct {
	step Step
	err  error
}

func (e *faultError) Error() string {
	return fmt.Sprintf("stopped at %s: %v", e.step, e.err)
}

func (e *faultError) Unwrap() error { return e.err }

// fault calls the configured FaultFunc, if any, for items.
func (d *Dropper) fault(ctx context.Context, step Step, items []*item) error {
	if d.faults == nil {
		return nil
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.res.CommandID
	}
	return d.faultIDs(ctx, step, ids)
}

func (d *Dropper) faultIDs(ctx context.Context, step Step, ids []string) error {
	if d.faults == nil {
		return nil
	}
	if err := d.faults(ctx, step, ids); err != nil {
		return &faultError{step: step, err: err}
	}
	return nil
}
