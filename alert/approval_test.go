package alert

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

// TestApprovalAlerts: a finding waiting for an owner's approval pages even
// below the severity threshold, and its alert resolves with the decision:
// rejected here; approved once the user is gone there.
func TestApprovalAlerts(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	cfg := pdConfig(pd)
	cfg.MinSeverity = schemas.SeverityHigh
	r.start(cfg)
	ctx := context.Background()

	pending := func(user string) (schemas.Finding, string) {
		f := r.finding("orphan-role", schemas.SeverityMedium, "appdb", user)
		f.Mode, f.Action = schemas.ModeApprove, schemas.ActionApprovalRequested
		id := "pend-" + pgtest.Suffix()
		f.CommandID = id
		now := r.now().UTC()
		_, err := pending.Insert(ctx, r.st.Pool(), []pending.Revocation{{ID: id, FindingID: f.ID, Rule: f.Rule,
			Severity: f.Severity, Database: "appdb", DBUser: user, Summary: f.Summary,
			Command: schemas.RevocationCommand{ID: id, Database: "appdb", DBUser: user}, RequestedAt: now, ExpiresAt: now.Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		r.insert(f)
		return f, id
	}
	rejected, rejID := pending("v-token-" + pgtest.Suffix())
	approved, apID := pending("v-token-" + pgtest.Suffix())
	// An observed finding of the same severity does not page.
	quiet := r.finding("orphan-role", schemas.SeverityMedium, "appdb", "v-token-"+pgtest.Suffix())
	quiet.Mode, quiet.Action = schemas.ModeObserve, schemas.ActionNone
	r.insert(quiet)

	waitFor(t, 5*time.Second, "both approval alerts", func() bool {
		return events(pd, "trigger", dedupKey(rejected)) == 1 && events(pd, "trigger", dedupKey(approved)) == 1
	})
	r.quiet() // the observed finding taken in, everything due sent
	if n := events(pd, "trigger", dedupKey(quiet)); n != 0 || len(r.alerts(dedupKey(quiet))) != 0 {
		t.Errorf("a medium observed finding paged")
	}

	decide := func(id, state string, approvedCmd bool) {
		q := `UPDATE pending_revocations SET state = $2, decided_by = 'alice', decided_at = now() WHERE id = $1`
		if approvedCmd {
			q = `UPDATE pending_revocations SET state = $2, decided_by = 'alice', decided_at = now(), approved_command = command WHERE id = $1`
		}
		if _, err := r.st.Pool().Exec(ctx, q, id, state); err != nil {
			t.Fatal(err)
		}
	}
	decide(rejID, "rejected", false)
	waitFor(t, 5*time.Second, "the rejected alert resolved", func() bool { return events(pd, "resolve", dedupKey(rejected)) == 1 })
	if as := r.alerts(dedupKey(rejected)); len(as) != 1 || !strings.Contains(as[0].reason, "rejected by alice") {
		t.Errorf("alerts %+v", as)
	}

	// Still waiting past the auto-resolve time: still open.
	r.advance(DefaultAutoResolve + time.Minute)
	r.intakePassed()
	if as := r.alerts(dedupKey(approved)); len(as) != 1 || as[0].resolved {
		t.Fatalf("waiting approval alert %+v, want open", as)
	}
	// Approved: open until the revocation of its command is done.
	decide(apID, "approved", true)
	r.intakePassed()
	if as := r.alerts(dedupKey(approved)); len(as) != 1 || as[0].resolved {
		t.Fatalf("approved alert %+v, want open until the drop", as)
	}
	_, err := r.st.Pool().Exec(ctx, `
		INSERT INTO revocations (command_id, database, db_user, rule, state, outcome, command, finished_at)
		VALUES ($1, 'appdb', $2, 'orphan-role', 'done', 'dropped', '{}'::jsonb, now())`, apID, approved.DBUser)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the approved alert resolved", func() bool { return events(pd, "resolve", dedupKey(approved)) == 1 })
}
