// Package vaultlink keeps HashiCorp Vault in agreement with what leaseguard
// did: a client of Vault's HTTP API (github.com/hashicorp/vault/api) whose
// token comes from the configuration or a file that is re-read when it
// changes, and is renewed while leaseguard runs (TokenKeeper); the
// Reconciler, which revokes in Vault the leases whose users leaseguard
// dropped, from a durable queue in the state store; the HMACResolver,
// which hashes managed role names through every audit device's
// sys/audit-hash so that leases whose user the audit log showed only as an
// HMAC are linked to their users exactly; and the RevocationLinker, which
// hashes lease ids the same way so that revocations through the API body
// (logged only as the lease id's HMAC) are applied to their leases.
//
// The token is never logged, put in a metric, in evidence or in the state
// store.
package vaultlink
