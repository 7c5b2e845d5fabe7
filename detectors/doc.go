// Package detectors holds leaseguard's rules: each looks at the ledger (and,
// in later rules, at the databases), raises findings, and, where its mode is
// enforce and the object is in the enforcement scope, asks the revoker to
// drop the user.
package detectors
