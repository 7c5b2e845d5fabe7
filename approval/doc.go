// Package approval keeps the pending revocations of rules in approve mode
// (migration 008) and is the only package that writes them: the detectors
// hold a proposal here (InsertPending), an owner's decision is a
// compare-and-set under the row's lock (LockPending, DecidePending), the
// sweep claims what ran out or was stranded (ClaimDuePending,
// StrandedApprovals), and the revoker reads the approval before it acts
// (GetPending).
//
// The decision workflow, which issues and executes the approved command
// through the revoker, is operator.Approvals: it lives above the revoker,
// which itself reads this package, so it cannot live here.
package approval
