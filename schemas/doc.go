// Package schemas holds leaseguard's wire formats: the Vault audit entry as
// leaseguard reads it, the normalised lease event, and the events leaseguard
// emits. Each Go type has a JSON Schema (draft 2020-12) beside it, embedded in
// the binary, and an example document. This package imports nothing of ours.
package schemas
