// Package pending keeps the pending revocations of rules in approve mode
// (migration 008) and is the only package that writes them: the detectors
// hold a proposal (Insert), an owner's decision is a compare-and-set under
// the row's lock (Lock, Decide), the sweep claims what ran out or was
// stranded (ClaimDue, Stranded), and the revoker reads the approval before
// it acts (Get).
package pending
