// Package vaulttest is a local HTTP server that speaks the few Vault
// endpoints leaseguard calls, as Vault 1.21 answers them (status codes and
// JSON shapes from vault/logical_system.go, http/logical.go and
// sdk/logical/response_util.go): errors as {"errors": [...]}, 204 for a
// revoke, 400 when the backend fails a revocation or a lease is unknown to
// lookup, 403 for a missing capability or sudo, 404 for an empty list.
// Tests drive its state: leases, tokens, audit devices, failures.
package vaulttest
