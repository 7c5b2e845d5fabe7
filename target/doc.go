// Package target knows the databases that hold Vault's dynamic users
// ("targets") and which Vault mount or role routes to which of them.
// Vault's audit entry names the mount and role of a lease, never the
// database, so this mapping is configuration.
//
// A target is PostgreSQL (a pgx pool; Postgres is its engine.Engine) or,
// from a mysql:// URL, MySQL or MariaDB (target/mysql, which also drops its
// accounts itself). Pool and Names cover the PostgreSQL targets, which the
// revoker, observer and detectors read directly; Engine, Revoker and
// AllNames cover every target.
package target
