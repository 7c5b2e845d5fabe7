package revoker

import (
	"context"
	"fmt"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// GuardSiblingLease refuses a detector's drop of a user the ledger holds a
// live lease for under another target: PostgreSQL roles are the cluster's
// (MySQL accounts the server's), so a target that is another database of
// the same server sees, and would drop, a user Vault issued for its
// sibling. The rules judge a role against the leases of every target of
// its server; this is the revoker's own check of the same, from the
// ledger, before it takes a token. An operator's command (which names its
// user deliberately) is not refused by it.
const GuardSiblingLease = "sibling_lease"

// liveLeaseElsewhere returns, for each detector drop among idx, the live
// lease (active, not past its expiry) the ledger holds naming its user
// under a target other than the command's (a lease of no known target is
// not another target's).
func (x *Executor) liveLeaseElsewhere(ctx context.Context, cmds []schemas.RevocationCommand, idx []int) (map[int]store.Lease, error) {
	var users []string
	for _, i := range idx {
		if c := cmds[i]; siblingChecked(c) {
			users = append(users, c.DBUser)
		}
	}
	if len(users) == 0 {
		return nil, nil
	}
	sctx, cancel := x.stateCtx(ctx)
	defer cancel()
	leases, err := store.LeasesNamingUsers(sctx, x.State, users)
	if err != nil {
		return nil, fmt.Errorf("leases of the users to drop: %w", err)
	}
	now := x.Clock()
	out := map[int]store.Lease{}
	for _, i := range idx {
		c := cmds[i]
		if !siblingChecked(c) {
			continue
		}
		for _, l := range leases[c.DBUser] {
			// A lease the ledger could not place under a target (its
			// mount unmapped) names no sibling: only one that names
			// another target is that target's.
			if l.Database != "" && l.Database != c.Database && live(l, now) {
				out[i] = l
				break
			}
		}
	}
	return out, nil
}

// siblingChecked: GuardSiblingLease checks the command, a drop that is not
// an operator's.
func siblingChecked(c schemas.RevocationCommand) bool {
	return c.Issuer != IssuerOperator && c.Action == schemas.ActionDropRole
}

// live: the ledger holds the lease active and not past its expiry.
func live(l store.Lease, now time.Time) bool {
	return l.State == store.StateActive && (l.ExpireAt == nil || l.ExpireAt.After(now))
}

// siblingRefusal is the result of a drop refused by GuardSiblingLease.
func siblingRefusal(cmd schemas.RevocationCommand, l store.Lease, now time.Time) schemas.RevocationResult {
	r := refuse(GuardSiblingLease, "the ledger holds live lease %s naming user %q under target %q: a role is the server's, and this target must not drop a user issued for another",
		l.LeaseID, cmd.DBUser, l.Database)
	return schemas.RevocationResult{CommandID: cmd.ID, Database: cmd.Database, DBUser: cmd.DBUser,
		Outcome: schemas.OutcomeRefused, Guard: r.Guard, Reason: r.Reason, StartedAt: now, FinishedAt: now}
}
