package detectors

import (
	"context"
	"fmt"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target"
)

// Corroboration before destruction: the bus (the audit stream, LeaseEvent
// documents) is evidence, never proof. A rule acts on a user only when the
// target database or Vault agrees, checked in the pass that issues the
// command; the command carries what agreed and when, and the revoker checks
// the database's part again under the role's lock. Without that, the
// finding is recorded with action "unconfirmed" (an alert) and nothing is
// dropped.

// vaultTimeout bounds each Vault call of a pass.
const vaultTimeout = 10 * time.Second

// Results of a corroboration check, recorded in the finding's facts.
const (
	corrValidUntilPassed  = "pg_valid_until_passed"
	corrVaultExpired      = "vault_lease_expired"
	corrVaultGone         = "vault_lease_gone"
	corrNoVault           = "no_vault_link"
	corrVaultUnreachable  = "vault_unreachable"
	corrVaultLive         = "vault_lease_live"
	corrVaultNeverHeld    = "vault_never_confirmed"
	corrVaultLiveNoExpiry = "vault_lease_without_expiry"
)

// expiryVerdict is what the database and Vault said about a lease whose
// user is still there after the lease's end per the ledger.
type expiryVerdict struct {
	// corroboration is set when the end is confirmed; nil: unconfirmed,
	// and why says why.
	corroboration *schemas.Corroboration
	result        string
	why           string
	// extendTo: the lease is still valid until then, per extendSource.
	extendTo     *time.Time
	extendSource schemas.ExpireSource
	// postpone: ask again later (Vault could not be asked).
	postpone bool
	// seen: Vault holds the lease (recorded as vault_seen_at).
	seen bool
	at   time.Time
}

func confirmed(source, result, detail string, at time.Time) expiryVerdict {
	return expiryVerdict{result: result, at: at,
		corroboration: &schemas.Corroboration{Source: source, CheckedAt: at.UTC(), Detail: detail}}
}

func unconfirmed(result, why string, at time.Time) expiryVerdict {
	return expiryVerdict{result: result, why: why, at: at}
}

// facts is the verdict as a finding records it.
func (v expiryVerdict) facts() map[string]any {
	m := map[string]any{"result": v.result, "checked_at": rfc(v.at)}
	if v.corroboration != nil {
		m["source"], m["detail"] = v.corroboration.Source, v.corroboration.Detail
	} else {
		m["source"], m["why"] = "none", v.why
	}
	return m
}

// corroborateEnd asks the database, then Vault, whether a lease whose user
// is still present has ended: rolvaliduntil finite and passed; or, for a
// password that never expires in the database, Vault's answer (vaultEnded).
// A lease the database or Vault shows still valid gets extendTo.
func corroborateEnd(ctx context.Context, vault VaultLeases, leaseID string, seenAt *time.Time, role target.Role, now time.Time) expiryVerdict {
	if role.ValidUntil != nil {
		if role.ValidUntil.After(now) {
			return expiryVerdict{extendTo: role.ValidUntil, extendSource: schemas.ExpireFromValidUntil, at: now}
		}
		return confirmed(schemas.CorroboratedByValidUntil, corrValidUntilPassed,
			fmt.Sprintf("rolvaliduntil %s has passed", rfc(*role.ValidUntil)), now)
	}
	if vault == nil && role.NoExpiry {
		return unconfirmed(corrNoVault, "the database (MySQL or MariaDB) keeps no expiry of an account and no Vault link "+
			"is configured to ask whether the lease ended: the target is observe only", now)
	}
	if vault == nil {
		return unconfirmed(corrNoVault, "the database honours the password without limit (VALID UNTIL is NULL or infinity) and no Vault link is configured to ask whether the lease ended", now)
	}
	v := vaultEnded(ctx, vault, leaseID, seenAt, now)
	if v.result == corrVaultLive {
		v.extendSource = schemas.ExpireFromVault
	}
	return v
}

// vaultEnded asks Vault whether a lease has ended. Vault holding it past its
// expiry (its revocation pending or failing) confirms it; so does Vault no
// longer holding a lease it held before (seenAt). Vault not holding a lease
// it never confirmed does not: the ledger may know it from a forged entry.
// A live lease is result corrVaultLive with extendTo its expiry (nil when
// Vault gives it none).
func vaultEnded(ctx context.Context, vault VaultLeases, leaseID string, seenAt *time.Time, now time.Time) expiryVerdict {
	ctx, cancel := context.WithTimeout(ctx, vaultTimeout)
	defer cancel()
	info, found, err := vault.LookupLease(ctx, leaseID)
	var v expiryVerdict
	switch {
	case err != nil:
		v = unconfirmed(corrVaultUnreachable, fmt.Sprintf("Vault could not be asked whether lease %s ended (%v)", leaseID, err), now)
		v.postpone = true
	case found && info.Live(now) && info.ExpireTime == nil:
		v = unconfirmed(corrVaultLiveNoExpiry, fmt.Sprintf("Vault holds lease %s, with no expiry", leaseID), now)
	case found && info.Live(now):
		v = unconfirmed(corrVaultLive, fmt.Sprintf("Vault holds lease %s, live until %s", leaseID, rfc(*info.ExpireTime)), now)
		v.extendTo = info.ExpireTime
	case found:
		v = confirmed(schemas.CorroboratedByVaultLookup, corrVaultExpired,
			fmt.Sprintf("Vault holds lease %s past its expiry at %s: its revocation is pending or failing", leaseID, rfc(*info.ExpireTime)), now)
	case seenAt != nil:
		return confirmed(schemas.CorroboratedByVaultLookup, corrVaultGone,
			fmt.Sprintf("Vault held lease %s at %s and no longer does", leaseID, rfc(*seenAt)), now)
	default:
		return unconfirmed(corrVaultNeverHeld, fmt.Sprintf("Vault does not hold lease %s and never confirmed holding it: the ledger knows it from the bus alone", leaseID), now)
	}
	v.seen = found
	return v
}
