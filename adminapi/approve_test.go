package adminapi

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/approval/pending"
)

// TestApproveAPI: a read-only principal cannot decide (403, nothing
// changes); a revoke principal approves, the user is dropped through the
// revoker and the evidence names the principal; the list shows pending
// revocations until they are decided.
func TestApproveAPI(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	_, base := r.start(t, r.config(), nil, nil)
	c := r.client(nil)
	ops, dash, writer := r.tokens["ops"], r.tokens["dash"], r.tokens["writer"]
	u1, u2 := r.issue(t, "ro", "ent-"+r.tag), r.issue(t, "ro", "ent-"+r.tag)
	id1, id2 := r.pend(t, u1, time.Hour), r.pend(t, u2, time.Hour)

	var page pendingPage
	rp := do(t, c, base, call{method: "GET", path: "/v1/revocations?state=pending&limit=1", token: dash})
	expect(t, rp, 200)
	page = pendingPage{}
	rp.json(t, &page)
	if len(page.Revocations) != 1 || page.NextCursor == "" {
		t.Fatalf("first page %+v", page)
	}
	first := page.Revocations[0].ID
	rp = do(t, c, base, call{method: "GET", path: "/v1/revocations?limit=1&cursor=" + page.NextCursor, token: dash})
	expect(t, rp, 200)
	page = pendingPage{}
	rp.json(t, &page)
	if len(page.Revocations) != 1 || page.Revocations[0].ID == first || page.NextCursor != "" {
		t.Fatalf("second page %+v", page)
	}

	// Read scope, or no token: refused, nothing decided.
	expect(t, do(t, c, base, call{method: "POST", path: "/v1/revocations/" + id1 + "/approve", token: dash}), 403)
	expect(t, do(t, c, base, call{method: "POST", path: "/v1/revocations/" + id1 + "/approve"}), 401)
	if p, err := pending.Get(r.ctx, r.st.Pool(), id1); err != nil || p.State != "pending" || !r.exists(t, u1.Username) {
		t.Fatalf("after refused calls: %+v, %v", p, err)
	}
	// writer has revoke only: it may decide but not list.
	expect(t, do(t, c, base, call{method: "GET", path: "/v1/revocations", token: writer}), 403)

	rp = do(t, c, base, call{method: "POST", path: "/v1/revocations/" + id1 + "/approve", token: ops, body: `{"comment":"INC-9"}`})
	expect(t, rp, 200)
	var dec decisionResponse
	rp.json(t, &dec)
	if dec.State != "approved" || dec.DecidedBy != "ops" || dec.Comment != "INC-9" || dec.Outcome == nil ||
		!dec.Outcome.Gone || dec.Outcome.Actor != "ops" || dec.Outcome.CommandID != id1 || dec.EvidenceID == "" {
		t.Fatalf("decision %+v outcome %+v", dec, dec.Outcome)
	}
	if r.exists(t, u1.Username) {
		t.Fatal("approved user still exists")
	}
	for _, evID := range []string{dec.EvidenceID, dec.Outcome.EvidenceID} {
		rp = do(t, c, base, call{method: "GET", path: "/v1/evidence/" + evID, token: dash})
		expect(t, rp, 200)
		var ev struct {
			Data struct {
				Actor struct {
					User struct {
						Name string `json:"name"`
					} `json:"user"`
				} `json:"actor"`
			} `json:"data"`
		}
		if err := json.Unmarshal(rp.body, &ev); err != nil || ev.Data.Actor.User.Name != "ops" {
			t.Errorf("evidence %s names %q (%v)", evID, ev.Data.Actor.User.Name, err)
		}
	}
	// The revocation reads like any other.
	expect(t, do(t, c, base, call{method: "GET", path: "/v1/revocations/" + id1, token: dash}), 200)
	rp = do(t, c, base, call{method: "GET", path: "/v1/revocations?state=approved", token: dash})
	expect(t, rp, 200)
	page = pendingPage{}
	rp.json(t, &page)
	if len(page.Revocations) != 1 || page.Revocations[0].ID != id1 {
		t.Errorf("approved list %+v", page)
	}

	// Concurrent approve and reject of the other: one decision.
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verb := "approve"
			if i%2 == 1 {
				verb = "reject"
			}
			codes[i] = do(t, c, base, call{method: "POST", path: "/v1/revocations/" + id2 + "/" + verb, token: ops}).code
		}()
	}
	wg.Wait()
	ok, conflict := 0, 0
	for _, code := range codes {
		switch code {
		case 200:
			ok++
		case 409:
			conflict++
		}
	}
	if ok != 1 || conflict != len(codes)-1 {
		t.Fatalf("codes %v: want one 200 and the rest 409", codes)
	}
	p, err := pending.Get(r.ctx, r.st.Pool(), id2)
	if err != nil || (p.State == "approved") == r.exists(t, u2.Username) {
		t.Fatalf("state %s, user exists %v, %v", p.State, r.exists(t, u2.Username), err)
	}
	rp = do(t, c, base, call{method: "GET", path: "/v1/revocations", token: dash})
	expect(t, rp, 200)
	page = pendingPage{}
	rp.json(t, &page)
	if len(page.Revocations) != 0 {
		t.Errorf("pending after decisions: %+v", page)
	}
}
