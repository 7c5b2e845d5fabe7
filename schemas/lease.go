package schemas

import (
	"fmt"
	"time"
)

// LeaseEventType is the versioned type of LeaseEvent documents.
const LeaseEventType = "io.leaseguard.lease.v1"

// LeaseEventKind is what happened to a lease.
type LeaseEventKind string

const (
	LeaseIssued  LeaseEventKind = "issued"
	LeaseRenewed LeaseEventKind = "renewed"
	LeaseRevoked LeaseEventKind = "revoked"
	LeaseExpired LeaseEventKind = "expired"
)

// Valid reports whether k is one of the four kinds.
func (k LeaseEventKind) Valid() bool {
	switch k {
	case LeaseIssued, LeaseRenewed, LeaseRevoked, LeaseExpired:
		return true
	}
	return false
}

// ExpireSource says where a lease's expire time came from, most trusted first.
type ExpireSource string

const (
	// ExpireFromEvent: a lease event that carried the expire time or TTL.
	ExpireFromEvent ExpireSource = "event"
	// ExpireFromValidUntil: pg_roles.rolvaliduntil of the lease's user, which
	// Vault's PostgreSQL plugin sets to the lease expiry plus 5 s.
	ExpireFromValidUntil ExpireSource = "pg_valid_until"
	// ExpireFromRoleDefault: the configured default TTL of the Vault role.
	ExpireFromRoleDefault ExpireSource = "role_default"
	// ExpireFromVault: Vault's own expire_time (sys/leases/lookup), read by
	// the Vault link.
	ExpireFromVault ExpireSource = "vault_lookup"
)

// RevokeMethod says how Vault was asked to revoke.
type RevokeMethod string

const (
	RevokeByPath   RevokeMethod = "path"          // sys/leases/revoke/<lease id>
	RevokeByBody   RevokeMethod = "body"          // sys/leases/revoke with {"lease_id": …}
	RevokeByPrefix RevokeMethod = "revoke-prefix" // sys/leases/revoke-prefix/<prefix>
	RevokeByForce  RevokeMethod = "revoke-force"  // sys/leases/revoke-force/<prefix>
	RevokeByEvent  RevokeMethod = "event"         // a LeaseEvent from another producer
)

// SourceRef names the message a LeaseEvent was derived from, so every ledger
// change can be traced to its input.
type SourceRef struct {
	// Transport is "nats", "kafka", "file" (replay) or "socket".
	Transport string `json:"transport"`
	// Stream is the JetStream stream, Kafka topic or file name.
	Stream    string `json:"stream,omitempty"`
	Subject   string `json:"subject,omitempty"`
	Partition int    `json:"partition,omitempty"`
	// Offset is the JetStream stream sequence, Kafka offset or file line.
	Offset int64 `json:"offset"`
}

// LeaseEvent is the normalised event leaseguard derives from Vault's audit log
// (or receives from another producer on vault.leases.>).
type LeaseEvent struct {
	Type string         `json:"type"`
	Kind LeaseEventKind `json:"kind"`
	// LeaseID is the full Vault lease id. For a revoke-prefix or revoke-force
	// it is empty and LeasePrefix is set. For a revoke through the API body it
	// is the HMAC Vault logged, and LeaseIDHMAC is true.
	LeaseID     string       `json:"lease_id,omitempty"`
	LeaseIDHMAC bool         `json:"lease_id_hmac,omitempty"`
	LeasePrefix string       `json:"lease_prefix,omitempty"`
	RevokeBy    RevokeMethod `json:"revoke_method,omitempty"`
	Mount       string       `json:"mount,omitempty"`
	Role        string       `json:"role,omitempty"`
	Namespace   string       `json:"namespace,omitempty"`
	// Database is the leaseguard target that holds the lease's user, from
	// LEASEGUARD_ROUTES (or set by the producer of a lease event).
	Database string `json:"database,omitempty"`
	// DBUser is the database user name, plain, or its HMAC with DBUserHMAC set.
	DBUser       string       `json:"db_user,omitempty"`
	DBUserHMAC   bool         `json:"db_user_hmac,omitempty"`
	IssueTime    *time.Time   `json:"issue_time,omitempty"`
	ExpireTime   *time.Time   `json:"expire_time,omitempty"`
	ExpireSource ExpireSource `json:"expire_source,omitempty"`
	TTLSeconds   *int64       `json:"ttl_seconds,omitempty"`
	// EventTime is when Vault acted (the audit entry's time).
	EventTime time.Time `json:"event_time"`
	EntityID  string    `json:"entity_id,omitempty"`
	// TokenAccessor is the accessor as Vault logged it (usually an HMAC).
	TokenAccessor  string    `json:"token_accessor,omitempty"`
	DisplayName    string    `json:"display_name,omitempty"`
	RemoteAddress  string    `json:"remote_address,omitempty"`
	VaultRequestID string    `json:"vault_request_id,omitempty"`
	Source         SourceRef `json:"source"`
}

// Validate checks what the ledger relies on. It is the gate for events that
// come from other producers: a document that fails it is dead-lettered.
func (e *LeaseEvent) Validate() error {
	if e.Type != LeaseEventType {
		return fmt.Errorf("type %q is not %q", e.Type, LeaseEventType)
	}
	if !e.Kind.Valid() {
		return fmt.Errorf("kind %q is not issued, renewed, revoked or expired", e.Kind)
	}
	if e.EventTime.IsZero() {
		return fmt.Errorf("event_time is missing")
	}
	switch {
	case e.LeaseID == "" && e.LeasePrefix == "":
		return fmt.Errorf("lease_id is missing")
	case e.LeaseID != "" && e.LeasePrefix != "":
		return fmt.Errorf("lease_id and lease_prefix are exclusive")
	case e.LeasePrefix != "" && e.Kind != LeaseRevoked:
		return fmt.Errorf("lease_prefix is only valid on a revoked event")
	case e.LeaseIDHMAC && e.Kind != LeaseRevoked:
		return fmt.Errorf("an HMAC'd lease_id is only valid on a revoked event")
	}
	if e.TTLSeconds != nil && *e.TTLSeconds < 0 {
		return fmt.Errorf("ttl_seconds is negative")
	}
	if e.ExpireSource != "" && e.ExpireTime == nil {
		return fmt.Errorf("expire_source without expire_time")
	}
	return nil
}

// VaultLease is what Vault's sys/leases/lookup says of a lease.
type VaultLease struct {
	ID          string     `json:"id"`
	IssueTime   time.Time  `json:"issue_time"`
	ExpireTime  *time.Time `json:"expire_time"`
	LastRenewal *time.Time `json:"last_renewal"`
	Renewable   bool       `json:"renewable"`
	TTL         int64      `json:"ttl"`
}

// Live reports whether the lease still grants access at now: Vault holds it
// and it has not expired (an expired lease still held is one whose
// revocation is pending or failing).
func (l VaultLease) Live(now time.Time) bool {
	return l.ExpireTime == nil || l.ExpireTime.IsZero() || l.ExpireTime.After(now)
}
