// Package vaultsim plays what Vault's database secrets engine does to
// PostgreSQL and writes to its audit log: users created exactly as the
// PostgreSQL plugin creates them (LOGIN, a password, VALID UNTIL expiry+5s,
// grants; IssueMySQL: as the mysql plugin creates them on MySQL or
// MariaDB, one account per host, no expiry), renewals, revocations, and the request/response audit entries
// Vault 1.21 writes for each (shapes taken from a real Vault 1.21 log). The
// demo, the end-to-end tests and the benchmarks use it; it is not a Vault.
package vaultsim
