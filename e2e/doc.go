// Package e2e holds leaseguard's end-to-end tests against a real Vault
// server (build tag e2e, run by make e2e): Vault's file and socket audit
// devices feed a real leaseguard process, Vault's database secrets engine
// creates users in the local PostgreSQL, and the tests check the ledger,
// the drops and the evidence that follow.
package e2e
