// Package approval decides the pending revocations of rules in approve
// mode: an owner approves (the proposal is issued, signed, and executed
// through the revoker) or rejects; the sweep expires what nobody decided in
// time and sends again what an approval left stranded.
//
// The pending revocations themselves, and all their SQL, are in the leaf
// package approval/pending, which the detectors (that hold proposals) and
// the revoker (that checks an approval before it acts) read and write
// without depending on this package, which depends on the revoker.
package approval
