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
