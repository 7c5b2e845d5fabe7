// Package adminapi is leaseguard's authenticated admin HTTP API: operator
// revocations (POST /v1/revocations, through the same operator.Service as
// the `leaseguard revoke` CLI, so the same revoker, guards, idempotency and
// evidence), read access to revocations, leases, findings and evidence, and
// safe rollout: the enforcement policy and the pilot report (scope.go).
// schemas/openapi.json describes it; a test keeps the two in agreement.
//
// Every request is authenticated, by a bearer token whose SHA-256 is in the
// token table or by a client certificate (mutual TLS) whose subject CN is a
// name of that table, and needs the scope of its route (read for GETs,
// revoke for POSTs). Refusals are counted by reason and logged with the
// principal or "anonymous" and the remote address, never with a token.
// Requests are rate limited per principal, and a client address that
// failed authentication too often is turned away (failures.go) before any
// credential it presents is examined.
package adminapi
