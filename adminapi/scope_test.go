package adminapi

import (
	"encoding/json"
	"testing"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/rollout"
)

// TestScopeChangesNeedTheRevokeScope: changing the enforcement policy
// needs the revoke scope (a read-only token gets 403 and nothing changes)
// and a reason (400); the principal is the actor named in the version and
// its evidence. The policy and the pilot report need the read scope.
func TestScopeChangesNeedTheRevokeScope(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	_, base := r.start(t, r.config(), nil, nil)
	c := r.client(nil)
	ops, dash, writer := r.tokens["ops"], r.tokens["dash"], r.tokens["writer"]
	body := `{"reason":"pilot signed off: CHG-7","add":"db:main"}`

	for _, cl := range []struct {
		call
		want int
	}{
		{call{method: "POST", path: "/v1/scope/expand", token: dash, body: body}, 403},
		{call{method: "POST", path: "/v1/scope/rollback", token: dash, body: `{"reason":"x","to_configuration":true}`}, 403},
		{call{method: "GET", path: "/v1/scope", token: writer}, 403},
		{call{method: "GET", path: "/v1/pilot/report", token: writer}, 403},
		{call{method: "POST", path: "/v1/scope/expand", token: ops, body: `{"add":"db:main"}`}, 400},
		{call{method: "POST", path: "/v1/scope/expand", token: ops, body: `{"reason":"  ","add":"db:main"}`}, 400},
	} {
		expect(t, do(t, c, base, cl.call), cl.want)
	}
	if cur, err := r.policies.Current(r.ctx); err != nil || cur.Version != 1 {
		t.Fatalf("refused changes changed the policy: %+v, %v", cur, err)
	}

	rp := do(t, c, base, call{method: "POST", path: "/v1/scope/expand", token: ops, body: body})
	expect(t, rp, 201)
	var v rollout.RecordView
	rp.json(t, &v)
	if v.Version != 2 || v.Actor != "ops" || v.Reason != "pilot signed off: CHG-7" || v.Scope != "db:main" {
		t.Errorf("expanded: %+v", v)
	}
	raw, err := evidence.RawEvent(r.ctx, r.st.Pool(), v.EvidenceID)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Type string
		Data struct {
			Actor struct {
				User struct{ Name string } `json:"user"`
			} `json:"actor"`
			Comment string `json:"comment"`
		}
	}
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Type != "io.leaseguard.policy.v1" || ev.Data.Actor.User.Name != "ops" ||
		ev.Data.Comment != "pilot signed off: CHG-7" {
		t.Errorf("evidence %s, %v", raw, err)
	}

	rp = do(t, c, base, call{method: "GET", path: "/v1/scope", token: dash})
	expect(t, rp, 200)
	var o rollout.Overview
	rp.json(t, &o)
	if o.Current.Version != 2 || !o.Drift || len(o.History) != 2 {
		t.Errorf("overview %+v", o)
	}
	rp = do(t, c, base, call{method: "GET", path: "/v1/pilot/report?since=1h", token: dash})
	expect(t, rp, 200)
	var rep rollout.Report
	rp.json(t, &rep)
	if rep.Policy.Version != 2 || rep.Would.Findings != 0 || rep.Until.Sub(rep.Since).Hours() != 1 {
		t.Errorf("report %+v", rep)
	}
}
