package detectors

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// VaultLeases is what corroboration and verify-before-destroy ask of
// Vault (vaultlink.Client).
type VaultLeases interface {
	// LookupLease looks a lease up (sys/leases/lookup): found when Vault
	// holds it.
	LookupLease(ctx context.Context, leaseID string) (schemas.VaultLease, bool, error)
	// ListLeases lists the lease ids Vault holds under a prefix (LIST
	// sys/leases/lookup/<prefix>).
	ListLeases(ctx context.Context, prefix string) ([]string, error)
}

// VaultVerify lets the observer's rules ask Vault before they destroy. A
// rule that would act on what the ledger says is corroborated first:
//
//   - An ended lease (credential-reuse-after-revoke, orphan-role with a
//     lease): the database's rolvaliduntil has passed; else Vault holds the
//     lease past its expiry, or no longer holds a lease it held before. A
//     lease Vault never confirmed holding (the ledger may have it from a
//     forged entry) is treated as no lease.
//   - No lease linked (credential-reuse-unknown-lease, orphan-role with no
//     lease): LIST sys/leases/lookup/<mount>/creds/<role>/ for every mount
//     and role the ledger has seen route to the database (narrowed by the
//     role part of Vault's default username template). A live lease there
//     that the ledger cannot attribute to another user (its plain user, the
//     HMAC of this user's name, or an issue time outside this user's
//     creation window) may be this user's.
//
// Vault holding a live lease that may be the user's downgrades the finding
// one severity. Whatever the reason Vault does not confirm (a live lease,
// Vault unreachable, nothing to ask), the finding is recorded unconfirmed
// (an alert), says why, and nothing is dropped; it has its own id, so once
// Vault confirms (asked again at most every Recheck), the rule acts (a new
// finding). Without a Vault link only the database can corroborate.
type VaultVerify struct {
	Leases VaultLeases
	// AuditDevices whose HMACs of user names are recorded
	// (vault_user_hmacs), to attribute HMAC'd leases: a lease is another
	// user's only when this user's name has an HMAC for every device and
	// none is the lease's. Empty: not used.
	AuditDevices []string
	// Recheck: how often Vault is asked again about a finding it did not
	// clear (default 1m).
	Recheck time.Duration
	// MaxLookups per verification of an unlinked role (default 20): listed
	// leases the ledger does not know are looked up for their issue time;
	// past this they count as possibly the user's.
	MaxLookups int
}

// Results of a verification (the finding's vault_check fact).
const (
	vaultClear        = "no_live_lease"
	vaultLive         = "live_lease"
	vaultMayBeLive    = "live_lease_may_exist"
	vaultUnreachable  = "vault_unreachable"
	vaultCannotVerify = "cannot_verify"
)

type vaultCheck struct {
	result string
	why    string
	// detail says, for a clear check, what Vault showed (the corroboration).
	detail string
	facts  map[string]any
	// seen lists the leases Vault was found to hold.
	seen []string
	at   time.Time
}

// corroborate asks the database, then Vault, about each verdict that would
// act (mode not observe, in scope, facts firm enough) and is not
// corroborated yet, unless its finding is already recorded.
func (r *DBRules) corroborate(ctx context.Context, tx pgx.Tx, pol Policy, db string, now time.Time, vs []*verdict) error {
	todo, err := r.toCorroborate(ctx, tx, pol, vs)
	if err != nil || len(todo) == 0 {
		return err
	}
	r.pruneVaultChecks(now)
	var seen []string
	for _, v := range todo {
		if ended := v.lease; v.verify && ended != nil && endedByValidUntil(ended, v.role, now) {
			v.corroboration = &schemas.Corroboration{Source: schemas.CorroboratedByValidUntil, CheckedAt: now.UTC(),
				Detail: fmt.Sprintf("rolvaliduntil %s has passed", rfc(*v.role.role.ValidUntil))}
			continue
		}
		if r.Vault == nil || r.Vault.Leases == nil {
			v.unconfirmed = "no Vault link is configured to ask whether the user's lease ended, and the database does not show it over (rolvaliduntil not passed)"
			v.id = id(v.id, "unconfirmed", corrNoVault)
			continue
		}
		c := r.vaultCheckFor(ctx, tx, db, v, now)
		seen = append(seen, c.seen...)
		applyVaultCheck(v, c)
	}
	return store.MarkVaultSeen(ctx, tx, seen, now)
}

// toCorroborate returns the verdicts that would act and need corroboration,
// leaving out those whose finding is recorded. Verdicts outside the scope
// are corroborated too: a pilot reports what enforcement would have done,
// which only a corroborated verdict does.
func (r *DBRules) toCorroborate(ctx context.Context, tx pgx.Tx, pol Policy, vs []*verdict) ([]*verdict, error) {
	var todo []*verdict
	var ids []string
	for _, v := range vs {
		if !v.verify || v.corroboration != nil || !v.mayEnforce || v.role == nil || !Acts(pol.Modes.Mode(v.rule)) {
			continue
		}
		todo, ids = append(todo, v), append(ids, v.id)
	}
	if len(todo) == 0 {
		return nil, nil
	}
	recorded, err := existingFindings(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	out := todo[:0]
	for _, v := range todo {
		if v.reissue || !recorded[v.id] {
			out = append(out, v)
		}
	}
	return out, nil
}

// endedByValidUntil: the role of an ended lease no longer has a valid
// password in the database (rolvaliduntil finite and passed).
func endedByValidUntil(l *store.Lease, c *roleCase, now time.Time) bool {
	return l.State != store.StateActive && c != nil && c.role.ValidUntil != nil && !c.role.ValidUntil.After(now)
}

func (r *DBRules) recheck() time.Duration {
	if r.Vault.Recheck > 0 {
		return r.Vault.Recheck
	}
	return time.Minute
}

func (r *DBRules) pruneVaultChecks(now time.Time) {
	if r.Vault == nil {
		return
	}
	recheck := r.recheck()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.vaultChecks {
		if now.Sub(c.at) > 2*recheck || now.Before(c.at.Add(-recheck)) {
			delete(r.vaultChecks, k)
		}
	}
}

// vaultCheckFor asks Vault once per lease (or per role with none) and
// Recheck, whatever the number of rules judging it.
func (r *DBRules) vaultCheckFor(ctx context.Context, q store.Querier, db string, v *verdict, now time.Time) vaultCheck {
	key := "role\x00" + v.role.scopeOr(db) + "\x00" + v.role.role.Name + "\x00" + oidString(v.role.role.OID)
	if v.lease != nil {
		key = "lease\x00" + v.lease.LeaseID
	}
	r.mu.Lock()
	c, ok := r.vaultChecks[key]
	r.mu.Unlock()
	if ok && now.Sub(c.at) < r.recheck() && !now.Before(c.at) && (c.result != vaultClear || c.at.Equal(now)) {
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, vaultTimeout)
	defer cancel()
	c = r.checkVault(ctx, q, db, v, now)
	c.at = now
	r.mu.Lock()
	if r.vaultChecks == nil {
		r.vaultChecks = map[string]vaultCheck{}
	}
	r.vaultChecks[key] = c
	r.mu.Unlock()
	return c
}

// applyVaultCheck records the check in the verdict: a clear one
// corroborates it; any other leaves it unconfirmed under its own id (and
// downgrades a verdict Vault contradicts with a live lease).
func applyVaultCheck(v *verdict, c vaultCheck) {
	check := map[string]any{"result": c.result, "checked_at": rfc(c.at)}
	for k, x := range c.facts {
		check[k] = x
	}
	v.facts["vault_check"] = check
	if c.result == vaultClear {
		v.corroboration = &schemas.Corroboration{Source: schemas.CorroboratedByVaultLookup, CheckedAt: c.at.UTC(), Detail: c.detail}
		return
	}
	if c.result == vaultLive || c.result == vaultMayBeLive {
		if lower := lowerSeverity(v.severity); lower != v.severity {
			v.facts["downgraded_from"] = string(v.severity)
			v.severity = lower
		}
	}
	v.unconfirmed = "Vault does not confirm: " + c.why
	v.id = id(v.id, "vault", c.result)
}

func lowerSeverity(s schemas.Severity) schemas.Severity {
	switch s {
	case schemas.SeverityCritical:
		return schemas.SeverityHigh
	case schemas.SeverityHigh:
		return schemas.SeverityMedium
	case schemas.SeverityMedium:
		return schemas.SeverityLow
	case schemas.SeverityLow:
		return schemas.SeverityInfo
	}
	return s
}

func (r *DBRules) checkVault(ctx context.Context, q store.Querier, db string, v *verdict, now time.Time) vaultCheck {
	if v.lease != nil {
		c := r.checkLinkedLease(ctx, v.lease, now)
		if c.result != vaultCannotVerify {
			return c
		}
		// Vault never held the lease the ledger links: ask as if there
		// were none.
		u := r.checkUnlinked(ctx, q, db, v.role, now)
		u.facts["linked_lease_unknown_to_vault"] = v.lease.LeaseID
		return u
	}
	return r.checkUnlinked(ctx, q, db, v.role, now)
}

func unreachable(err error) vaultCheck {
	return vaultCheck{result: vaultUnreachable, why: "Vault could not be asked whether a live lease exists (" + err.Error() + "): nothing is dropped",
		facts: map[string]any{"error": err.Error()}}
}

// checkLinkedLease asks Vault about the lease the ledger links: live (not
// clear), held past its expiry or gone after Vault held it (clear), or
// never held by Vault (cannot verify: the caller asks as if unlinked).
func (r *DBRules) checkLinkedLease(ctx context.Context, l *store.Lease, now time.Time) vaultCheck {
	info, found, err := r.Vault.Leases.LookupLease(ctx, l.LeaseID)
	facts := map[string]any{"lease_id": l.LeaseID, "vault_holds_lease": found}
	c := vaultCheck{facts: facts}
	if found {
		c.seen = []string{l.LeaseID}
	}
	switch {
	case err != nil:
		return unreachable(err)
	case found && info.Live(now):
		c.result, c.why = vaultLive, fmt.Sprintf("Vault still holds lease %s and it has not expired", l.LeaseID)
	case found:
		c.result, c.detail = vaultClear, fmt.Sprintf("Vault holds lease %s past its expiry: its revocation is pending or failing", l.LeaseID)
	case l.VaultSeenAt != nil:
		c.result, c.detail = vaultClear, fmt.Sprintf("Vault held lease %s at %s and no longer does", l.LeaseID, rfc(*l.VaultSeenAt))
	default:
		c.result, c.why = vaultCannotVerify, fmt.Sprintf("Vault does not hold lease %s and never confirmed holding it", l.LeaseID)
	}
	return c
}

// checkUnlinked lists the leases Vault holds under the creds paths that may
// have issued the role, and looks for one the ledger cannot attribute to
// another user.
func (r *DBRules) checkUnlinked(ctx context.Context, q store.Querier, db string, c *roleCase, now time.Time) vaultCheck {
	name := c.role.Name
	prefixes, refused := credsPrefixes(ctx, q, c.leaseTargets(db), name)
	if refused != nil {
		return *refused
	}
	listed, err := r.listLeases(ctx, prefixes)
	if err != nil {
		return unreachable(err)
	}
	facts := map[string]any{"prefixes": prefixes, "leases_listed": len(listed)}
	clear := vaultCheck{result: vaultClear, facts: facts,
		detail: fmt.Sprintf("Vault holds no live lease under %s that may be user %s's", strings.Join(prefixes, ", "), name)}
	if len(listed) == 0 {
		return clear
	}
	known, err := store.LeasesByID(ctx, q, listed)
	if err != nil {
		return vaultCheck{result: vaultCannotVerify, why: "the ledger could not be read: " + err.Error(), facts: facts}
	}
	a := attribution{r: r, name: name, known: known, mine: r.userHMACs(ctx, q, name), now: now}
	a.from, a.to, a.windowKnown = creationWindow(c.role, r.cfg.ClockSkew)
	unattributed, others, err := a.unattributed(ctx, listed)
	if err != nil {
		return unreachable(err)
	}
	facts["attributed_to_others"] = others
	if len(unattributed) == 0 {
		return clear
	}
	if len(unattributed) > 10 {
		facts["unattributed_leases"] = unattributed[:10]
	} else {
		facts["unattributed_leases"] = unattributed
	}
	facts["unattributed_count"] = len(unattributed)
	return vaultCheck{result: vaultMayBeLive, facts: facts,
		why: fmt.Sprintf("Vault holds %d live lease(s) the ledger cannot attribute to another user: one may be this user's", len(unattributed))}
}

// credsPrefixes are the Vault creds paths the ledger knows for dbs (the
// targets on the role's server: a sibling target's Vault role may have
// issued it) that may have issued user name; when there are none, or the
// ledger cannot be read, the check that Vault cannot be asked.
func credsPrefixes(ctx context.Context, q store.Querier, dbs []string, name string) ([]string, *vaultCheck) {
	paths, err := store.CredsPathsOf(ctx, q, dbs)
	if err != nil {
		return nil, &vaultCheck{result: vaultCannotVerify, why: "the ledger could not be read: " + err.Error(), facts: map[string]any{}}
	}
	var prefixes []string
	for _, p := range paths {
		if strings.HasPrefix(name, "v-") && !strings.Contains(name, "-"+cutBytes(p.Role, 8)+"-") {
			continue // Vault's default template names the role
		}
		prefixes = append(prefixes, strings.TrimSuffix(p.Mount, "/")+"/creds/"+p.Role+"/")
	}
	if len(prefixes) == 0 {
		return nil, &vaultCheck{result: vaultCannotVerify, why: "no Vault mount and role the ledger knows for this database could have issued the user, so Vault cannot be asked: nothing is dropped",
			facts: map[string]any{"creds_paths_known": len(paths)}}
	}
	return prefixes, nil
}

// listLeases lists the leases Vault holds under the prefixes.
func (r *DBRules) listLeases(ctx context.Context, prefixes []string) ([]string, error) {
	var listed []string
	for _, p := range prefixes {
		ids, err := r.Vault.Leases.ListLeases(ctx, p)
		if err != nil {
			return nil, err
		}
		listed = append(listed, ids...)
	}
	return listed, nil
}

// userHMACs is user name's HMAC through every audit device, or nil when
// one is not known (an HMAC'd lease then cannot be attributed by it).
func (r *DBRules) userHMACs(ctx context.Context, q store.Querier, name string) map[string]bool {
	var mine map[string]bool
	for _, dev := range r.Vault.AuditDevices {
		hs, err := vaultlink.UserHMACs(ctx, q, dev, []string{name})
		if err != nil || hs[name] == "" {
			return nil
		}
		if mine == nil {
			mine = map[string]bool{}
		}
		mine[hs[name]] = true
	}
	return mine
}

// attribution tells, of the leases Vault lists, which are another user's
// than name: by the ledger (known) where it can, else by asking Vault.
type attribution struct {
	r     *DBRules
	name  string
	known map[string]store.Lease
	mine  map[string]bool
	now   time.Time
	// from and to bound when the role's lease was issued, if windowKnown.
	from, to    time.Time
	windowKnown bool
}

// unattributed returns the live leases of listed not shown to be another
// user's, and how many were; Vault is asked about at most MaxLookups (20
// by default) of them, the rest counting as unattributed.
func (a attribution) unattributed(ctx context.Context, listed []string) (unattributed []string, others int, err error) {
	maxLookups := a.r.Vault.MaxLookups
	if maxLookups <= 0 {
		maxLookups = 20
	}
	lookups := 0
	for _, id := range listed {
		if a.ledgerSaysOther(id) {
			others++
			continue
		}
		// The ledger cannot tell it is another user's: ask Vault whether it
		// is live and when it was issued.
		if lookups >= maxLookups {
			unattributed = append(unattributed, id)
			continue
		}
		lookups++
		info, found, err := a.r.Vault.Leases.LookupLease(ctx, id)
		if err != nil {
			return nil, 0, err
		}
		if !found || !info.Live(a.now) {
			continue
		}
		if !info.IssueTime.IsZero() && a.outsideWindow(info.IssueTime) {
			others++
			continue
		}
		unattributed = append(unattributed, id)
	}
	return unattributed, others, nil
}

// ledgerSaysOther reports whether the ledger shows lease id to be another
// user's: by its plain user name, its user's HMAC, or its issue time.
func (a attribution) ledgerSaysOther(id string) bool {
	l, ok := a.known[id]
	switch {
	case !ok:
		return false
	case l.DBUser != "" && !l.DBUserHMAC:
		return l.DBUser != a.name
	case l.DBUserHMAC && a.mine != nil:
		return !a.mine[l.DBUser]
	case l.IssuedAt != nil:
		return a.outsideWindow(*l.IssuedAt)
	}
	return false
}

// outsideWindow reports whether a lease issued at t cannot be the role's.
func (a attribution) outsideWindow(t time.Time) bool {
	return a.windowKnown && (t.Before(a.from) || t.After(a.to))
}
