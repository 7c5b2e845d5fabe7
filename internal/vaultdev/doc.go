// Package vaultdev drives a real Vault server through its API for the
// end-to-end tests and the benchmark harness: a request by method and path,
// its answer as the JSON document Vault's API documents (lease_id,
// lease_duration, data, …), errors as the client library's
// *api.ResponseError.
package vaultdev
