// Package revoker drops the PostgreSQL users of expired Vault leases, behind
// guards that make dropping the wrong user impossible by construction: a
// command must name a managed, unprotected, ordinary login role, and the
// database must confirm that inside the transaction that drops it.
//
// It owns the drop transaction in the target databases, the command
// signature and its keys, the blast-radius limit, and the consumer of the
// revocation queue. The steps of a drop are named in dropTx (drop_run.go).
package revoker
