package detectors

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/vaultlink"
)

// How a database role is tied to the ledger.
const (
	// linkExact: a lease names the role by its plain name.
	linkExact = "exact"
	// linkHMAC: the audit log showed the lease's user only as an HMAC, and
	// Vault's sys/audit-hash of the role's name is that HMAC (see
	// vaultlink.HMACResolver): as firm as exact.
	linkHMAC = "hmac"
	// linkProbable: no lease names it, but a lease whose user the audit log
	// showed only as an HMAC fits it by Vault's default username template
	// (display name, role name, creation time). Never enough to enforce.
	linkProbable = "probable"
	// linkAmbiguous: no lease fits, but HMAC'd leases were issued while
	// the role was created: one of them may be it (a custom username
	// template). The role is not judged "unknown".
	linkAmbiguous = "ambiguous"
	// linkNone: nothing in the ledger can account for the role.
	linkNone = "none"
)

// leaseLink is what the ledger says about one role.
type leaseLink struct {
	kind string
	// leases: for exact, every lease naming the role, newest first; for
	// probable, the one that fits best.
	leases []store.Lease
	// candidates counts, for an ambiguous link, the HMAC'd leases issued
	// in the role's creation window that no other role fits.
	candidates int
	// revocation is "hmac" when the revocation of the newest exact lease
	// reached the ledger through an HMAC of its lease id (a revoke through
	// the API body, linked by vaultlink.RevocationLinker).
	revocation string
}

// creationWindow is when a role may have been created, widened by skew for
// the clocks of Vault and the database: after the pass that did not see it,
// up to the pass that first did. ok is false for a role there at the
// observer's first pass.
func creationWindow(r observed.Role, skew time.Duration) (from, to time.Time, ok bool) {
	if r.CreatedAfter == nil {
		return time.Time{}, time.Time{}, false
	}
	return r.CreatedAfter.Add(-skew), r.FirstSeenAt.Add(skew), true
}

// roleLinks are the links of a pass's roles by name; a role with none
// (most, on a target whose roles were there before leaseguard) has no
// entry, which spares a map of every role on every pass.
type roleLinks map[string]leaseLink

// of is the link of the named role.
func (l roleLinks) of(name string) leaseLink {
	if k, ok := l[name]; ok {
		return k
	}
	return leaseLink{kind: linkNone}
}

// linkRoles ties each role to the ledger: by exact leases first; else by
// an HMAC'd lease issued in its creation window that fits its name by
// Vault's template (probable); else, if HMAC'd leases issued in that window
// are left that no other role fits, the role may be one of theirs
// (ambiguous).
func linkRoles(roles []observed.Role, exact map[string][]store.Lease, hmac []store.Lease, skew time.Duration) roleLinks {
	return linkRolesVia(roles, exact, nil, hmac, skew)
}

// linkRolesVia is linkRoles where methods says which leases were linked to
// their plain user by leaseguard ("hmac"): a role whose newest lease was
// linked so has an hmac link.
func linkRolesVia(roles []observed.Role, exact map[string][]store.Lease, methods map[string]string, hmac []store.Lease, skew time.Duration) roleLinks {
	out := roleLinks{}
	claimed := map[string]bool{}
	var rest []observed.Role
	for _, r := range roles {
		if ls := exact[r.Name]; len(ls) > 0 {
			kind := linkExact
			if methods[ls[0].LeaseID] == linkHMAC {
				kind = linkHMAC
			}
			out[r.Name] = leaseLink{kind: kind, leases: ls}
			continue
		}
		from, to, ok := creationWindow(r, skew)
		if !ok {
			continue // none
		}
		var best *store.Lease
		var bestGap time.Duration
		for i := range hmac {
			l := &hmac[i]
			if !issuedWithin(l, from, to) {
				continue
			}
			if gap, fits := fitsVaultTemplate(r.Name, l.DisplayName, l.Role, *l.IssuedAt, skew); fits && (best == nil || gap < bestGap) {
				best, bestGap = l, gap
			}
		}
		if best != nil {
			claimed[best.LeaseID] = true
			out[r.Name] = leaseLink{kind: linkProbable, leases: []store.Lease{*best}}
			continue
		}
		rest = append(rest, r)
	}
	for _, r := range rest {
		from, to, _ := creationWindow(r, skew)
		link := leaseLink{kind: linkNone}
		for i := range hmac {
			if !claimed[hmac[i].LeaseID] && issuedWithin(&hmac[i], from, to) {
				link.candidates++
			}
		}
		if link.candidates > 0 {
			link.kind = linkAmbiguous
			out[r.Name] = link
		}
	}
	return out
}

func issuedWithin(l *store.Lease, from, to time.Time) bool {
	return l.IssuedAt != nil && !l.IssuedAt.Before(from) && !l.IssuedAt.After(to)
}

// fitsVaultTemplate reports whether name is what Vault's default PostgreSQL
// username template makes for a lease of the given display name and role
// issued at issued (within skew):
//
//	v-<display name, 8 bytes>-<role name, 8 bytes>-<20 random base62>-<unix time>
//
// cut to 63 bytes (plugins/database/postgresql, defaultUserNameTemplate). It
// returns how far the embedded time is from issued.
func fitsVaultTemplate(name, display, role string, issued time.Time, skew time.Duration) (time.Duration, bool) {
	if display == "" || role == "" {
		return 0, false
	}
	prefix := "v-" + cutBytes(display, 8) + "-" + cutBytes(role, 8) + "-"
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	random, unix, ok := strings.Cut(rest, "-")
	if !ok || len(random) != 20 || !isBase62(random) {
		return 0, false
	}
	sec, err := strconv.ParseInt(unix, 10, 64)
	if err != nil || sec <= 0 {
		return 0, false
	}
	// The template keeps whole seconds.
	gap := time.Unix(sec, 0).Sub(issued.Truncate(time.Second))
	if gap < 0 {
		gap = -gap
	}
	return gap, gap <= skew
}

func cutBytes(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func isBase62(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// activeLease returns the first active lease.
func activeLease(ls []store.Lease) *store.Lease {
	for i := range ls {
		if ls[i].State == store.StateActive {
			return &ls[i]
		}
	}
	return nil
}

// leaseEnd is when an ended lease ended: its revocation time, or its expiry,
// falling back to its last event and then to when the ledger learned of it.
// It says which it used.
func leaseEnd(l store.Lease) (time.Time, string) {
	switch {
	case l.State == store.StateRevoked && l.RevokedAt != nil:
		return *l.RevokedAt, "revoked_at"
	case l.State == store.StateExpired && l.ExpireAt != nil:
		return *l.ExpireAt, "expire_at"
	case l.LastEventAt != nil:
		return *l.LastEventAt, "last_event_at"
	}
	return l.UpdatedAt, "ledger_updated_at"
}

// linkPass ties the pass's roles to the ledger (linkRolesVia), with the
// link methods the ledger recorded for their exact leases.
func (r *DBRules) linkPass(ctx context.Context, tx pgx.Tx, p *observed.Pass, exact map[string][]store.Lease, hmac []store.Lease) (roleLinks, error) {
	var ids []string
	for _, ls := range exact {
		if len(ls) > 0 {
			ids = append(ids, ls[0].LeaseID)
		}
	}
	methods, err := vaultlink.LinkMethods(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	revocations, err := vaultlink.RevocationLinkMethods(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	links := linkRolesVia(p.Roles, exact, methods, hmac, r.cfg.ClockSkew)
	for name, l := range links {
		if (l.kind == linkExact || l.kind == linkHMAC) && len(l.leases) > 0 && revocations[l.leases[0].LeaseID] != "" {
			l.revocation = revocations[l.leases[0].LeaseID]
			links[name] = l
		}
	}
	return links, nil
}
