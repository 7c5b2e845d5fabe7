package schemas

import (
	"encoding/json"
	"strings"
	"time"
)

// HMACPrefix marks a value that Vault's audit device replaced by its HMAC.
const HMACPrefix = "hmac-sha256:"

// IsHMAC reports whether s is a value Vault's audit device hashed.
func IsHMAC(s string) bool { return strings.HasPrefix(s, HMACPrefix) }

// Audit entry types. Other values (Enterprise's kmip-request, …) are valid
// entries of another kind, not errors.
const (
	AuditTypeRequest  = "request"
	AuditTypeResponse = "response"
)

// AuditEntry is one line of a Vault audit device (file, socket or syslog), as
// documented at developer.hashicorp.com/vault/docs/audit/schema. Only the
// fields leaseguard reads are typed; unknown fields are ignored, and the
// free-form request and response bodies are kept raw and read on demand,
// because their keys are whatever a secrets engine returns.
type AuditEntry struct {
	Time     time.Time      `json:"time"`
	Type     string         `json:"type"`
	Auth     *AuditAuth     `json:"auth,omitempty"`
	Request  *AuditRequest  `json:"request,omitempty"`
	Response *AuditResponse `json:"response,omitempty"`
	// Error is set for errors Vault itself raised (permission denied, …).
	// Errors from a backend appear as response.data.error instead.
	Error string `json:"error,omitempty"`
	// RequestIDDerived says Request.ID was not in the entry (help
	// operations, Enterprise KMIP entries) and was derived from the entry's
	// bytes by the decoder: it is stable across deliveries of the same line,
	// and links nothing to anything else.
	RequestIDDerived bool `json:"-"`
}

// AuditAuth is the token that made the request, as Vault logged it.
// metadata is not read: Vault 1.21 writes any JSON value in it.
type AuditAuth struct {
	ClientToken    string   `json:"client_token,omitempty"`
	Accessor       string   `json:"accessor,omitempty"`
	DisplayName    string   `json:"display_name,omitempty"`
	Policies       []string `json:"policies,omitempty"`
	TokenPolicies  []string `json:"token_policies,omitempty"`
	EntityID       string   `json:"entity_id,omitempty"`
	TokenType      string   `json:"token_type,omitempty"`
	TokenTTL       int64    `json:"token_ttl,omitempty"`
	TokenIssueTime string   `json:"token_issue_time,omitempty"`
}

// AuditNamespace is the Vault namespace of a request ("root" outside Enterprise).
type AuditNamespace struct {
	ID   string `json:"id,omitempty"`
	Path string `json:"path,omitempty"`
}

// AuditRequest is the request part of an entry; response entries repeat it.
type AuditRequest struct {
	ID                  string          `json:"id"`
	ClientID            string          `json:"client_id,omitempty"`
	Operation           string          `json:"operation,omitempty"`
	MountPoint          string          `json:"mount_point,omitempty"`
	MountType           string          `json:"mount_type,omitempty"`
	MountAccessor       string          `json:"mount_accessor,omitempty"`
	MountClass          string          `json:"mount_class,omitempty"`
	ClientToken         string          `json:"client_token,omitempty"`
	ClientTokenAccessor string          `json:"client_token_accessor,omitempty"`
	Namespace           *AuditNamespace `json:"namespace,omitempty"`
	Path                string          `json:"path,omitempty"`
	Data                json.RawMessage `json:"data,omitempty"`
	RemoteAddress       string          `json:"remote_address,omitempty"`
	RemotePort          int             `json:"remote_port,omitempty"`
}

// AuditSecret is all the audit log says of a lease: its id. No TTL, no
// lease_duration, no renewable flag.
type AuditSecret struct {
	LeaseID string `json:"lease_id,omitempty"`
}

// AuditResponse is the response part of a response entry.
type AuditResponse struct {
	MountPoint    string          `json:"mount_point,omitempty"`
	MountType     string          `json:"mount_type,omitempty"`
	MountAccessor string          `json:"mount_accessor,omitempty"`
	Secret        *AuditSecret    `json:"secret,omitempty"`
	Data          json.RawMessage `json:"data,omitempty"`
}
