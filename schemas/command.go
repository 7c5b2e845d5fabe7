package schemas

import "time"

// RevocationCommandType is the versioned type of RevocationCommand documents.
const RevocationCommandType = "io.leaseguard.revocation_command.v1"

// RevocationCommand asks the revoker to drop one database user. It is signed
// (Ed25519) by the detector or operator that issued it; the revoker refuses a
// command whose signature does not verify against a configured key.
type RevocationCommand struct {
	Type string `json:"type"`
	// ID is the idempotency key: deterministic over what is revoked and why,
	// so a command published twice is one command.
	ID       string    `json:"id"`
	IssuedAt time.Time `json:"issued_at"`
	// Issuer is the component that created it: "detector", "operator", ….
	Issuer    string `json:"issuer"`
	Actor     string `json:"actor,omitempty"`
	Rule      string `json:"rule"`
	FindingID string `json:"finding_id,omitempty"`
	Database  string `json:"database"`
	DBUser    string `json:"db_user"`
	LeaseID   string `json:"lease_id,omitempty"`
	Reason    string `json:"reason"`
	// Emergency commands may bypass the automatic blast-radius limit.
	Emergency bool `json:"emergency,omitempty"`
	// KeyID names the verify key (hex SHA-256 of the public key, first 16
	// characters); Signature is base64 Ed25519 over SigningBytes().
	KeyID     string `json:"key_id,omitempty"`
	Signature string `json:"signature,omitempty"`
}

// Outcome is the final result of one revocation, as the database shows it.
type Outcome string

const (
	// OutcomeDropped: leaseguard dropped the role; afterwards it is absent
	// from pg_roles and no session of it is left.
	OutcomeDropped Outcome = "dropped"
	// OutcomeAlreadyAbsent: the role did not exist when the revoker looked.
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
	CommandID string  `json:"command_id"`
	Database  string  `json:"database"`
	DBUser    string  `json:"db_user"`
	Outcome   Outcome `json:"outcome"`
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
	// The checks made after the statements: the outcome rests on these.
	RoleAbsentAfter   bool      `json:"role_absent_after"`
	SessionsLeftAfter int       `json:"sessions_left_after"`
	StartedAt         time.Time `json:"started_at"`
	FinishedAt        time.Time `json:"finished_at"`
}
