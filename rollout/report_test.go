package rollout_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// pilotFinding is a recorded finding of the constructed scenario.
type pilotFinding struct {
	rule, db, user, mount, role, action string
	ago                                 time.Duration
}

// TestReportCountsThePilot: the report of a constructed pilot window counts
// what would have been dropped or terminated by rule, database and Vault
// role, sets apart the users a guard would spare (protected list, managed
// pattern), and lists the exceptions hit (allowed CIDRs); findings and hits
// outside the window, and findings that acted or only observed, are not
// counted. The expected numbers are the scenario's, counted by hand.
func TestReportCountsThePilot(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.policies(t, r.st, "", "")
	if _, err := p.Bootstrap(r.ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	r.findings(t, now, []pilotFinding{
		{"lease-expired-not-revoked", "main", "v-ro-a", "postgres", "app", "would_drop", time.Hour},
		{"lease-expired-not-revoked", "main", "v-ro-b", "postgres", "app", "would_drop", 2 * time.Hour},
		{"lease-expired-not-revoked", "orders", "v-ro-c", "postgres", "report", "would_drop", 3 * time.Hour},
		{"credential-reuse-after-revoke", "main", "v-ro-a", "postgres", "app", "would_drop", 4 * time.Hour},
		{"ghost-session", "main", "v-ro-gone", "", "", "would_terminate", 5 * time.Hour},
		{"lease-expired-not-revoked", "main", "v-ro-prot", "postgres", "app", "would_drop", 6 * time.Hour},
		{"lease-expired-not-revoked", "main", "alice", "postgres", "app", "would_drop", 7 * time.Hour},
		{"lease-expired-not-revoked", "main", "v-ro-old", "postgres", "app", "would_drop", 30 * time.Hour},
		{"lease-expired-not-revoked", "main", "v-ro-enf", "postgres", "app", "revocation_requested", time.Hour},
		{"orphan-role", "main", "v-ro-x", "", "", "none", time.Hour},
	})
	hit := func(key, value, db, user, role string, ago time.Duration) detectors.ExceptionHit {
		return detectors.ExceptionHit{Rule: "credential-foreign-address", Database: db, ObjectKey: key, Exception: detectors.ExceptionAllowedCIDR,
			Value: value, DBUser: user, Mount: "postgres", Role: role, ClientAddr: "10.1.1.1", SeenAt: now.Add(-ago)}
	}
	if err := detectors.RecordExceptionHits(r.ctx, r.st.Pool(), []detectors.ExceptionHit{
		hit("101/1", "10.0.0.0/8", "main", "v-ro-a", "app", time.Hour),
		hit("102/1", "10.0.0.0/8", "main", "v-ro-a", "app", 2*time.Hour),
		hit("103/1", "192.168.0.0/16", "orders", "v-ro-c", "report", time.Hour),
		hit("104/1", "10.0.0.0/8", "main", "v-ro-b", "app", 30*time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	guard := revoker.GuardConfig{ManagedPattern: regexp.MustCompile(`^v-ro-`), Protected: []string{"v-ro-prot"}}

	rep, err := p.Report(r.ctx, rollout.ReportConfig{Since: now.Add(-24 * time.Hour), Until: now.Add(time.Minute), Guard: guard})
	if err != nil {
		t.Fatal(err)
	}
	w := rep.Would
	if w.Findings != 5 || w.Users != 4 {
		t.Errorf("would: %d findings, %d users; want 5 and 4", w.Findings, w.Users)
	}
	expectCounts(t, "by action", w.ByAction, map[string]int{"would_drop": 4, "would_terminate": 1})
	expectCounts(t, "by rule", w.ByRule, map[string]int{"lease-expired-not-revoked": 3, "credential-reuse-after-revoke": 1, "ghost-session": 1})
	expectCounts(t, "by database", w.ByDatabase, map[string]int{"main": 4, "orders": 1})
	expectCounts(t, "by role", w.ByRole, map[string]int{"postgres/app": 3, "postgres/report": 1, rollout.NoRole: 1})
	if len(rep.Rows) != 4 {
		t.Errorf("rows: %+v, want 4 (rule, database, role, action)", rep.Rows)
	}
	spared := map[string]string{}
	for _, s := range rep.Spared {
		spared[s.DBUser] = s.Guard
	}
	expectCounts(t, "spared", map[string]int{"protected": count(spared, "protected"), "managed_pattern": count(spared, "managed_pattern")},
		map[string]int{"protected": 1, "managed_pattern": 1})
	if spared["v-ro-prot"] != "protected" || spared["alice"] != "managed_pattern" {
		t.Errorf("spared = %v", spared)
	}
	if len(rep.Exceptions) != 2 {
		t.Fatalf("exceptions = %+v, want 2", rep.Exceptions)
	}
	for _, e := range rep.Exceptions {
		switch e.Value {
		case "10.0.0.0/8":
			if e.Objects != 2 || strings.Join(e.Users, ",") != "v-ro-a" || e.Database != "main" || e.Role != "postgres/app" {
				t.Errorf("10.0.0.0/8 hit: %+v", e)
			}
		case "192.168.0.0/16":
			if e.Objects != 1 || strings.Join(e.Users, ",") != "v-ro-c" {
				t.Errorf("192.168.0.0/16 hit: %+v", e)
			}
		default:
			t.Errorf("unexpected exception %+v", e)
		}
	}
	if rep.Policy.Version != 1 || rep.Policy.Scope != "" {
		t.Errorf("policy = %+v", rep.Policy)
	}

	// Both outputs say the same.
	var js, table bytes.Buffer
	if err := json.NewEncoder(&js).Encode(rep); err != nil {
		t.Fatal(err)
	}
	var back rollout.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Would.Findings != 5 || back.Would.ByRule["ghost-session"] != 1 {
		t.Errorf("json report: %s, %v", js.String(), err)
	}
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"5 findings", "4 users", "v-ro-prot", "protected", "10.0.0.0/8", "lease-expired-not-revoked"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func count(m map[string]string, v string) int {
	n := 0
	for _, x := range m {
		if x == v {
			n++
		}
	}
	return n
}

func expectCounts(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v", what, got, want)
			return
		}
	}
}

// findings records the scenario's findings as the detectors would.
func (r *rig) findings(t *testing.T, now time.Time, fs []pilotFinding) {
	t.Helper()
	err := pgx.BeginFunc(r.ctx, r.st.Pool(), func(tx pgx.Tx) error {
		for i, f := range fs {
			mode, inScope := schemas.ModeEnforce, false
			switch f.action {
			case "revocation_requested":
				inScope = true
			case "none":
				mode = schemas.ModeObserve
			}
			fd := schemas.Finding{Type: schemas.FindingType, ID: "f" + r.tag + string(rune('a'+i)), Rule: f.rule, Severity: schemas.SeverityHigh,
				Mode: mode, InScope: inScope, DetectedAt: now.Add(-f.ago), Database: f.db, DBUser: f.user, Mount: f.mount, Role: f.role,
				Summary: "scenario", Action: f.action}
			if f.action == "revocation_requested" {
				fd.CommandID = "c" + r.tag
			}
			if _, err := store.InsertFinding(r.ctx, tx, fd, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
