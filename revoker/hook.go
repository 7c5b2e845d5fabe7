package revoker

import "context"

// BeforeCommitFunc runs inside a drop transaction after every statement
// succeeded and before COMMIT, with the target transaction id and the ids of
// the commands it carries. An error aborts the transaction. The Executor
// uses it to record the target transaction id in the state store, so that
// a crash between COMMIT and recording the outcome can be resolved exactly
// (txid_status) on redelivery. It is passed to DropBatch, and held by the
// transaction (dropTx.hook) that calls it: nothing reaches it through the
// context.
type BeforeCommitFunc func(ctx context.Context, xid int64, commandIDs []string) error
