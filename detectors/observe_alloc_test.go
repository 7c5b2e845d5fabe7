package detectors

import (
	"fmt"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/store"
)

// TestRoleRulesAllocateNothingWithoutAVerdict: the role rules see every
// managed role of every pass (100,000 on a large target), and almost all
// give no verdict. Such a role must cost them no allocation: each rule
// took the address of its case for a verdict it might make, which moved the
// case to the heap on every call, three copies per role per pass (tens of
// MB a pass at 100,000 roles).
func TestRoleRulesAllocateNothingWithoutAVerdict(t *testing.T) {
	cfg := testCfg()
	cases := map[string]roleCase{
		"lease active, session live": {role: role("v-a", ago(time.Hour), tptr(ago(time.Hour+time.Second))),
			sessions: []observed.Session{live("v-a", ago(time.Minute))}, link: exactLink(active("v-a"))},
		"no lease, there at the first pass": {role: role("v-b", ago(time.Hour), nil), link: leaseLink{kind: linkNone}},
	}
	for name, c := range cases {
		allocs := testing.AllocsPerRun(100, func() {
			if judgeReuseAfterRevoke("main", c, obsNow, cfg) != nil || judgeReuseUnknownLease("main", c, coverage, obsNow, cfg) != nil ||
				judgeOrphanRole("main", c, coverage, obsNow, cfg) != nil {
				t.Fatalf("%s: a verdict", name)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: the role rules allocated %.0f times without a verdict; want none", name, allocs)
		}
	}
}

// TestLinksKeepOnlyLinkedRoles: the links of a pass hold the roles that
// have one; a role with none (the 100,000 roles there before leaseguard
// on a large target) costs no entry, and reads as none.
func TestLinksKeepOnlyLinkedRoles(t *testing.T) {
	var roles []observed.Role
	for i := range 1000 {
		roles = append(roles, role(fmt.Sprintf("v-old-%04d", i), ago(time.Hour), nil))
	}
	linked := role("v-linked", ago(time.Hour), nil)
	roles = append(roles, linked)
	links := linkRoles(roles, map[string][]store.Lease{linked.Name: {active(linked.Name)}}, nil, time.Second)
	if len(links) != 1 || links.of(linked.Name).kind != linkExact || links.of("v-old-0001").kind != linkNone {
		t.Errorf("links of 1,000 roles with none and one with a lease: %d entries, %q, %q; want 1, exact, none",
			len(links), links.of(linked.Name).kind, links.of("v-old-0001").kind)
	}
}
