package detectors

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// VaultLeases is what verify-before-destroy asks of Vault
// (vaultlink.Client).
type VaultLeases interface {
	// LookupLiveLease looks a lease up (sys/leases/lookup): found when Vault
	// holds it, live when it has not expired at the lookup, issued its
	// issue time.
	LookupLiveLease(ctx context.Context, leaseID string) (found, live bool, issued time.Time, err error)
	// ListLeases lists the lease ids Vault holds under a prefix (LIST
	// sys/leases/lookup/<prefix>).
	ListLeases(ctx context.Context, prefix string) ([]string, error)
}

// VaultVerify turns on verify-before-destroy: before a rule that relies on
// missing data (orphan-role, credential-reuse-unknown-lease) drops a user,
// Vault is asked whether a live lease exists for it.
//
//   - A lease the ledger links (exact or hmac): sys/leases/lookup. Vault
//     holds it and it has not expired: a live lease exists.
//   - No lease linked: LIST sys/leases/lookup/<mount>/creds/<role>/ for
//     every mount and role the ledger has seen route to the database (narrowed
//     by the role part of Vault's default username template). A live lease
//     there that the ledger cannot attribute to another user (its plain
//     user, the HMAC of this user's name, or an issue time outside this
//     user's creation window) may be this user's.
//
// Either way the finding is downgraded (one severity lower), says why, and
// nothing is dropped. Vault unreachable, refusing, or nothing to ask
// (no mount known): nothing is dropped either, and the finding says so. A
// finding that was not enforced for these reasons has its own id, so once
// Vault answers that no live lease exists (asked again at most every
// Recheck), the rule enforces.
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
	facts  map[string]any
	at     time.Time
}

// verifyBeforeDestroy asks Vault about each verdict that relies on missing
// data and would otherwise be acted upon (mode not observe, in scope, facts
// firm enough), unless its finding is already recorded. A verdict Vault does
// not clear is downgraded and not enforced.
func (r *DBRules) verifyBeforeDestroy(ctx context.Context, tx pgx.Tx, db string, now time.Time, vs []*verdict) error {
	vv := r.Vault
	if vv == nil || vv.Leases == nil {
		return nil
	}
	var todo []*verdict
	var ids []string
	for _, v := range vs {
		if !v.verify || !v.mayEnforce || v.role == nil || !Acts(r.cfg.Modes.Mode(v.rule)) {
			continue
		}
		var mount, role string
		if v.lease != nil {
			mount, role = v.lease.Mount, v.lease.Role
		}
		if !r.cfg.Scope.Contains(db, mount, role) {
			continue
		}
		todo, ids = append(todo, v), append(ids, v.id)
	}
	if len(todo) == 0 {
		return nil
	}
	recorded, err := existingFindings(ctx, tx, ids)
	if err != nil {
		return err
	}
	recheck := vv.Recheck
	if recheck <= 0 {
		recheck = time.Minute
	}
	r.mu.Lock()
	for k, c := range r.vaultChecks {
		if now.Sub(c.at) > 2*recheck || now.Before(c.at.Add(-recheck)) {
			delete(r.vaultChecks, k)
		}
	}
	r.mu.Unlock()
	for _, v := range todo {
		if recorded[v.id] {
			continue
		}
		// One question per lease, or per role with none, whatever the
		// number of rules judging it.
		key := "role\x00" + db + "\x00" + v.role.role.Name + "\x00" + oidString(v.role.role.OID)
		if v.lease != nil {
			key = "lease\x00" + v.lease.LeaseID
		}
		r.mu.Lock()
		c, ok := r.vaultChecks[key]
		r.mu.Unlock()
		if !ok || now.Sub(c.at) >= recheck || now.Before(c.at) || (c.result == vaultClear && !c.at.Equal(now)) {
			c = r.checkVault(ctx, tx, db, v)
			c.at = now
			r.mu.Lock()
			if r.vaultChecks == nil {
				r.vaultChecks = map[string]vaultCheck{}
			}
			r.vaultChecks[key] = c
			r.mu.Unlock()
		}
		applyVaultCheck(v, c)
	}
	return nil
}

// applyVaultCheck records the check in the verdict; one that is not clear
// downgrades a live-lease verdict, and stops enforcement under its own id.
func applyVaultCheck(v *verdict, c vaultCheck) {
	check := map[string]any{"result": c.result, "checked_at": rfc(c.at)}
	for k, x := range c.facts {
		check[k] = x
	}
	v.facts["vault_check"] = check
	if c.result == vaultClear {
		return
	}
	if c.result == vaultLive || c.result == vaultMayBeLive {
		if lower := lowerSeverity(v.severity); lower != v.severity {
			v.facts["downgraded_from"] = string(v.severity)
			v.severity = lower
		}
	}
	v.mayEnforce, v.whyNot = false, "verify-before-destroy: "+c.why
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

func (r *DBRules) checkVault(ctx context.Context, q store.Querier, db string, v *verdict) vaultCheck {
	if v.lease != nil {
		return r.checkLinkedLease(ctx, v.lease.LeaseID)
	}
	return r.checkUnlinked(ctx, q, db, v.role)
}

func unreachable(err error) vaultCheck {
	return vaultCheck{result: vaultUnreachable, why: "Vault could not be asked whether a live lease exists (" + err.Error() + "): nothing is dropped",
		facts: map[string]any{"error": err.Error()}}
}

func (r *DBRules) checkLinkedLease(ctx context.Context, leaseID string) vaultCheck {
	found, live, _, err := r.Vault.Leases.LookupLiveLease(ctx, leaseID)
	facts := map[string]any{"lease_id": leaseID, "vault_holds_lease": found}
	switch {
	case err != nil:
		return unreachable(err)
	case found && live:
		return vaultCheck{result: vaultLive, why: fmt.Sprintf("Vault still holds lease %s and it has not expired", leaseID), facts: facts}
	}
	facts["lease_live"] = live
	return vaultCheck{result: vaultClear, facts: facts}
}

// checkUnlinked lists the leases Vault holds under the creds paths that may
// have issued the role, and looks for one the ledger cannot attribute to
// another user.
func (r *DBRules) checkUnlinked(ctx context.Context, q store.Querier, db string, c *roleCase) vaultCheck {
	name := c.role.Name
	paths, err := store.CredsPathsOf(ctx, q, db)
	if err != nil {
		return vaultCheck{result: vaultCannotVerify, why: "the ledger could not be read: " + err.Error(), facts: map[string]any{}}
	}
	var prefixes []string
	for _, p := range paths {
		if strings.HasPrefix(name, "v-") && !strings.Contains(name, "-"+cutBytes(p.Role, 8)+"-") {
			continue // Vault's default template names the role
		}
		prefixes = append(prefixes, strings.TrimSuffix(p.Mount, "/")+"/creds/"+p.Role+"/")
	}
	if len(prefixes) == 0 {
		return vaultCheck{result: vaultCannotVerify, why: "no Vault mount and role the ledger knows for this database could have issued the user, so Vault cannot be asked: nothing is dropped",
			facts: map[string]any{"creds_paths_known": len(paths)}}
	}
	var listed []string
	for _, p := range prefixes {
		ids, err := r.Vault.Leases.ListLeases(ctx, p)
		if err != nil {
			return unreachable(err)
		}
		listed = append(listed, ids...)
	}
	facts := map[string]any{"prefixes": prefixes, "leases_listed": len(listed)}
	if len(listed) == 0 {
		return vaultCheck{result: vaultClear, facts: facts}
	}
	known, err := store.LeasesByID(ctx, q, listed)
	if err != nil {
		return vaultCheck{result: vaultCannotVerify, why: "the ledger could not be read: " + err.Error(), facts: facts}
	}
	// mine: this user's HMAC through every device, or nil when one is not
	// known (an HMAC'd lease then cannot be attributed by it).
	var mine map[string]bool
	for _, dev := range r.Vault.AuditDevices {
		hs, err := store.UserHMACs(ctx, q, dev, []string{name})
		if err != nil || hs[name] == "" {
			mine = nil
			break
		}
		if mine == nil {
			mine = map[string]bool{}
		}
		mine[hs[name]] = true
	}
	from, to, windowKnown := creationWindow(c.role, r.cfg.ClockSkew)
	maxLookups := r.Vault.MaxLookups
	if maxLookups <= 0 {
		maxLookups = 20
	}
	lookups, others := 0, 0
	var unattributed []string
	for _, id := range listed {
		l, ok := known[id]
		switch {
		case ok && l.DBUser != "" && !l.DBUserHMAC:
			if l.DBUser != name {
				others++
				continue
			}
		case ok && l.DBUserHMAC && mine != nil:
			if !mine[l.DBUser] {
				others++
				continue
			}
		case ok && windowKnown && l.IssuedAt != nil && (l.IssuedAt.Before(from) || l.IssuedAt.After(to)):
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
		found, live, issued, err := r.Vault.Leases.LookupLiveLease(ctx, id)
		if err != nil {
			return unreachable(err)
		}
		if !found || !live {
			continue
		}
		if windowKnown && !issued.IsZero() && (issued.Before(from) || issued.After(to)) {
			others++
			continue
		}
		unattributed = append(unattributed, id)
	}
	facts["attributed_to_others"] = others
	if len(unattributed) == 0 {
		return vaultCheck{result: vaultClear, facts: facts}
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
