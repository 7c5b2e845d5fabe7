package schemas

import "time"

// RevocationCommandType is the versioned type of RevocationCommand documents.
// Version 2 added what makes a command impossible to replay elsewhere or
// later: its lifetime, a nonce, the target's identity, the role's OID, the
// action and the corroboration it rests on. A version 1 command is refused.
const RevocationCommandType = "io.leaseguard.revocation_command.v2"

// Actions a command asks for.
const (
	// ActionDropRole drops the database user (sessions terminated first).
	ActionDropRole = "drop_role"
	// ActionTerminateSession ends one session whose role no longer exists
	// (a ghost session): there is no role left to drop.
	ActionTerminateSession = "terminate_session"
)

// Corroboration sources: who, besides the bus, agreed that the action is
// due, checked just before the command was issued.
const (
	// CorroboratedByValidUntil: the role's pg_roles.rolvaliduntil is finite
	// and has passed (the database no longer honours the password).
	CorroboratedByValidUntil = "pg_valid_until"
	// CorroboratedByVaultLookup: Vault (sys/leases/lookup, LIST) says the
	// lease is gone or expired, or, for rules about a live lease, that it
	// exists as the ledger says.
	CorroboratedByVaultLookup = "vault_lookup"
	// CorroboratedByDatabase: the target shows the condition itself (a
	// session whose role no longer exists).
	CorroboratedByDatabase = "pg_catalog"
	// CorroboratedByOperator: a person asked for it (leaseguard revoke, an
	// approval).
	CorroboratedByOperator = "operator"
)

// RevocationCommand asks the revoker to drop one database user, or to end
// one ghost session. It is signed (Ed25519) when it is issued; the revoker
// refuses, before recording anything under its id, a command whose
// signature does not verify against a configured key, that has expired,
// or that names another target than the one it would act on.
type RevocationCommand struct {
	Type string `json:"type"`
	// ID is the idempotency key: deterministic over what is revoked and why,
	// so a command issued twice is one command. It is not the JetStream
	// message id: that is derived from the signed bytes, which nobody can
	// predict (MessageID).
	ID     string `json:"id"`
	Action string `json:"action"`
	// IssuedAt and ExpiresAt bound when the revoker may act on it.
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Nonce is random: two issues of one command sign different bytes.
	Nonce string `json:"nonce"`
	// Issuer is the component that created it: "detector", "operator",
	// "approval".
	Issuer    string `json:"issuer"`
	Actor     string `json:"actor,omitempty"`
	Rule      string `json:"rule"`
	FindingID string `json:"finding_id,omitempty"`
	Database  string `json:"database"`
	// Target is the identity of the database Database named when the
	// command was issued.
	Target TargetIdentity `json:"target"`
	// DBUser is the role to drop, or the former user of a ghost session
	// (empty when nobody knows it).
	DBUser string `json:"db_user"`
	// RoleOID is the role's OID when the command was issued; 0 means the
	// issuer saw no such role. The revoker refuses if it differs.
	RoleOID uint32 `json:"role_oid"`
	// Session names the ghost session of a terminate_session command.
	Session *SessionRef `json:"session,omitempty"`
	LeaseID string      `json:"lease_id,omitempty"`
	Reason  string      `json:"reason"`
	// Corroboration says who agreed besides the bus, and when.
	Corroboration Corroboration `json:"corroboration"`
	// Emergency commands may bypass the automatic blast-radius limit.
	Emergency bool `json:"emergency,omitempty"`
	// KeyID names the verify key (hex SHA-256 of the public key, first 16
	// characters); Signature is base64 Ed25519 over SigningBytes().
	KeyID     string `json:"key_id,omitempty"`
	Signature string `json:"signature,omitempty"`
}

// TargetIdentity identifies one database of one PostgreSQL cluster: the
// cluster's pg_control_system().system_identifier (decimal) and the
// database's oid. For a MySQL or MariaDB server, whose accounts are
// server-wide, it is "mysql:<server_uuid>" or "mariadb:<digest>" and oid 0
// (target/mysql).
type TargetIdentity struct {
	SystemIdentifier string `json:"system_identifier"`
	DatabaseOID      uint32 `json:"database_oid"`
}

// SessionRef names one backend exactly: a pid is reused, a pid with its
// start time is not.
type SessionRef struct {
	PID          int32     `json:"pid"`
	BackendStart time.Time `json:"backend_start"`
	// UserOID is the oid of the role the session ran as (dropped since).
	UserOID uint32 `json:"user_oid"`
}

// Corroboration records what agreed, besides the bus, that an action is
// due, and when that was checked.
type Corroboration struct {
	Source    string    `json:"source"`
	CheckedAt time.Time `json:"checked_at"`
	Detail    string    `json:"detail,omitempty"`
}

// Outcome is the final result of one revocation, as the database shows it.
type Outcome string

const (
	// OutcomeDropped: leaseguard dropped the role; afterwards it is absent
	// from pg_roles and no session of it is left.
	OutcomeDropped Outcome = "dropped"
	// OutcomeTerminated: leaseguard ended the ghost session; afterwards it
	// is gone from pg_stat_activity.
	OutcomeTerminated Outcome = "terminated"
	// OutcomeAlreadyAbsent: the role (or the session) did not exist when
	// the revoker looked.
	OutcomeAlreadyAbsent Outcome = "already_absent"
	// OutcomeRefused: a guard refused; nothing was executed.
	OutcomeRefused Outcome = "refused"
	// OutcomeFailed: statements failed, or the checks after them did not
	// show the role gone.
	OutcomeFailed Outcome = "failed"
)

// RevocationResult records what the revoker did for one command and what
// the database showed afterwards. It is what revocation evidence is made of.
type RevocationResult struct {
	CommandID string `json:"command_id"`
	// CommandHash is set on a command refused before it was recorded under
	// its id (unsigned, forged, expired, for another target, not
	// approved): the refusal is keyed by the hex SHA-256 of the bytes
	// received, so such a command takes no id from a real one.
	CommandHash string  `json:"command_hash,omitempty"`
	Database    string  `json:"database"`
	DBUser      string  `json:"db_user"`
	Outcome     Outcome `json:"outcome"`
	// Guard names the guard that refused (managed_pattern, protected,
	// superuser, own_role, replication, bypassrls, signature, …).
	Guard string `json:"guard,omitempty"`
	// Reason explains a refusal or failure in words.
	Reason   string `json:"reason,omitempty"`
	SQLState string `json:"sqlstate,omitempty"`
	// Statements are the statements executed, identifiers quoted, in order.
	Statements         []string `json:"statements,omitempty"`
	SessionsTerminated int      `json:"sessions_terminated"`
	ReassignedTo       string   `json:"reassigned_to,omitempty"`
	// Definers are the objects ("view db.v", "procedure db.p", …) whose
	// DEFINER was the dropped MySQL user: they fail when run until given
	// another definer. PostgreSQL has owners instead (ReassignedTo).
	Definers []string `json:"definers,omitempty"`
	// The checks made after the statements: the outcome rests on these.
	RoleAbsentAfter   bool      `json:"role_absent_after"`
	SessionsLeftAfter int       `json:"sessions_left_after"`
	StartedAt         time.Time `json:"started_at"`
	FinishedAt        time.Time `json:"finished_at"`
}
