package observer

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// leaseFor records in the ledger a lease of user expiring at exp, revoked
// then if that is before the pass judged.
func leaseFor(t *testing.T, s *store.Store, user string, exp time.Time) {
	t.Helper()
	issued := exp.Add(-2 * time.Hour)
	id := "postgres/creds/reporting/" + user
	ev := schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: id, Mount: "postgres", Role: "reporting",
		Database: "main", DBUser: user, IssueTime: &issued, ExpireTime: &exp, ExpireSource: schemas.ExpireFromEvent,
		EventTime: issued, VaultRequestID: "req-" + user, Source: schemas.SourceRef{Transport: "test"}}
	evs := []schemas.LeaseEvent{ev}
	if exp.Before(at(time.Hour)) { // revoked when it expired
		evs = append(evs, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: id,
			RevokeBy: schemas.RevokeByPath, EventTime: exp, VaultRequestID: "req-revoke-" + user, Source: schemas.SourceRef{Transport: "test"}})
	}
	if _, err := s.Apply(context.Background(), store.Batch{Leases: evs}); err != nil {
		t.Fatal(err)
	}
}

// judgedPass is a pass over roles and sessions after a first pass over
// first (committed), judged by the database rules and rolled back: the
// findings, and the longest array the rules sent to the state store.
func judgedPass(t *testing.T, s *store.Store, roles []observed.DBRole, sessions []observed.DBSession, mod func(*observed.Pass)) (string, int) {
	t.Helper()
	ctx := context.Background()
	rules, err := detectors.NewDBRules(detectors.DBRulesConfig{ManagedPattern: regexp.MustCompile(`^v-`)},
		detectors.DBRulesDeps{Issuer: noCommands{t}, Sink: noCommands{t},
			Evidence: evidence.Builder{Source: "urn:leaseguard:test", Clock: func() time.Time { return at(time.Hour) }}})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	p, err := applySnapshot(ctx, tx, Snapshot{Database: "main", ObservedAt: at(time.Hour), Roles: roles, Sessions: sessions, Managed: managed})
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(p)
	}
	longest := 0
	rep, err := rules.Evaluate(ctx, arrayWatchTx{Tx: tx, longest: &longest}, p)
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	fs := slices.Clone(rep.Findings)
	slices.SortFunc(fs, func(a, b schemas.Finding) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.Marshal(fs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), longest
}

// lookupCase is a target of many managed roles, some with leases in the
// ledger (ended, active), a session on each kind, a ghost whose former
// role had a lease, and an unmanaged role with a lease; its first pass is
// recorded, and the second is returned.
func lookupCase(t *testing.T, s *store.Store) (roles []observed.DBRole, sessions []observed.DBSession) {
	t.Helper()
	first := append(vaultRoles(2000), observed.DBRole{OID: 12, Name: "app", CanLogin: true})
	gone := first[1999]
	roles = append(slices.Clone(first[:1999]), first[2000])
	for i := range 10 {
		leaseFor(t, s, first[i].Name, at(0))              // ended before the pass: orphan
		leaseFor(t, s, first[10+i].Name, at(3*time.Hour)) // active
	}
	leaseFor(t, s, gone.Name, at(0))
	leaseFor(t, s, "app", at(0))
	sess := func(pid int32, r observed.DBRole) observed.DBSession {
		return observed.DBSession{PID: pid, BackendStart: at(-time.Minute), UserOID: r.OID, UserName: r.Name, BackendType: "client backend"}
	}
	firstSess := []observed.DBSession{sess(100, first[0]), sess(101, first[10]), sess(102, gone)}
	passKnown(t, func() (pgx.Tx, error) { return s.Pool().Begin(context.Background()) }, at(0), first, firstSess, nil)
	ghost := sess(102, gone)
	ghost.UserName = ""
	return roles, []observed.DBSession{sess(100, first[0]), sess(101, first[10]), ghost}
}

// TestRulesSendNoRoleNamesToTheLedger: the rules of a pass the observer
// recorded look its roles' leases up through what it recorded of them in
// the pass's transaction, and send the state store no list of their
// names: that list (100,000 names every pass on a large target, encoded
// for the wire in a buffer grown five times over) was the largest cost of
// a steady pass in memory. The findings are those of the lookup by names.
func TestRulesSendNoRoleNamesToTheLedger(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	roles, sessions := lookupCase(t, s)
	recorded, longest := judgedPass(t, s, roles, sessions, nil)
	if longest > 100 { // the ids of the leases found are sent: 21 here
		t.Errorf("the rules of a recorded pass over %d roles sent an array of %d values; want no list of the roles", len(roles), longest)
	}
	byName, _ := judgedPass(t, s, roles, sessions, func(p *observed.Pass) { p.RolesRecorded = false })
	if recorded != byName {
		t.Errorf("findings differ:\nrecorded roles: %s\nby name:        %s", recorded, byName)
	}
	for _, want := range []string{detectors.RuleOrphanRole, detectors.RuleGhostSession, detectors.RuleReuseAfterRevoke} {
		if !strings.Contains(recorded, fmt.Sprintf("%q", want)) {
			t.Errorf("no %s finding: %s", want, recorded)
		}
	}
}
