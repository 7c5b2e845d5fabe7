package revoker

import "context"

// BeforeCommitFunc runs inside a drop transaction after every statement
// succeeded and before COMMIT, with the target transaction id and the ids of
// the commands it carries. An error aborts the transaction.
type BeforeCommitFunc func(ctx context.Context, xid int64, commandIDs []string) error

type beforeCommitKey struct{}

// WithBeforeCommit returns a context whose drops call fn before committing.
// The revoker uses it to record the target transaction id in the state
// store, so that a crash between COMMIT and recording the outcome can be
// resolved exactly (txid_status) on redelivery.
func WithBeforeCommit(ctx context.Context, fn BeforeCommitFunc) context.Context {
	return context.WithValue(ctx, beforeCommitKey{}, fn)
}

func beforeCommit(ctx context.Context) BeforeCommitFunc {
	fn, _ := ctx.Value(beforeCommitKey{}).(BeforeCommitFunc)
	return fn
}
