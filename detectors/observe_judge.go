package detectors

import (
	"fmt"
	"strconv"
	"time"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// The observer rules' judgements are pure functions of what one pass saw
// and what the ledger says, at the pass's time, so their edges are tested in
// tables without a database or a clock.

// verdict is a rule's conclusion about one object, before mode and scope.
type verdict struct {
	rule     string
	severity schemas.Severity
	id       string
	dbUser   string
	oid      uint32
	summary  string
	facts    map[string]any
	// lease is the lease the finding names (an exact link only).
	lease *store.Lease
	// mayEnforce: the facts are firm enough to act in enforce mode;
	// otherwise whyNot says why not.
	mayEnforce bool
	whyNot     string
	// ghost is the session to terminate (ghost-session).
	ghost *observed.Session
	// verify: the rule relies on what the ledger says (no lease, or an
	// ended lease the ledger may have from a forged entry): before it
	// destroys, the database (rolvaliduntil) or Vault must agree
	// (corroborate, observe_vault.go). role is the role judged, with its
	// link.
	verify bool
	role   *roleCase
	// corroboration is what agreed, besides the ledger; unconfirmed says
	// why nothing did. A verdict acts only when corroborated.
	corroboration *schemas.Corroboration
	unconfirmed   string
	// reissue: the finding is recorded and its command never reached the
	// revoker's record within its lifetime: issue it again.
	reissue bool
}

// roleCase is one managed role with its live sessions and its link to the
// ledger.
type roleCase struct {
	role     observed.Role
	sessions []observed.Session
	link     leaseLink
	// scope keys the findings about the role (observed.Pass.RoleScope):
	// the role is the server's, found once whichever target sees it.
	// leaseDBs are the targets whose leases may account for it
	// (observed.Pass.LeaseTargets). Both empty: the pass's database.
	scope    string
	leaseDBs []string
}

// scopeOr is the role's scope, or db when it has none.
func (c *roleCase) scopeOr(db string) string {
	if c == nil || c.scope == "" {
		return db
	}
	return c.scope
}

// leaseTargets are the targets whose leases may account for the role.
func (c *roleCase) leaseTargets(db string) []string {
	if c == nil || len(c.leaseDBs) == 0 {
		return []string{db}
	}
	return c.leaseDBs
}

// caseOf is a copy of c for a verdict to keep. A rule must not take the
// address of its own c: that moves c to the heap on every call, verdict or
// not, and the rules see every managed role of every pass.
func caseOf(c roleCase) *roleCase { return &c }

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func oidString(oid uint32) string { return strconv.FormatUint(uint64(oid), 10) }

// roleFacts are the facts every role verdict carries.
func roleFacts(c roleCase) map[string]any {
	f := map[string]any{
		"role_oid":      c.role.OID,
		"first_seen_at": rfc(c.role.FirstSeenAt),
		"pg_can_login":  c.role.CanLogin,
		"lease_link":    c.link.kind,
	}
	if c.role.CreatedAfter != nil {
		f["created_after"] = rfc(*c.role.CreatedAfter)
	}
	if c.role.ValidUntil != nil {
		f["pg_valid_until"] = rfc(*c.role.ValidUntil)
	}
	if c.link.candidates > 0 {
		f["hmac_leases_in_creation_window"] = c.link.candidates
	}
	if c.link.revocation != "" {
		// how the ledger learned of the lease's revocation
		f["lease_revocation_link"] = c.link.revocation
	}
	return f
}

// sessionFacts describe live sessions; relative to end (the lease's end,
// Vault's clock) when given, each says whether it started after it, before
// it, or too close to tell with the clocks' skew.
func sessionFacts(ss []observed.Session, end *time.Time, skew time.Duration) []map[string]any {
	out := make([]map[string]any, 0, len(ss))
	for _, s := range ss {
		m := map[string]any{"pid": s.PID, "backend_start": rfc(s.BackendStart), "backend_type": s.BackendType}
		if s.ClientAddr != "" {
			m["client_addr"] = s.ClientAddr
		}
		if s.ClientPort != 0 {
			m["client_port"] = s.ClientPort
		}
		if s.ApplicationName != "" {
			m[factApplicationName] = s.ApplicationName
		}
		if s.Datname != "" {
			m["datname"] = s.Datname
		}
		if end != nil {
			switch {
			case s.BackendStart.After(end.Add(skew)):
				m["started"] = "after_lease_end"
			case s.BackendStart.Before(end.Add(-skew)):
				m["started"] = "before_lease_end"
			default:
				m["started"] = "uncertain"
			}
		}
		out = append(out, m)
	}
	return out
}

// factApplicationName is the one fact a client chooses freely.
const factApplicationName = "application_name"

const whyProbable = "the lease is linked by the username template only (probable): leaseguard does not act on it"

// endedLease returns the lease a role's link says has ended, or nil when no
// lease is linked or one is still active.
func endedLease(c roleCase) *store.Lease {
	if c.link.kind != linkExact && c.link.kind != linkHMAC && c.link.kind != linkProbable {
		return nil
	}
	if activeLease(c.link.leases) != nil {
		return nil
	}
	return &c.link.leases[0]
}

// honouredAfterExpiry: the ledger says the lease expired but the database
// still honours the password (a renewal the ledger missed). Never judge on
// a stale expiry.
func honouredAfterExpiry(l *store.Lease, r observed.Role, now time.Time) bool {
	return l.State == store.StateExpired && r.ValidUntil != nil && r.ValidUntil.After(now)
}

// judgeReuseAfterRevoke: a live session of a role whose lease is revoked or
// expired, ReuseGrace after the lease ended (Vault's clock; the grace also
// covers Vault's own drop in flight and clock skew).
func judgeReuseAfterRevoke(db string, c roleCase, now time.Time, cfg DBRulesConfig) *verdict {
	l := endedLease(c)
	if len(c.sessions) == 0 || l == nil || honouredAfterExpiry(l, c.role, now) {
		return nil
	}
	end, src := leaseEnd(*l)
	if now.Before(end.Add(cfg.ReuseGrace)) {
		return nil
	}
	facts := roleFacts(c)
	facts["lease_state"] = string(l.State)
	facts["lease_ended_at"] = rfc(end)
	facts["lease_end_source"] = src
	facts["grace_seconds"] = cfg.ReuseGrace.Seconds()
	facts["clock_skew_seconds"] = cfg.ClockSkew.Seconds()
	facts["sessions"] = sessionFacts(c.sessions, &end, cfg.ClockSkew)
	v := &verdict{
		rule: RuleReuseAfterRevoke, severity: schemas.SeverityCritical, dbUser: c.role.Name, oid: c.role.OID,
		id: id(RuleReuseAfterRevoke, db, c.role.Name, oidString(c.role.OID), l.LeaseID),
		summary: fmt.Sprintf("user %s has %d live session(s) although its lease %s was %s at %s",
			c.role.Name, len(c.sessions), l.LeaseID, l.State, end.UTC().Format(time.RFC3339)),
		facts: facts, mayEnforce: true, verify: true, role: caseOf(c),
	}
	if c.link.kind == linkExact || c.link.kind == linkHMAC {
		v.lease = l
	} else {
		facts["probable_lease_id"] = l.LeaseID
		v.mayEnforce, v.whyNot = false, whyProbable
	}
	return v
}

// judgeReuseUnknownLease: a live session of a managed role created after the
// coverage watermark that no lease accounts for, UnknownLeaseGrace after the
// role was first seen (the audit entry of its issue may still be on its way).
func judgeReuseUnknownLease(db string, c roleCase, coverage, now time.Time, cfg DBRulesConfig) *verdict {
	if len(c.sessions) == 0 || !createdAfterCoverage(c.role, coverage) || c.link.kind != linkNone {
		return nil
	}
	if now.Before(c.role.FirstSeenAt.Add(cfg.UnknownLeaseGrace)) {
		return nil
	}
	facts := roleFacts(c)
	facts["coverage_since"] = rfc(coverage)
	facts["grace_seconds"] = cfg.UnknownLeaseGrace.Seconds()
	facts["sessions"] = sessionFacts(c.sessions, nil, 0)
	return &verdict{
		rule: RuleReuseUnknownLease, severity: schemas.SeverityCritical, dbUser: c.role.Name, oid: c.role.OID,
		id: id(RuleReuseUnknownLease, db, c.role.Name, oidString(c.role.OID)),
		summary: fmt.Sprintf("user %s, created after %s, has %d live session(s) and no lease in the ledger accounts for it",
			c.role.Name, c.role.CreatedAfter.UTC().Format(time.RFC3339), len(c.sessions)),
		facts: facts, mayEnforce: true, verify: true, role: caseOf(c),
	}
}

// judgeOrphanRole: a managed role still present OrphanGrace after its lease
// ended, or, created after the coverage watermark with no lease, OrphanGrace
// after it was first seen.
func judgeOrphanRole(db string, c roleCase, coverage, now time.Time, cfg DBRulesConfig) *verdict {
	// The facts are built only for a verdict: this rule sees every managed
	// role of every pass (100,000 of them on a large target), and almost
	// all of them give none.
	verdictOf := func() (*verdict, map[string]any) {
		facts := roleFacts(c)
		facts["grace_seconds"] = cfg.OrphanGrace.Seconds()
		facts["live_sessions"] = len(c.sessions)
		return &verdict{rule: RuleOrphanRole, dbUser: c.role.Name, oid: c.role.OID, facts: facts, mayEnforce: true, verify: true, role: caseOf(c)}, facts
	}
	var v *verdict
	var facts map[string]any
	switch c.link.kind {
	case linkExact, linkHMAC, linkProbable:
		l := endedLease(c)
		if l == nil || honouredAfterExpiry(l, c.role, now) {
			return nil
		}
		end, src := leaseEnd(*l)
		if now.Before(end.Add(cfg.OrphanGrace)) {
			return nil
		}
		v, facts = verdictOf()
		facts["reason"] = "lease_ended"
		facts["lease_state"] = string(l.State)
		facts["lease_ended_at"] = rfc(end)
		facts["lease_end_source"] = src
		v.severity = schemas.SeverityHigh
		v.id = id(RuleOrphanRole, db, c.role.Name, oidString(c.role.OID), l.LeaseID)
		v.summary = fmt.Sprintf("user %s still exists %s after its lease %s was %s",
			c.role.Name, now.Sub(end).Round(time.Second), l.LeaseID, l.State)
		if c.link.kind == linkExact || c.link.kind == linkHMAC {
			v.lease = l
		} else {
			facts["probable_lease_id"] = l.LeaseID
			v.mayEnforce, v.whyNot = false, whyProbable
		}
	case linkNone:
		if !createdAfterCoverage(c.role, coverage) || now.Before(c.role.FirstSeenAt.Add(cfg.OrphanGrace)) {
			return nil
		}
		v, facts = verdictOf()
		facts["reason"] = "no_lease"
		facts["coverage_since"] = rfc(coverage)
		v.severity = schemas.SeverityMedium
		v.id = id(RuleOrphanRole, db, c.role.Name, oidString(c.role.OID), "")
		v.summary = fmt.Sprintf("user %s was created after %s and no lease in the ledger accounts for it (first seen %s)",
			c.role.Name, c.role.CreatedAfter.UTC().Format(time.RFC3339), c.role.FirstSeenAt.UTC().Format(time.RFC3339))
	default:
		return nil
	}
	return v
}

// createdAfterCoverage: the role is known to have been created after the
// watermark (it was absent at a pass no earlier than the watermark). A role
// there at the observer's first pass, or possibly older than the watermark,
// is never judged as never issued.
func createdAfterCoverage(r observed.Role, coverage time.Time) bool {
	return r.CreatedAfter != nil && !r.CreatedAfter.Before(coverage)
}

// judgeGhost: a session whose role no longer exists. lease is the lease of
// the former user, when the ledger has one. The database itself shows it
// (pg_stat_activity against pg_roles, read in the pass at now): that is its
// corroboration, and the revoker checks it again before it terminates.
func judgeGhost(db string, s observed.Session, lease *store.Lease, now time.Time, cfg DBRulesConfig) *verdict {
	facts := map[string]any{
		"pid":               s.PID,
		"backend_start":     rfc(s.BackendStart),
		"user_oid":          s.UserOID,
		"backend_type":      s.BackendType,
		"former_user_known": s.FormerUser != "",
	}
	for k, v := range map[string]string{"client_addr": s.ClientAddr, "datname": s.Datname, factApplicationName: s.ApplicationName} {
		if v != "" {
			facts[k] = v
		}
	}
	if s.ClientPort != 0 {
		facts["client_port"] = s.ClientPort
	}
	if s.GhostSince != nil {
		facts["ghost_since"] = rfc(*s.GhostSince)
	}
	managed := s.FormerUser != "" && cfg.ManagedPattern.MatchString(s.FormerUser)
	v := &verdict{
		rule: RuleGhostSession, severity: schemas.SeverityCritical, dbUser: s.FormerUser, oid: s.UserOID,
		id:    id(RuleGhostSession, db, strconv.Itoa(int(s.PID)), strconv.FormatInt(s.BackendStart.UnixMicro(), 10)),
		facts: facts, lease: lease, ghost: &s, mayEnforce: true,
		corroboration: &schemas.Corroboration{Source: schemas.CorroboratedByDatabase, CheckedAt: now.UTC(),
			Detail: fmt.Sprintf("pg_stat_activity shows pid %d running as role oid %d, which no role in pg_roles has", s.PID, s.UserOID)},
	}
	if s.FormerUser != "" {
		facts["former_user"] = s.FormerUser
		facts["former_user_managed"] = managed
		v.summary = fmt.Sprintf("session pid %d (started %s) runs on with no role: its user %s was dropped under it",
			s.PID, s.BackendStart.UTC().Format(time.RFC3339), s.FormerUser)
	} else {
		v.summary = fmt.Sprintf("session pid %d (started %s) runs on with no role: its role (oid %d), unknown to leaseguard, was dropped under it",
			s.PID, s.BackendStart.UTC().Format(time.RFC3339), s.UserOID)
	}
	switch {
	case s.BackendType != "client backend":
		v.mayEnforce, v.whyNot = false, fmt.Sprintf("backend type %q is not a client backend", s.BackendType)
	case s.FormerUser != "" && !managed:
		v.mayEnforce, v.whyNot = false, fmt.Sprintf("the former user %s does not match the managed pattern", s.FormerUser)
	case s.FormerUser == "":
		v.mayEnforce, v.whyNot = false, "the former role is unknown to the observer's history, so nothing shows leaseguard manages it"
	}
	return v
}
