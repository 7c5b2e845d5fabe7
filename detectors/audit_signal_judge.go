package detectors

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// The audit-signal rules' judgements: pure functions of what the store
// returned and the pass's time, tested in tables.

// windowRule is one counting rule over store windows.
type windowRule struct {
	rule     string
	kind     store.SignalKind
	severity schemas.Severity
	window   time.Duration
	// threshold: a window with more is reported.
	threshold int64
	// factor, period, baselineMin: the baseline trigger (factor <= 0: off).
	factor      float64
	period      time.Duration
	baselineMin int64
}

func (c SignalRulesConfig) windowRules() []windowRule {
	return []windowRule{
		{rule: RuleIssuanceBurst, kind: store.SignalIssue, severity: schemas.SeverityHigh, window: c.IssuanceWindow,
			threshold: c.IssuanceThreshold, factor: c.IssuanceFactor, period: c.IssuanceBaseline, baselineMin: c.IssuanceBaselineMin},
		{rule: RuleDeniedBurst, kind: store.SignalDeniedCreds, severity: schemas.SeverityMedium, window: c.DeniedWindow,
			threshold: c.DeniedThreshold},
		{rule: RuleRootTokenUse, kind: store.SignalRootUse, severity: schemas.SeverityHigh, window: c.RootTokenWindow},
	}
}

// query is the store query of the rule's candidate windows.
func (r windowRule) query(from time.Time, limit int) store.WindowQuery {
	q := store.WindowQuery{Kind: r.kind, Rule: r.rule, From: from, Window: r.window, Min: r.threshold,
		Threshold: r.threshold, Limit: limit}
	if r.baseline() {
		q.BaselinePeriod = r.period
		if m := r.baselineMin - 1; m < q.Min {
			q.Min = max(m, 0)
		}
	}
	return q
}

func (r windowRule) baseline() bool { return r.factor > 0 && r.period > 0 }

// windowStart is the first instant of the window ending with bucket end.
func (r windowRule) windowStart(end time.Time) time.Time {
	return end.Add(store.BucketWidth - r.window)
}

// baselineAverage is the key's average count per window before w: its sum
// over the part of the baseline period the key has history in (at least one
// window). ok is false without history.
func (r windowRule) baselineAverage(w store.WindowCount) (float64, bool) {
	if w.BaselineFrom.IsZero() || w.BaselineSum <= 0 {
		return 0, false
	}
	span := r.windowStart(w.End).Sub(w.BaselineFrom)
	windows := float64(span) / float64(r.window)
	if windows < 1 {
		windows = 1
	}
	return float64(w.BaselineSum) / windows, true
}

// judgeWindow decides whether a window is reported, and why: "threshold"
// (above the absolute threshold) or "baseline" (above factor times the
// key's own average).
func judgeWindow(r windowRule, w store.WindowCount) (string, bool) {
	if w.Count > r.threshold {
		return "threshold", true
	}
	if !r.baseline() || w.Count < r.baselineMin {
		return "", false
	}
	avg, ok := r.baselineAverage(w)
	if ok && float64(w.Count) > r.factor*avg {
		return "baseline", true
	}
	return "", false
}

// principalFacts splits a store principal into its fact.
func principalFacts(p string, facts map[string]any) (entityID string) {
	switch {
	case strings.HasPrefix(p, "entity:"):
		entityID = strings.TrimPrefix(p, "entity:")
		facts["entity_id"] = entityID
	case strings.HasPrefix(p, "accessor:"):
		facts["token_accessor"] = strings.TrimPrefix(p, "accessor:")
	default:
		facts["principal"] = "unknown (no entity, no accessor)"
	}
	return entityID
}

// windowFinding is the finding of a reported window.
func windowFinding(r windowRule, w store.WindowCount, trigger string, now time.Time, modes Modes, scope Scope) schemas.Finding {
	start := r.windowStart(w.End)
	facts := map[string]any{
		"count":          w.Count,
		"window_start":   rfc(start),
		"window_end":     rfc(w.End.Add(store.BucketWidth)),
		"window_seconds": r.window.Seconds(),
		"threshold":      r.threshold,
		"trigger":        trigger,
		"first_at":       rfc(w.FirstAt),
		"last_at":        rfc(w.LastAt),
	}
	entity := principalFacts(w.Principal, facts)
	for k, v := range map[string]string{"namespace": w.Namespace, "mount": w.Mount, "role": w.Role,
		"remote_address": w.RemoteAddress, "sample_vault_request_id": w.SampleRequestID, "display_name": w.DisplayName} {
		if v != "" {
			facts[k] = v
		}
	}
	if r.baseline() {
		facts["baseline_factor"] = r.factor
		facts["baseline_period_seconds"] = r.period.Seconds()
		facts["baseline_min"] = r.baselineMin
		if avg, ok := r.baselineAverage(w); ok {
			facts["baseline_average"] = avg
		} else {
			facts["baseline_average"] = "no history"
		}
	}
	who := w.Principal
	if who == "" {
		who = "an unknown principal"
	}
	from := w.RemoteAddress
	if from == "" {
		from = "an unknown address"
	}
	var summary string
	switch r.rule {
	case RuleIssuanceBurst:
		summary = fmt.Sprintf("%d credentials of %s/%s issued to %s within %s from %s (%s)",
			w.Count, w.Mount, w.Role, who, r.window, rfc(start), triggerText(r, trigger, w))
	case RuleDeniedBurst:
		summary = fmt.Sprintf("%d permission-denied errors on %s/creds/ from %s at %s within %s from %s (threshold %d)",
			w.Count, w.Mount, who, from, r.window, rfc(start), r.threshold)
	default:
		summary = fmt.Sprintf("%d request(s) on database mount %s made with a root token by %s from %s, first at %s",
			w.Count, w.Mount, who, from, rfc(w.FirstAt))
	}
	return schemas.Finding{
		Type: schemas.FindingType, ID: id(r.rule, w.Key(), strconv.FormatInt(w.End.UnixMicro(), 10)),
		Rule: r.rule, Severity: r.severity, Mode: modes.Mode(r.rule), InScope: scope.Contains("", w.Mount, w.Role),
		DetectedAt: now.UTC(), Mount: w.Mount, Role: w.Role, EntityID: entity, Summary: summary, Facts: facts,
		Action: schemas.ActionNone,
	}
}

func triggerText(r windowRule, trigger string, w store.WindowCount) string {
	if trigger == "baseline" {
		avg, _ := r.baselineAverage(w)
		return fmt.Sprintf("more than %gx its average of %.1f per window", r.factor, avg)
	}
	return fmt.Sprintf("threshold %d", r.threshold)
}

// parseHost reads a client address as the observer or Vault logged it,
// IPv4-mapped IPv6 as IPv4.
func parseHost(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// sameHost: equal addresses, or both loopback (a client and Vault on one
// host may reach Vault over 127.0.0.1 and the database over ::1).
func sameHost(a, b netip.Addr) bool {
	return a == b || a.IsLoopback() && b.IsLoopback()
}

// judgeForeignAddress: a session of a role that a lease names exactly, from
// an address none of its leases' Vault requests came from and no allowed
// CIDR of their Vault role contains. Sessions without a client address
// (local sockets) and leases with nothing to compare with are not judged.
func judgeForeignAddress(s observed.OpenSession, leases []store.Lease, addrs map[string][]string, cfg SignalRulesConfig) *verdict {
	v, _ := judgeForeign(s, leases, addrs, cfg)
	return v
}

// judgeForeign is judgeForeignAddress that also says which allowed CIDR
// spared a session its lease's addresses do not explain (an exception hit,
// for the pilot report).
func judgeForeign(s observed.OpenSession, leases []store.Lease, addrs map[string][]string, cfg SignalRulesConfig) (*verdict, *netip.Prefix) {
	client, ok := parseHost(s.ClientAddr)
	if !ok || len(leases) == 0 {
		return nil, nil
	}
	var known []string
	var allowed []netip.Prefix
	seen := map[string]bool{}
	for _, l := range leases {
		for _, a := range addrs[l.LeaseID] {
			if !seen[a] {
				seen[a] = true
				known = append(known, a)
			}
		}
		allowed = append(allowed, cfg.Allowed(l.Mount, l.Role)...)
	}
	if len(known) == 0 && len(allowed) == 0 {
		return nil, nil
	}
	for _, a := range known {
		if h, ok := parseHost(a); ok && sameHost(h, client) {
			return nil, nil
		}
	}
	for _, p := range allowed {
		if p.Contains(client) {
			return nil, &p
		}
	}
	sort.Strings(known)
	l := leases[0]
	cidrs := make([]string, len(allowed))
	for i, p := range allowed {
		cidrs[i] = p.String()
	}
	facts := map[string]any{
		"client_addr":          client.String(),
		"lease_addresses":      known,
		"allowed_cidrs":        cidrs,
		"sessions":             sessionFacts([]observed.Session{{DBSession: s.DBSession, FirstSeenAt: s.FirstSeenAt}}, nil, 0),
		"session_first_seen":   rfc(s.FirstSeenAt),
		"grace_seconds":        cfg.ForeignGrace.Seconds(),
		"leases_naming_user":   len(leases),
		"lease_state":          string(l.State),
		"lease_remote_address": l.RemoteAddress,
	}
	return &verdict{
		rule: RuleForeignAddress, severity: schemas.SeverityMedium, dbUser: s.UserName, oid: s.UserOID,
		id: id(RuleForeignAddress, s.Database, strconv.Itoa(int(s.PID)), strconv.FormatInt(s.BackendStart.UnixMicro(), 10)),
		summary: fmt.Sprintf("user %s has a session (pid %d) from %s, an address none of its lease's Vault requests came from (%s) and outside the allowed CIDRs of %s/%s",
			s.UserName, s.PID, client, strings.Join(known, ", "), l.Mount, l.Role),
		facts: facts, lease: &l, mayEnforce: true,
	}, nil
}

// judgeRenewalPastMaxTTL: a renewed lease whose expiry is past its issue
// time plus its role's max TTL, beyond a tolerance: for an expiry read from
// rolvaliduntil, the plugin's 5 s and the clock skew between Vault (issue
// time) and the database; for an expiry from an event, a second.
func judgeRenewalPastMaxTTL(l store.Lease, cfg SignalRulesConfig) *verdict {
	if l.IssuedAt == nil || l.ExpireAt == nil || l.RenewedAt == nil {
		return nil
	}
	maxTTL := cfg.MaxTTL(l.Mount, l.Role)
	tol := eventExpiryMargin
	if l.ExpireSource == schemas.ExpireFromValidUntil {
		tol = validUntilMargin + cfg.ClockSkew
	}
	limit := l.IssuedAt.Add(maxTTL)
	excess := l.ExpireAt.Sub(limit)
	if excess <= tol {
		return nil
	}
	facts := map[string]any{
		"issued_at":          rfc(*l.IssuedAt),
		"renewed_at":         rfc(*l.RenewedAt),
		"expire_at":          rfc(*l.ExpireAt),
		"expire_source":      string(l.ExpireSource),
		"max_ttl_seconds":    maxTTL.Seconds(),
		"max_expire_at":      rfc(limit),
		"excess_seconds":     excess.Seconds(),
		"tolerance_seconds":  tol.Seconds(),
		"clock_skew_seconds": cfg.ClockSkew.Seconds(),
	}
	v := &verdict{
		rule: RuleRenewalPastMaxTTL, severity: schemas.SeverityHigh, dbUser: l.DBUser,
		id: id(RuleRenewalPastMaxTTL, l.LeaseID, strconv.FormatInt(l.ExpireAt.UnixMicro(), 10)),
		summary: fmt.Sprintf("lease %s, issued %s and renewed %s, now expires %s: %s past its max TTL of %s",
			l.LeaseID, rfc(*l.IssuedAt), rfc(*l.RenewedAt), rfc(*l.ExpireAt), excess.Round(time.Second), maxTTL),
		facts: facts, lease: &l, mayEnforce: true,
	}
	switch {
	case l.DBUserHMAC || l.DBUser == "":
		v.dbUser = ""
		v.mayEnforce, v.whyNot = false, "the lease's database user is known only by its HMAC"
	case l.Database == "":
		v.mayEnforce, v.whyNot = false, "the lease is routed to no target database"
	}
	return v
}

// judgeAuditSilence: no audit entry committed for longer than the window
// while managed roles have live sessions. The silence is measured on the
// state store's clock (when entries were committed), never on Vault's (the
// entries' times), so clock skew between the two cannot make one; without
// any entry yet, it is measured from the coverage watermark.
func judgeAuditSilence(l store.AuditLiveness, sessions map[string]int, now time.Time, window time.Duration) *verdict {
	last, since := l.ReceivedAt, "last_entry"
	if last.IsZero() {
		last, since = l.Coverage, "coverage"
	}
	if last.IsZero() || now.Sub(last) <= window {
		return nil
	}
	total := 0
	dbs := make([]string, 0, len(sessions))
	for db, n := range sessions {
		total += n
		dbs = append(dbs, db)
	}
	if total == 0 {
		return nil
	}
	sort.Strings(dbs)
	facts := map[string]any{
		"silent_since":     rfc(last),
		"silent_since_is":  since,
		"silent_seconds":   now.Sub(last).Seconds(),
		"window_seconds":   window.Seconds(),
		"active_sessions":  sessions,
		"active_databases": dbs,
	}
	if !l.LastEntryAt.IsZero() {
		facts["last_entry_at"] = rfc(l.LastEntryAt)
	}
	return &verdict{
		rule: RuleAuditSilence, severity: schemas.SeverityHigh,
		id: id(RuleAuditSilence, strconv.FormatInt(last.UnixMicro(), 10)),
		summary: fmt.Sprintf("no audit entry received since %s (%s) while %d session(s) of managed roles are live in %s",
			rfc(last), now.Sub(last).Round(time.Second), total, strings.Join(dbs, ", ")),
		facts: facts,
	}
}

// deviceFinding is the finding of an audit-device change entry, or nil for
// one that needs none (a request answered by its response entry, a refused
// enable).
func deviceFinding(d store.DeviceChange, now time.Time, modes Modes, scope Scope) *schemas.Finding {
	if !d.Response && d.Answered {
		return nil
	}
	facts := map[string]any{
		"device_path":      d.DevicePath,
		"operation":        d.Operation,
		"vault_request_id": d.RequestID,
		"at":               rfc(d.Time),
		"entry":            map[bool]string{true: "response", false: "request"}[d.Response],
		"error":            d.Error,
	}
	for k, v := range map[string]string{"namespace": d.Namespace, "entity_id": d.EntityID, "token_accessor": d.TokenAccessor,
		"display_name": d.DisplayName, "remote_address": d.RemoteAddress} {
		if v != "" {
			facts[k] = v
		}
	}
	who := d.DisplayName
	if who == "" {
		who = "an unknown token"
	}
	var sev schemas.Severity
	var summary string
	switch {
	case d.Error && d.Operation == store.AuditDeviceEnable:
		return nil
	case d.Error:
		sev = schemas.SeverityMedium
		summary = fmt.Sprintf("refused attempt by %s from %s to disable audit device %s at %s", who, d.RemoteAddress, d.DevicePath, rfc(d.Time))
	case d.Operation == store.AuditDeviceEnable:
		sev = schemas.SeverityLow
		summary = fmt.Sprintf("audit device %s enabled by %s at %s", d.DevicePath, who, rfc(d.Time))
	case d.Response:
		sev = schemas.SeverityCritical
		summary = fmt.Sprintf("audit device %s disabled by %s from %s at %s", d.DevicePath, who, d.RemoteAddress, rfc(d.Time))
	default:
		sev = schemas.SeverityCritical
		facts["response_seen"] = false
		summary = fmt.Sprintf("audit device %s: disable requested by %s from %s at %s; no response entry in this stream (Vault writes it to the remaining devices only, so this one was likely disabled)",
			d.DevicePath, who, d.RemoteAddress, rfc(d.Time))
	}
	return &schemas.Finding{
		Type: schemas.FindingType, ID: id(RuleAuditDeviceDisabled, d.RequestID), Rule: RuleAuditDeviceDisabled,
		Severity: sev, Mode: modes.Mode(RuleAuditDeviceDisabled),
		InScope:    scope.All,
		DetectedAt: now.UTC(), EntityID: d.EntityID, Summary: summary, Facts: facts, Action: schemas.ActionNone,
	}
}
