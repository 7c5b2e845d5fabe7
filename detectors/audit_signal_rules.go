package detectors

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// signalFinding is a finding of the audit-signal rules with what recording
// it needs.
type signalFinding struct {
	f  schemas.Finding
	lc *evidence.LeaseContext
	// mark: the rule mark to set once the finding is recorded.
	markKey   string
	markUntil time.Time
	cmd       *schemas.RevocationCommand
}

// auditDevices reports audit-device changes, each entry once (claimed FOR
// UPDATE SKIP LOCKED, marked in the same transaction).
func (a *AuditRules) auditDevices(ctx context.Context, tx pgx.Tx, pol Policy, now time.Time) (int, []schemas.Finding, error) {
	ds, err := store.ClaimAuditDeviceChanges(ctx, tx, now.Add(-a.cfg.UnauditedWindow), a.cfg.Batch)
	if err != nil || len(ds) == 0 {
		return 0, nil, err
	}
	if err := store.MarkAuditDeviceChangesReported(ctx, tx, ds, now); err != nil {
		return 0, nil, err
	}
	var fs []signalFinding
	for _, d := range ds {
		if f := deviceFinding(d, now, pol.Modes, pol.Scope); f != nil {
			fs = append(fs, signalFinding{f: *f, lc: &evidence.LeaseContext{VaultRequestID: d.RequestID,
				EntityID: d.EntityID, RemoteAddress: d.RemoteAddress}})
		}
	}
	fresh, err := a.recordSignals(ctx, tx, fs)
	return len(ds), fresh, err
}

// signalScan runs the scanning audit-signal rules (windows, silence, foreign
// addresses, renewals) under a lock only one process holds at a time, and
// prunes what they no longer need. It returns how many findings it made.
func (a *AuditRules) signalScan(ctx context.Context, tx pgx.Tx, pol Policy, now time.Time) (int, []schemas.Finding, error) {
	ok, err := store.TryAuditSignalRules(ctx, tx)
	if err != nil || !ok {
		return 0, nil, err
	}
	sc := a.cfg.Signals
	var fs []signalFinding

	for _, r := range sc.windowRules() {
		ws, err := store.WindowCandidates(ctx, tx, r.query(now.Add(-sc.Lookback).Truncate(store.BucketWidth), DefaultSignalWindowsLimit))
		if err != nil {
			return 0, nil, err
		}
		for _, w := range ws {
			trigger, hit := judgeWindow(r, w)
			if !hit {
				continue
			}
			f := windowFinding(r, w, trigger, now, pol.Modes, pol.Scope)
			fs = append(fs, signalFinding{f: f, markKey: w.Key(), markUntil: w.End.Add(r.window - store.BucketWidth),
				lc: &evidence.LeaseContext{VaultRequestID: w.SampleRequestID, EntityID: f.EntityID,
					RemoteAddress: w.RemoteAddress, Mount: w.Mount, Role: w.Role}})
		}
	}

	live, err := store.ReadAuditLiveness(ctx, tx)
	if err != nil {
		return 0, nil, err
	}
	if !live.ReceivedAt.IsZero() || !live.Coverage.IsZero() {
		sessions, err := observed.ActiveSessions(ctx, tx, now.Add(-sc.SilenceWindow))
		if err != nil {
			return 0, nil, err
		}
		if v := judgeAuditSilence(live, sessions, now, sc.SilenceWindow); v != nil {
			f, _, err := a.signalVerdict(ctx, pol, v, "", now)
			if err != nil {
				return 0, nil, err
			}
			fs = append(fs, signalFinding{f: f})
		}
	}

	vs, hits, err := a.foreignAddresses(ctx, tx, now)
	if err != nil {
		return 0, nil, err
	}
	if err := RecordExceptionHits(ctx, tx, hits); err != nil {
		return 0, nil, err
	}
	for _, v := range vs {
		f, cmd, err := a.signalVerdict(ctx, pol, v.v, v.db, now)
		if err != nil {
			return 0, nil, err
		}
		fs = append(fs, signalFinding{f: f, cmd: cmd, lc: leaseContext(v.v.lease)})
	}

	minMax := sc.DefaultMaxTTL
	for _, d := range sc.MaxTTLs {
		minMax = min(minMax, d)
	}
	ls, err := store.RenewedLeasesPast(ctx, tx, RuleRenewalPastMaxTTL, minMax, a.cfg.Batch)
	if err != nil {
		return 0, nil, err
	}
	for _, l := range ls {
		v := judgeRenewalPastMaxTTL(l, sc)
		if v == nil {
			continue
		}
		f, cmd, err := a.signalVerdict(ctx, pol, v, l.Database, now)
		if err != nil {
			return 0, nil, err
		}
		fs = append(fs, signalFinding{f: f, cmd: cmd, lc: leaseContext(v.lease), markKey: l.LeaseID, markUntil: *l.ExpireAt})
	}

	if now.Sub(a.pruned) >= store.BucketWidth || now.Before(a.pruned) {
		keep := max(sc.Lookback+max(sc.IssuanceWindow+sc.IssuanceBaseline, sc.DeniedWindow, sc.RootTokenWindow), 2*sc.SilenceWindow)
		if err := store.PruneAuditSignals(ctx, tx, now.Add(-keep).Truncate(store.BucketWidth)); err != nil {
			return 0, nil, err
		}
		if err := PruneExceptionHits(ctx, tx, now.Add(-exceptionHitsKept)); err != nil {
			return 0, nil, err
		}
		// Set before the commit: a failed pass prunes again a minute later.
		a.pruned = now
	}
	fresh, err := a.recordSignals(ctx, tx, fs)
	if err != nil {
		return 0, nil, err
	}
	return len(fresh), fresh, nil
}

type dbVerdict struct {
	db string
	v  *verdict
}

// exceptionHitsKept is how long the pilot report can look back at the
// exceptions hit.
const exceptionHitsKept = 90 * 24 * time.Hour

// foreignAddresses judges the open sessions the observer first saw more
// than ForeignGrace ago; it also returns the sessions an allowed CIDR
// spared (exception hits).
func (a *AuditRules) foreignAddresses(ctx context.Context, tx pgx.Tx, now time.Time) ([]dbVerdict, []ExceptionHit, error) {
	sc := a.cfg.Signals
	// Sessions of databases the observer still watches (a pass within the
	// grace, or a minute).
	ss, err := observed.OpenSessionsSeenBefore(ctx, tx, now.Add(-sc.ForeignGrace), now.Add(-max(sc.ForeignGrace, time.Minute)), DefaultSignalSessionsLimit)
	if err != nil || len(ss) == 0 {
		return nil, nil, err
	}
	users := make([]string, 0, len(ss))
	for _, s := range ss {
		users = append(users, s.UserName)
	}
	byUser, err := store.LeasesNamingUsers(ctx, tx, users)
	if err != nil {
		return nil, nil, err
	}
	var ids []string
	for _, ls := range byUser {
		for _, l := range ls {
			ids = append(ids, l.LeaseID)
		}
	}
	addrs, err := store.LeaseAddresses(ctx, tx, ids)
	if err != nil {
		return nil, nil, err
	}
	var out []dbVerdict
	var hits []ExceptionHit
	for _, s := range ss {
		v, spared := judgeForeign(s, byUser[s.UserName], addrs, sc)
		switch {
		case v != nil:
			out = append(out, dbVerdict{db: s.Database, v: v})
		case spared != nil:
			hits = append(hits, allowedCIDRHit(s, byUser[s.UserName][0], *spared, now))
		}
	}
	return out, hits, nil
}

// allowedCIDRHit records that an allowed CIDR spared a session.
func allowedCIDRHit(s observed.OpenSession, l store.Lease, p netip.Prefix, now time.Time) ExceptionHit {
	return ExceptionHit{Rule: RuleForeignAddress, Database: s.Database,
		ObjectKey: strconv.Itoa(int(s.PID)) + "/" + strconv.FormatInt(s.BackendStart.UnixMicro(), 10),
		Exception: ExceptionAllowedCIDR, Value: p.String(), DBUser: s.UserName, Mount: l.Mount, Role: l.Role,
		ClientAddr: s.ClientAddr, SeenAt: now.UTC()}
}

// signalVerdict turns a verdict of an audit-signal rule into a finding
// under its mode and the scope, with a command proposal when it is
// enforced or held for an owner's approval (recordSignals routes it). A
// verdict that would act is corroborated by Vault first (corroborateSignal),
// outside the scope too: there it is a pilot, recorded as would_drop.
func (a *AuditRules) signalVerdict(ctx context.Context, pol Policy, v *verdict, db string, now time.Time) (schemas.Finding, *schemas.RevocationCommand, error) {
	mode := pol.Modes.Mode(v.rule)
	var entity, leaseID string
	if v.lease != nil {
		entity, leaseID = v.lease.EntityID, v.lease.LeaseID
	}
	mount, role := v.leaseRole()
	inScope := pol.Scope.Contains(db, mount, role)
	f := schemas.Finding{
		Type: schemas.FindingType, ID: v.id, Rule: v.rule, Severity: v.severity, Mode: mode, InScope: inScope,
		DetectedAt: now.UTC(), Database: db, DBUser: v.dbUser, LeaseID: leaseID, Mount: mount, Role: role,
		EntityID: entity, Summary: v.summary, Facts: v.facts, Action: schemas.ActionNone,
	}
	if !Acts(mode) {
		return f, nil, nil
	}
	switch {
	case !v.mayEnforce:
		f.Facts["not_enforced"] = v.whyNot
		return f, nil, nil
	case db == "" || v.dbUser == "":
		f.Facts["not_enforced"] = "no database user to revoke"
		return f, nil, nil
	}
	pol.note(f.Facts)
	c := a.corroborateSignal(ctx, v, now)
	f.Facts["corroboration"] = c.facts()
	if !inScope {
		f.ID = pilotID(f.ID)
		pilotFacts(f.Facts, mode)
		if c.corroboration == nil {
			f.ID = id(f.ID, "unconfirmed", c.result)
		} else {
			f.Action = schemas.ActionWouldDrop
		}
		return f, nil, nil
	}
	if c.corroboration == nil {
		f.ID = id(f.ID, "unconfirmed", c.result)
		f.Action = schemas.ActionUnconfirmed
		return f, nil, nil
	}
	cmd := schemas.RevocationCommand{
		ID: id("revoke", db, v.dbUser, leaseID, v.rule, f.ID), Action: schemas.ActionDropRole, Issuer: "detector",
		Rule: v.rule, FindingID: f.ID, Database: db, DBUser: v.dbUser, LeaseID: leaseID, Reason: f.Summary,
		Corroboration: *c.corroboration,
	}
	f.Action, f.CommandID = schemas.ActionRevocationRequested, cmd.ID
	return f, &cmd, nil
}

// corroborateSignal asks Vault about the lease of a foreign-address or
// renewal-past-max-ttl verdict. Both rest on what the audit stream said of
// a lease (its client addresses, its issue time and expiry), which a
// forged entry can shape; Vault's own record of the lease must agree:
//
//   - credential-foreign-address: Vault holds the lease, live, issued when
//     the ledger says (within the clock skew), so the addresses recorded
//     for it are the genuine lease's.
//   - renewal-past-max-ttl: Vault's own issue and expire times are further
//     apart than the role's max TTL.
func (a *AuditRules) corroborateSignal(ctx context.Context, v *verdict, now time.Time) expiryVerdict {
	l := v.lease
	if a.vault == nil || l == nil {
		return unconfirmed(corrNoVault, "no Vault link is configured to confirm what the audit stream says of the lease", now)
	}
	ctx, cancel := context.WithTimeout(ctx, vaultTimeout)
	defer cancel()
	info, found, err := a.vault.LookupLease(ctx, l.LeaseID)
	switch {
	case err != nil:
		return unconfirmed(corrVaultUnreachable, fmt.Sprintf("Vault could not be asked about lease %s (%v)", l.LeaseID, err), now)
	case !found:
		return unconfirmed(corrVaultNeverHeld, fmt.Sprintf("Vault does not hold lease %s", l.LeaseID), now)
	}
	skew := a.cfg.Signals.ClockSkew
	switch v.rule {
	case RuleForeignAddress:
		if !info.Live(now) || l.IssuedAt == nil || info.IssueTime.Sub(*l.IssuedAt).Abs() > skew {
			return unconfirmed("vault_disagrees", fmt.Sprintf("Vault's lease %s (issued %s, live %v) is not the one the ledger describes", l.LeaseID, rfc(info.IssueTime), info.Live(now)), now)
		}
		return confirmed(schemas.CorroboratedByVaultLookup, "vault_lease_live",
			fmt.Sprintf("Vault holds lease %s, live, issued %s as the ledger says", l.LeaseID, rfc(info.IssueTime)), now)
	case RuleRenewalPastMaxTTL:
		maxTTL := a.cfg.Signals.MaxTTL(l.Mount, l.Role)
		if info.ExpireTime == nil || info.ExpireTime.Sub(info.IssueTime) <= maxTTL+eventExpiryMargin {
			return unconfirmed("vault_disagrees", fmt.Sprintf("Vault's lease %s does not outlive its max TTL of %s", l.LeaseID, maxTTL), now)
		}
		return confirmed(schemas.CorroboratedByVaultLookup, "vault_past_max_ttl",
			fmt.Sprintf("Vault's lease %s was issued %s and expires %s, past its max TTL of %s", l.LeaseID,
				rfc(info.IssueTime), rfc(*info.ExpireTime), maxTTL), now)
	}
	return unconfirmed("no_corroboration", "the rule has no corroboration", now)
}

// recordSignals records the findings not recorded yet: their commands are
// queued first (appending evidence holds the chain head until commit), then
// each finding with its evidence, and its rule mark.
func (a *AuditRules) recordSignals(ctx context.Context, tx pgx.Tx, fs []signalFinding) ([]schemas.Finding, error) {
	if len(fs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(fs))
	for i, s := range fs {
		ids[i] = s.f.ID
	}
	recorded, err := existingFindings(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	var todo []signalFinding
	var cmds []schemas.RevocationCommand
	hold := newApprovalHold(a.cfg.ApprovalTTL, a.issuer)
	for _, s := range fs {
		if recorded[s.f.ID] {
			continue
		}
		recorded[s.f.ID] = true
		if cmd := hold.route(&s.f, s.cmd, s.f.DetectedAt); cmd != nil {
			cmds = append(cmds, *cmd)
		}
		todo = append(todo, s)
	}
	if len(cmds) > 0 {
		if err := a.issuer.Issue(ctx, cmds); err != nil {
			return nil, fmt.Errorf("issue %d revocations: %w", len(cmds), err)
		}
		if err := a.sink.Submit(ctx, cmds); err != nil {
			return nil, fmt.Errorf("queue %d revocations: %w", len(cmds), err)
		}
	}
	if err := hold.save(ctx, tx); err != nil {
		return nil, err
	}
	var fresh []schemas.Finding
	for _, s := range todo {
		isNew, err := a.record(ctx, tx, s.f, s.lc)
		if err != nil {
			return nil, err
		}
		if isNew {
			fresh = append(fresh, s.f)
		}
	}
	for _, s := range fs {
		if s.markKey != "" {
			if err := store.MarkRule(ctx, tx, s.f.Rule, s.markKey, s.markUntil); err != nil {
				return nil, err
			}
		}
	}
	return fresh, nil
}
