package store

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// The ledger row of a lease is a fold of its events and of the prefix
// revocations that cover it. Every field merges with an operation that is
// commutative, associative and idempotent, so the row does not depend on the
// order in which events arrive, nor on whether one arrives twice:
//
//   - state only rises: active < expired < revoked.
//   - issued_at, first_seen_at, revoked_at: the earliest; renewed_at: the latest.
//   - mount, role, namespace, database, db_user and the issuer's identity
//     (entity_id, token_accessor, display_name, remote_address): the issued
//     event with the earliest issue time wins; other events only fill what is
//     still unknown (identity: never, it is the renewer's or revoker's).
//     A plain db_user always beats an HMAC, whatever the order.
//   - expire_at from events: the event with the latest event time wins, ties
//     to the later expiry. It always beats pg_valid_until and role_default.
//   - last_event*: the greatest (event time, kind, request id).
//   - a prefix revocation covers a lease when the prefix matches its id (as
//     Vault matches it), the namespaces do not differ, and first_seen_at is at
//     or before the revocation. first_seen_at only moves earlier, so coverage,
//     once true, stays true.

// EventID is the idempotency key of a lease event: the hex SHA-256 of its
// kind, lease id (or HMAC, or prefix), Vault request id and event time (UTC,
// RFC 3339 with nanoseconds).
func EventID(e *schemas.LeaseEvent) string {
	target := "lease:" + e.LeaseID
	switch {
	case e.LeasePrefix != "":
		target = "prefix:" + e.LeasePrefix
	case e.LeaseIDHMAC:
		target = "hmac:" + e.LeaseID
	}
	h := sha256.New()
	for _, f := range []string{string(e.Kind), target, e.VaultRequestID, e.EventTime.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// dbTime is t as PostgreSQL stores it: UTC, microseconds.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func dbTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := dbTime(*t)
	return &u
}

// normalize returns e with its times as PostgreSQL stores them, so merges in
// Go and comparisons with stored rows agree.
func normalize(e schemas.LeaseEvent) schemas.LeaseEvent {
	e.EventTime = dbTime(e.EventTime)
	e.IssueTime = dbTimePtr(e.IssueTime)
	e.ExpireTime = dbTimePtr(e.ExpireTime)
	return e
}

func earliest(cur *time.Time, t time.Time) *time.Time {
	if cur == nil || t.Before(*cur) {
		return &t
	}
	return cur
}

func latest(cur *time.Time, t time.Time) *time.Time {
	if cur == nil || t.After(*cur) {
		return &t
	}
	return cur
}

func stateRank(s LeaseState) int {
	switch s {
	case StateActive:
		return 1
	case StateExpired:
		return 2
	case StateRevoked:
		return 3
	}
	return 0
}

func raiseState(l *Lease, s LeaseState) {
	if stateRank(s) > stateRank(l.State) {
		l.State = s
	}
}

// pick merges one attribute: the winner's value if it has one, else the
// other's.
func pick(cur, new string, newWins bool) string {
	if new == "" || (cur != "" && !newWins) {
		return cur
	}
	return new
}

// mergeDBUser: a plain name beats an HMAC; between two of the same kind the
// winner (see pick) decides.
func mergeDBUser(l *Lease, user string, hmac, newWins bool) {
	switch {
	case user == "":
	case l.DBUser == "":
		l.DBUser, l.DBUserHMAC = user, hmac
	case l.DBUserHMAC != hmac:
		if !hmac {
			l.DBUser, l.DBUserHMAC = user, false
		}
	case newWins:
		l.DBUser = user
	}
}

// eventExpiry is the expiry an event carries: its expire time, else its
// event time plus its TTL.
func eventExpiry(e *schemas.LeaseEvent) (time.Time, bool) {
	switch {
	case e.ExpireTime != nil:
		return *e.ExpireTime, true
	case e.TTLSeconds != nil:
		return e.EventTime.Add(time.Duration(*e.TTLSeconds) * time.Second), true
	}
	return time.Time{}, false
}

func mergeRevoke(l *Lease, at time.Time, method schemas.RevokeMethod) {
	switch {
	case l.RevokedAt == nil || at.Before(*l.RevokedAt):
		l.RevokedAt, l.RevokeMethod = &at, method
	case at.Equal(*l.RevokedAt) && method != "" && (l.RevokeMethod == "" || method < l.RevokeMethod):
		l.RevokeMethod = method
	}
}

func mergeLastEvent(l *Lease, at time.Time, kind schemas.LeaseEventKind, requestID string) {
	later := l.LastEventAt == nil
	if !later {
		switch {
		case !at.Equal(*l.LastEventAt):
			later = at.After(*l.LastEventAt)
		case kind != l.LastEvent:
			later = kind > l.LastEvent
		default:
			later = requestID > l.LastRequestID
		}
	}
	if later {
		l.LastEventAt, l.LastEvent, l.LastRequestID = &at, kind, requestID
	}
}

// mergeEvent folds one normalised event that names a plain lease id into l.
func mergeEvent(l *Lease, e *schemas.LeaseEvent) {
	t := e.EventTime
	raiseState(l, StateActive)
	l.FirstSeenAt = earliest(l.FirstSeenAt, t)

	wins := false
	if e.Kind == schemas.LeaseIssued {
		issued := t
		if e.IssueTime != nil {
			issued = *e.IssueTime
		}
		wins = l.IssuedAt == nil || issued.Before(*l.IssuedAt)
		l.IssuedAt = earliest(l.IssuedAt, issued)
		l.FirstSeenAt = earliest(l.FirstSeenAt, issued)
		l.EntityID = pick(l.EntityID, e.EntityID, wins)
		l.TokenAccessor = pick(l.TokenAccessor, e.TokenAccessor, wins)
		l.DisplayName = pick(l.DisplayName, e.DisplayName, wins)
		l.RemoteAddress = pick(l.RemoteAddress, e.RemoteAddress, wins)
	}
	l.Mount = pick(l.Mount, e.Mount, wins)
	l.Role = pick(l.Role, e.Role, wins)
	l.Namespace = pick(l.Namespace, e.Namespace, wins)
	l.Database = pick(l.Database, e.Database, wins)
	mergeDBUser(l, e.DBUser, e.DBUserHMAC, wins)

	exp, hasExpiry := eventExpiry(e)
	switch e.Kind {
	case schemas.LeaseRenewed:
		l.RenewedAt = latest(l.RenewedAt, t)
		// Vault moved rolvaliduntil; a value read before is stale.
		if !hasExpiry && (l.ExpireSource == schemas.ExpireFromValidUntil || l.ExpireSource == schemas.ExpireFromRoleDefault) {
			l.ExpireCheckedAt = nil
		}
	case schemas.LeaseRevoked:
		raiseState(l, StateRevoked)
		mergeRevoke(l, t, e.RevokeBy)
	case schemas.LeaseExpired:
		raiseState(l, StateExpired)
	}

	if hasExpiry {
		take := l.ExpireSource != schemas.ExpireFromEvent || l.ExpireEventAt == nil || l.ExpireAt == nil ||
			t.After(*l.ExpireEventAt) ||
			(t.Equal(*l.ExpireEventAt) && (exp.After(*l.ExpireAt) ||
				(exp.Equal(*l.ExpireAt) && greaterTTL(e.TTLSeconds, l.TTLSeconds))))
		if take {
			l.ExpireAt, l.ExpireSource, l.ExpireEventAt = &exp, schemas.ExpireFromEvent, &t
			l.TTLSeconds = copyInt(e.TTLSeconds)
			l.ExpireCheckedAt = nil
		}
	}
	mergeLastEvent(l, t, e.Kind, e.VaultRequestID)
}

func greaterTTL(a, b *int64) bool {
	return a != nil && (b == nil || *a > *b)
}

func copyInt(p *int64) *int64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// prefixRevocation is one row of prefix_revocations.
type prefixRevocation struct {
	Prefix    string
	RevokedAt time.Time
	Method    schemas.RevokeMethod
	Namespace string
	RequestID string
}

// prefixMatches reports whether Vault's revoke-prefix of prefix reaches
// leaseID: a prefix without a trailing slash names that exact lease, or the
// leases under prefix + "/" (vault/expiration.go, revokePrefixCommon).
// Matching is literal: no pattern characters.
func prefixMatches(prefix, leaseID string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(leaseID, prefix)
	}
	return leaseID == prefix || strings.HasPrefix(leaseID, prefix+"/")
}

// prefixRange is the key range [lo, hi) of the lease ids under prefix (in
// "C" collation), besides the exact id prefix itself.
func prefixRange(prefix string) (lo, hi string) {
	lo = prefix
	if !strings.HasSuffix(lo, "/") {
		lo += "/"
	}
	// lo ends in '/', so its successor ends in '0': still valid UTF-8.
	return lo, lo[:len(lo)-1] + "0"
}

// applyPrefix applies p to l if p covers it, and reports whether that
// revoked a lease that was not revoked before.
func applyPrefix(l *Lease, p *prefixRevocation) bool {
	if !prefixMatches(p.Prefix, l.LeaseID) {
		return false
	}
	if p.Namespace != "" && l.Namespace != "" && p.Namespace != l.Namespace {
		return false
	}
	// Issued after the revocation: Vault did not revoke it. A lease with no
	// known time at all is treated as covered.
	if l.FirstSeenAt != nil && l.FirstSeenAt.After(p.RevokedAt) {
		return false
	}
	was := l.State
	raiseState(l, StateRevoked)
	mergeRevoke(l, p.RevokedAt, p.Method)
	mergeLastEvent(l, p.RevokedAt, schemas.LeaseRevoked, p.RequestID)
	return was != StateRevoked
}

func textPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
