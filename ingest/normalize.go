package ingest

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Kind classifies an audit entry. The values are stable: they are the keys
// of the by-kind counters.
type Kind string

const (
	// KindIssue: a successful read of <mount>/creds/<role> on a database
	// mount; Lease is an issued event.
	KindIssue Kind = "issue"
	// KindRenew: a successful sys/leases/renew; Lease is a renewed event.
	KindRenew Kind = "renew"
	// KindRevoke: a successful revoke of one lease named in plain, by path
	// or in the request body; Lease is a revoked event.
	KindRevoke Kind = "revoke"
	// KindRevokePrefix: a successful revoke-prefix or revoke-force; Lease is
	// a revoked event with LeasePrefix set.
	KindRevokePrefix Kind = "revoke_prefix"
	// KindRevokeHashed: a successful sys/leases/revoke whose body lease_id
	// the audit device hashed; Lease is a revoked event with LeaseIDHMAC set.
	KindRevokeHashed Kind = "revoke_hashed"
	// KindCredsRequest: the request entry of a database creds read; Creds
	// is set so that the response can be awaited.
	KindCredsRequest Kind = "creds_request"
	// KindError: an entry carrying an error, either Vault's own (top-level
	// error) or the backend's (response.data.error). Creds is set when it is
	// a database creds request or response.
	KindError Kind = "error"
	// KindAuditTest: the request Vault writes when an audit device is enabled.
	KindAuditTest Kind = "audit_test"
	// KindOtherRequest and KindOtherResponse: entries that say nothing about
	// database leases, including the request entries of renewals and
	// revocations (only their responses count).
	KindOtherRequest  Kind = "other_request"
	KindOtherResponse Kind = "other_response"
	// KindOtherType: an entry type other than request and response, such as
	// Enterprise's kmip-request.
	KindOtherType Kind = "other_type"
)

// AllKinds returns every Kind, for example to create the counters up front.
func AllKinds() []Kind {
	return []Kind{
		KindIssue, KindRenew, KindRevoke, KindRevokePrefix, KindRevokeHashed,
		KindCredsRequest, KindError, KindAuditTest,
		KindOtherRequest, KindOtherResponse, KindOtherType,
	}
}

// CredsObservation records a database creds request or its response, so a
// request that never gets a successful response (a user Vault may have
// created that nobody holds) can be noticed. It is the ledger's record as is.
type CredsObservation = store.CredsRecord

// Normalized is what an audit entry means to leaseguard. Lease is set for
// KindIssue, KindRenew, KindRevoke, KindRevokePrefix and KindRevokeHashed;
// Creds for database creds requests and responses.
type Normalized struct {
	Kind  Kind
	Lease *schemas.LeaseEvent
	Creds *CredsObservation
	// Time is the entry's time; every decoded entry shows the stream is
	// alive (audit-silence).
	Time time.Time
	// Signal is set for an entry a counting rule looks at: a
	// permission-denied request on a database creds path, or a request on a
	// database mount made with a root token (see auditSignal).
	Signal *store.AuditSignal
	// Device is set for a request or response entry that enables or
	// disables an audit device.
	Device *store.AuditDeviceChange
}

// mountTypeDatabase is the mount type of the database secrets engine, for
// every database plugin.
const mountTypeDatabase = "database"

// Normalize classifies a decoded audit entry and derives the lease event it
// implies. The rules follow the lease paths Vault writes to the audit log:
//
//   - issue: a response, without error, to a read (or update) of
//     <mount_point>creds/<role> on a database mount, whose
//     response.secret.lease_id is set;
//   - renew: a response of sys/leases/renew[/<id>] (legacy sys/renew) with
//     response.secret.lease_id;
//   - revoke: a response, without error, of sys/leases/revoke/<id> (legacy
//     sys/revoke/<id>), or of sys/leases/revoke with lease_id in the body,
//     which the audit device hashes (revoke_hashed) unless told otherwise;
//   - revoke_prefix: a response, without error, of
//     sys/leases/revoke-prefix/<p> or sys/leases/revoke-force/<p> (legacy
//     sys/revoke-prefix/, sys/revoke-force/).
//
// An entry carrying an error, Vault's own (top-level error, which request
// entries can carry too) or the backend's (response.data.error), is
// KindError and gives no lease event; on a database creds path it still
// gives a CredsObservation with Error set.
//
// Lease ids are <request path>/<random id>, with ".<namespace id>" appended
// outside the root namespace (Vault's vault/expiration.go, Register); the
// audit device logs response.secret.lease_id and request.path unhashed
// (audit/entry_formatter.go).
//
// Normalize returns a *DecodeError for an entry that is well-formed JSON but
// contradicts how Vault writes its log, so that it is dead-lettered rather
// than guessed at. These are:
//   - a creds response on a database mount, without error, whose secret has
//     no lease_id, or a hashed one (lease ids in response.secret are never
//     hashed);
//   - a renew response whose response.secret.lease_id is hashed;
//   - a revoke response, without error, of sys/leases/revoke with no
//     lease_id in the request body;
//   - a revoke-prefix or revoke-force response, without error, with an empty
//     prefix;
//   - an entry without request (Decode already rejects it).
//
// Every lease event returned passes Validate.
func Normalize(e *schemas.AuditEntry, src schemas.SourceRef) (Normalized, error) {
	if e == nil || e.Request == nil {
		return Normalized{}, &DecodeError{Reason: "not a Vault audit entry: missing request"}
	}
	var (
		n   Normalized
		err error
	)
	switch e.Type {
	case schemas.AuditTypeRequest:
		n = normalizeRequest(e)
	case schemas.AuditTypeResponse:
		n, err = normalizeResponse(e, src)
	default:
		n = Normalized{Kind: KindOtherType}
	}
	if err != nil {
		return Normalized{}, err
	}
	if n.Lease != nil {
		if verr := n.Lease.Validate(); verr != nil {
			return Normalized{}, decodeErrorf("%s entry gives an invalid lease event: %v", n.Kind, verr)
		}
	}
	if n.Kind != KindOtherType {
		n.Time = e.Time
		n.Signal = auditSignal(e)
		if n.Kind != KindAuditTest {
			n.Device = auditDeviceChange(e)
		}
	}
	return n, nil
}

// auditSignal returns what a counting rule sees in e, or nil. Only request
// entries count (Vault writes one per request, and the response entry
// repeats it):
//
//   - denied_creds: a request refused with "permission denied" (top-level
//     error) on <mount>/creds/<role>, on a database mount or one whose type
//     the entry does not say (a refused request may not name it);
//   - root_use: a request on a database mount (request.mount_type) whose
//     token has the root policy (auth.policies or auth.token_policies).
func auditSignal(e *schemas.AuditEntry) *store.AuditSignal {
	if e.Type != schemas.AuditTypeRequest {
		return nil
	}
	req := e.Request
	ns := namespacePath(req)
	sig := &store.AuditSignal{Time: e.Time, Namespace: ns, RemoteAddress: stripPort(req.RemoteAddress), RequestID: req.ID}
	if e.Auth != nil {
		sig.EntityID, sig.TokenAccessor, sig.DisplayName = e.Auth.EntityID, e.Auth.Accessor, e.Auth.DisplayName
	}
	if sig.TokenAccessor == "" {
		sig.TokenAccessor = req.ClientTokenAccessor
	}
	if e.Error != "" && strings.Contains(strings.ToLower(e.Error), "permission denied") &&
		(req.MountType == mountTypeDatabase || req.MountType == "") {
		if mount, role, ok := credsPath(req.Path, req.MountPoint, ns); ok {
			sig.Kind, sig.Mount, sig.Role = store.SignalDeniedCreds, mount, role
			return sig
		}
	}
	if req.MountType == mountTypeDatabase && e.Auth != nil &&
		(slices.Contains(e.Auth.Policies, "root") || slices.Contains(e.Auth.TokenPolicies, "root")) {
		sig.Kind = store.SignalRootUse
		sig.Mount = strings.TrimSuffix(req.MountPoint, "/")
		if ns != "" {
			sig.Mount = strings.TrimPrefix(sig.Mount, strings.TrimSuffix(ns, "/")+"/")
		}
		if mount, role, ok := credsPath(req.Path, req.MountPoint, ns); ok {
			sig.Mount, sig.Role = mount, role
		}
		if sig.Mount == "" {
			sig.Mount, _, _ = strings.Cut(req.Path, "/")
		}
		return sig
	}
	return nil
}

// auditDeviceChange returns the change an entry of sys/audit/<path> makes:
// delete disables the device, update enables it. Vault writes the response
// of a disable to the remaining devices only, and the request entry of an
// enable to the devices enabled before: either entry may be all a stream
// sees of a change.
func auditDeviceChange(e *schemas.AuditEntry) *store.AuditDeviceChange {
	req := e.Request
	dev, ok := strings.CutPrefix(req.Path, "sys/audit/")
	if !ok || dev == "" {
		return nil
	}
	var op string
	switch req.Operation {
	case "delete":
		op = store.AuditDeviceDisable
	case "update", "create":
		op = store.AuditDeviceEnable
	default:
		return nil
	}
	c := &store.AuditDeviceChange{
		RequestID: req.ID, Response: e.Type == schemas.AuditTypeResponse, DevicePath: dev, Operation: op, Time: e.Time,
		Error:     e.Error != "" || (e.Response != nil && dataHasError(e.Response.Data)),
		Namespace: namespacePath(req), RemoteAddress: stripPort(req.RemoteAddress),
	}
	if e.Auth != nil {
		c.EntityID, c.TokenAccessor, c.DisplayName = e.Auth.EntityID, e.Auth.Accessor, e.Auth.DisplayName
	}
	if c.RequestID == "" {
		return nil
	}
	return c
}

func normalizeRequest(e *schemas.AuditEntry) Normalized {
	if e.Request.Path == "sys/audit/test" && e.Error == "" {
		return Normalized{Kind: KindAuditTest}
	}
	creds := credsObservation(e)
	if e.Error != "" {
		// Vault refused the request (permission denied, …) before any
		// backend ran; the response entry will carry the error too.
		if creds != nil {
			creds.Error = true
		}
		return Normalized{Kind: KindError, Creds: creds}
	}
	if creds != nil {
		return Normalized{Kind: KindCredsRequest, Creds: creds}
	}
	return Normalized{Kind: KindOtherRequest}
}

func normalizeResponse(e *schemas.AuditEntry, src schemas.SourceRef) (Normalized, error) {
	failed := e.Error != "" || (e.Response != nil && dataHasError(e.Response.Data))
	if creds := credsObservation(e); creds != nil {
		creds.Response = true
		creds.LeaseID = secretLeaseID(e)
		if failed {
			creds.Error = true
			return Normalized{Kind: KindError, Creds: creds}, nil
		}
		return normalizeIssue(e, creds, src)
	}
	if failed {
		return Normalized{Kind: KindError}, nil
	}
	rest, ok := strings.CutPrefix(e.Request.Path, "sys/")
	if !ok || !writes(e.Request.Operation) {
		// Only a write renews or revokes: help on sys/leases/revoke-prefix/…
		// (vault path-help) revokes nothing.
		return Normalized{Kind: KindOtherResponse}, nil
	}
	// sys/leases/<action> and the legacy sys/<action> are routed alike.
	rest = strings.TrimPrefix(rest, "leases/")
	action, arg, _ := strings.Cut(rest, "/")
	switch action {
	case "renew":
		return normalizeRenew(e, src)
	case "revoke":
		return normalizeRevoke(e, arg, src)
	case "revoke-prefix":
		return normalizeRevokePrefix(e, arg, schemas.RevokeByPrefix, src)
	case "revoke-force":
		return normalizeRevokePrefix(e, arg, schemas.RevokeByForce, src)
	}
	return Normalized{Kind: KindOtherResponse}, nil
}

// writes reports whether op is how Vault logs a PUT or POST: update, or
// create on a path with an existence check.
func writes(op string) bool { return op == "update" || op == "create" }

func normalizeIssue(e *schemas.AuditEntry, creds *CredsObservation, src schemas.SourceRef) (Normalized, error) {
	if e.Response == nil || e.Response.Secret == nil {
		// No secret at all: a wrapped response, for instance, logs the
		// wrapping token instead. Nothing to record, but the request is
		// answered.
		return Normalized{Kind: KindOtherResponse, Creds: creds}, nil
	}
	leaseID := creds.LeaseID
	switch {
	case leaseID == "":
		return Normalized{}, &DecodeError{Reason: "creds response on a database mount has a secret without lease_id"}
	case schemas.IsHMAC(leaseID):
		return Normalized{}, &DecodeError{Reason: "creds response has a hashed response.secret.lease_id"}
	}
	ev := leaseEvent(e, schemas.LeaseIssued, src)
	ev.LeaseID = leaseID
	ev.Mount = creds.Mount
	ev.Role = creds.Role
	ev.DBUser = responseUsername(e.Response.Data)
	ev.DBUserHMAC = schemas.IsHMAC(ev.DBUser)
	issued := e.Time
	ev.IssueTime = &issued
	return Normalized{Kind: KindIssue, Lease: ev, Creds: creds}, nil
}

func normalizeRenew(e *schemas.AuditEntry, src schemas.SourceRef) (Normalized, error) {
	leaseID := secretLeaseID(e)
	switch {
	case leaseID == "":
		// Renewing a token lease answers with auth, not a secret.
		return Normalized{Kind: KindOtherResponse}, nil
	case schemas.IsHMAC(leaseID):
		return Normalized{}, &DecodeError{Reason: "renew response has a hashed response.secret.lease_id"}
	}
	ev := leaseEvent(e, schemas.LeaseRenewed, src)
	ev.LeaseID = leaseID
	ev.Mount, ev.Role = parseLeaseID(leaseID)
	return Normalized{Kind: KindRenew, Lease: ev}, nil
}

// normalizeRevoke handles sys/leases/revoke/<arg>, where an empty arg means
// the lease id is in the request body.
func normalizeRevoke(e *schemas.AuditEntry, arg string, src schemas.SourceRef) (Normalized, error) {
	ev := leaseEvent(e, schemas.LeaseRevoked, src)
	kind := KindRevoke
	if arg != "" {
		ev.LeaseID = arg
		ev.RevokeBy = schemas.RevokeByPath
	} else {
		ev.LeaseID = requestLeaseID(e.Request.Data)
		ev.RevokeBy = schemas.RevokeByBody
		if ev.LeaseID == "" {
			return Normalized{}, &DecodeError{Reason: "revoke response without lease_id in request.data"}
		}
		if schemas.IsHMAC(ev.LeaseID) {
			// The sys/ mount cannot be tuned, so the audit device hashes
			// the body's lease_id unless it logs raw.
			ev.LeaseIDHMAC = true
			kind = KindRevokeHashed
		}
	}
	if !ev.LeaseIDHMAC {
		ev.Mount, ev.Role = parseLeaseID(ev.LeaseID)
	}
	return Normalized{Kind: kind, Lease: ev}, nil
}

func normalizeRevokePrefix(e *schemas.AuditEntry, prefix string, by schemas.RevokeMethod, src schemas.SourceRef) (Normalized, error) {
	if prefix == "" {
		return Normalized{}, decodeErrorf("%s response with an empty prefix", by)
	}
	ev := leaseEvent(e, schemas.LeaseRevoked, src)
	ev.LeasePrefix = prefix
	ev.RevokeBy = by
	ev.Mount, ev.Role = parseLeasePrefix(prefix)
	return Normalized{Kind: KindRevokePrefix, Lease: ev}, nil
}

// leaseEvent fills what every lease event takes from the entry.
func leaseEvent(e *schemas.AuditEntry, kind schemas.LeaseEventKind, src schemas.SourceRef) *schemas.LeaseEvent {
	ev := &schemas.LeaseEvent{
		Type:           schemas.LeaseEventType,
		Kind:           kind,
		Namespace:      namespacePath(e.Request),
		EventTime:      e.Time,
		RemoteAddress:  stripPort(e.Request.RemoteAddress),
		VaultRequestID: e.Request.ID,
		Source:         src,
	}
	if e.Auth != nil {
		ev.EntityID = e.Auth.EntityID
		ev.TokenAccessor = e.Auth.Accessor
		ev.DisplayName = e.Auth.DisplayName
	}
	return ev
}

// credsObservation returns the observation of a database creds request or
// response, or nil when the entry is something else.
func credsObservation(e *schemas.AuditEntry) *CredsObservation {
	req := e.Request
	// Database creds are read with GET, but a POST is accepted too.
	if req.Operation != "read" && req.Operation != "update" {
		return nil
	}
	// Older versions may log the mount type on only one side.
	if req.MountType != mountTypeDatabase && (e.Response == nil || e.Response.MountType != mountTypeDatabase) {
		return nil
	}
	ns := namespacePath(req)
	mount, role, ok := credsPath(req.Path, req.MountPoint, ns)
	if !ok {
		return nil
	}
	c := &CredsObservation{
		RequestID:     req.ID,
		Path:          req.Path,
		Mount:         mount,
		Role:          role,
		Namespace:     ns,
		RemoteAddress: stripPort(req.RemoteAddress),
		Time:          e.Time,
	}
	if e.Auth != nil {
		c.EntityID = e.Auth.EntityID
		c.TokenAccessor = e.Auth.Accessor
		c.DisplayName = e.Auth.DisplayName
	}
	return c
}

// credsPath matches path against <mountPoint>creds/<role> and returns the
// mount (relative to the namespace, no trailing slash) and the role. Vault
// logs request.path relative to the namespace, while mount_point can carry
// the namespace path ("team-a/postgres/"); both forms are accepted. Without
// a mount point (older entries) the path is split at its last "/creds/".
func credsPath(path, mountPoint, ns string) (mount, role string, ok bool) {
	if mountPoint == "" {
		i := strings.LastIndex(path, "/creds/")
		if i < 0 {
			return "", "", false
		}
		mount, role = path[:i], path[i+len("/creds/"):]
	} else {
		mp := mountPoint
		if !strings.HasSuffix(mp, "/") {
			mp += "/"
		}
		rest, found := strings.CutPrefix(path, mp)
		if !found && ns != "" {
			if rel, abs := strings.CutPrefix(mp, ns); abs {
				mp = rel
				rest, found = strings.CutPrefix(path, mp)
			}
		}
		if !found {
			return "", "", false
		}
		if role, found = strings.CutPrefix(rest, "creds/"); !found {
			return "", "", false
		}
		mount = strings.TrimSuffix(mp, "/")
	}
	// Role names never contain a slash: creds/<role>/x is another path.
	if mount == "" || role == "" || strings.Contains(role, "/") {
		return "", "", false
	}
	return mount, role, true
}

// parseLeaseID returns mount and role of a lease id shaped
// <mount>/creds/<role>/<id>[.<namespace id>], or empty strings for any other
// shape. Mount and role come before the last segment, so the namespace
// suffix needs no special case.
func parseLeaseID(id string) (mount, role string) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 || i == len(id)-1 {
		return "", ""
	}
	head := id[:i]
	j := strings.LastIndexByte(head, '/')
	if j <= 0 || j == len(head)-1 {
		return "", ""
	}
	mount, ok := strings.CutSuffix(head[:j], "/creds")
	if !ok || mount == "" {
		return "", ""
	}
	return mount, head[j+1:]
}

// parseLeasePrefix returns what a revoke prefix says of mount and role:
// "postgres/creds/reporting/" gives both, "postgres/creds/" the mount only,
// "postgres/creds/rep" the mount only (the role is not complete).
func parseLeasePrefix(prefix string) (mount, role string) {
	i := strings.LastIndex(prefix, "/creds/")
	if i <= 0 {
		return "", ""
	}
	mount = prefix[:i]
	rest := prefix[i+len("/creds/"):]
	if r, _, complete := strings.Cut(rest, "/"); complete {
		role = r
	}
	return mount, role
}

// namespacePath returns namespace.path as logged, "" for the root namespace.
func namespacePath(req *schemas.AuditRequest) string {
	if req.Namespace == nil {
		return ""
	}
	return req.Namespace.Path
}

// stripPort removes a port from a logged remote address: "10.0.0.1:5555"
// and "[::1]:5555" give "10.0.0.1" and "::1"; an IPv6 address without
// brackets is kept whole.
func stripPort(addr string) string {
	if addr == "" {
		return ""
	}
	if addr[0] == '[' {
		if i := strings.IndexByte(addr, ']'); i > 1 {
			return addr[1:i]
		}
		return addr
	}
	if i := strings.IndexByte(addr, ':'); i > 0 && strings.LastIndexByte(addr, ':') == i && isDigits(addr[i+1:]) {
		return addr[:i]
	}
	return addr
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func secretLeaseID(e *schemas.AuditEntry) string {
	if e.Response == nil || e.Response.Secret == nil {
		return ""
	}
	return e.Response.Secret.LeaseID
}

// dataHasError reports whether response.data has a non-empty "error" key,
// which is how a backend error (an unknown role, …) is logged. The byte
// search spares decoding the data of almost every response.
func dataHasError(data json.RawMessage) bool {
	if len(data) == 0 || !bytes.Contains(data, []byte(`"error"`)) {
		return false
	}
	var d struct {
		Error json.RawMessage `json:"error"`
	}
	// Data that is not an object has no error key: ignore the error.
	_ = json.Unmarshal(data, &d)
	switch string(d.Error) {
	case "", "null", `""`:
		return false
	}
	return true
}

// responseUsername returns response.data.username, "" when it is absent or
// not a string.
func responseUsername(data json.RawMessage) string {
	if len(data) == 0 {
		return ""
	}
	var d struct {
		Username string `json:"username"`
	}
	// A type mismatch leaves Username empty, which is what we want.
	_ = json.Unmarshal(data, &d)
	return d.Username
}

// requestLeaseID returns request.data.lease_id, "" when it is absent or not
// a string.
func requestLeaseID(data json.RawMessage) string {
	if len(data) == 0 {
		return ""
	}
	var d struct {
		LeaseID string `json:"lease_id"`
	}
	_ = json.Unmarshal(data, &d)
	return d.LeaseID
}
