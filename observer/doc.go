// Package observer watches the target databases themselves: every interval
// it reads each target's managed roles (pg_roles) and sessions
// (pg_stat_activity), diffs them against the previous pass kept in the
// state store, records and publishes the changes as RoleEvent and
// SessionEvent documents on JetStream (leaseguard.db.<database>.role and
// .session), and hands the pass to the rules (package detectors: ghost
// sessions, credential reuse, orphan roles). MySQL and MariaDB targets
// are read from information_schema.PROCESSLIST and mysql.user, mapped onto
// the same model (mysql.go).
//
// One process observes a target at a time: the duty is a session-level
// advisory lock on a connection of the state store kept for the duties
// (one per observer process, whatever the number of targets: Duty),
// with an epoch that fences off a process that lost it.
package observer
