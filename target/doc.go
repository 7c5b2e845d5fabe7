// Package target knows the PostgreSQL databases that hold Vault's dynamic
// users ("targets") and which Vault mount or role routes to which of them.
// Vault's audit entry names the mount and role of a lease, never the
// database, so this mapping is configuration.
package target
