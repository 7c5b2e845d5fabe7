package adminapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
)

// TestAuthentication is the authentication matrix: bearer tokens and
// client certificates, scopes, and what a refusal leaves behind.
func TestAuthentication(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	s, base := r.start(t, r.config(), nil, nil)
	userA := r.issue(t, "ro", "ent-a-"+r.tag)
	userB := r.issue(t, "ro", "ent-b-"+r.tag)

	plain := r.client(nil)
	opsCert, dashCert := r.clientCA.issue(t, "ops", false), r.clientCA.issue(t, "dash", false)
	strangerCert := r.clientCA.issue(t, "stranger", false)
	wrongCA := newCA(t, "rogue ca "+r.tag)
	forgedOps := wrongCA.issue(t, "ops", false)
	revokeBody := func(user string) string {
		return mustJSON(t, map[string]any{"db_user": user, "reason": "INC-7 leaked in a CI log"})
	}

	tests := []struct {
		name    string
		client  *http.Client
		call    call
		want    int
		denied  string // the reason counted, if refused
		checkFn func(t *testing.T, rp reply)
	}{
		{name: "no credentials", client: plain, call: call{method: "GET", path: "/v1/leases"}, want: 401, denied: DeniedMissingCredentials,
			checkFn: func(t *testing.T, rp reply) {
				if got := rp.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			}},
		{name: "no credentials on POST", client: plain, call: call{method: "POST", path: "/v1/revocations", body: revokeBody(userA.Username)}, want: 401, denied: DeniedMissingCredentials},
		{name: "wrong token", client: plain, call: call{method: "GET", path: "/v1/leases", token: "lgt_not-a-token"}, want: 401, denied: DeniedInvalidToken,
			checkFn: func(t *testing.T, rp reply) {
				if got := rp.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			}},
		{name: "token of another scheme", client: plain, call: call{method: "GET", path: "/v1/leases", header: map[string]string{"Authorization": "Basic " + r.tokens["ops"]}}, want: 401, denied: DeniedInvalidToken},
		{name: "digest as token", client: plain, call: call{method: "GET", path: "/v1/leases", token: TokenDigest(r.tokens["ops"])}, want: 401, denied: DeniedInvalidToken},
		{name: "read-only token on revoke", client: plain, call: call{method: "POST", path: "/v1/revocations", token: r.tokens["dash"], body: revokeBody(userA.Username)}, want: 403, denied: DeniedInsufficientScope,
			checkFn: func(t *testing.T, rp reply) {
				if got := rp.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope", scope="revoke"`) {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			}},
		{name: "revoke-only token on read", client: plain, call: call{method: "GET", path: "/v1/findings", token: r.tokens["writer"]}, want: 403, denied: DeniedInsufficientScope},
		{name: "read token reads", client: plain, call: call{method: "GET", path: "/v1/leases", token: r.tokens["dash"]}, want: 200},
		{name: "client cert reads", client: r.client(&dashCert), call: call{method: "GET", path: "/v1/leases"}, want: 200},
		{name: "client cert of no principal", client: r.client(&strangerCert), call: call{method: "GET", path: "/v1/leases"}, want: 401, denied: DeniedUnknownClientCert},
		{name: "wrong token beside a good cert", client: r.client(&opsCert), call: call{method: "GET", path: "/v1/leases", token: "lgt_wrong"}, want: 401, denied: DeniedInvalidToken},
		{name: "read-only cert on revoke", client: r.client(&dashCert), call: call{method: "POST", path: "/v1/revocations", body: revokeBody(userA.Username)}, want: 403, denied: DeniedInsufficientScope},
		{name: "revoke token drops the user", client: plain, call: call{method: "POST", path: "/v1/revocations", token: r.tokens["ops"], body: revokeBody(userA.Username)}, want: 201,
			checkFn: func(t *testing.T, rp reply) { r.checkDropped(t, rp, userA.Username, "ops") }},
		{name: "revoke cert drops the user", client: r.client(&opsCert), call: call{method: "POST", path: "/v1/revocations", body: revokeBody(userB.Username)}, want: 201,
			checkFn: func(t *testing.T, rp reply) { r.checkDropped(t, rp, userB.Username, "ops") }},
		{name: "unknown route", client: plain, call: call{method: "GET", path: "/v1/nope", token: r.tokens["dash"]}, want: 404},
		{name: "unknown route unauthenticated", client: plain, call: call{method: "GET", path: "/v1/nope"}, want: 401, denied: DeniedMissingCredentials},
		{name: "wrong method", client: plain, call: call{method: "DELETE", path: "/v1/leases", token: r.tokens["dash"]}, want: 405,
			checkFn: func(t *testing.T, rp reply) {
				if rp.header.Get("Allow") == "" {
					t.Error("405 without Allow")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := 0.0
			if tt.denied != "" {
				before = counterValue(t, s.m.denied.WithLabelValues(tt.denied))
			}
			rp := do(t, tt.client, base, tt.call)
			if rp.code != tt.want {
				t.Fatalf("status %d, want %d: %s", rp.code, tt.want, rp.body)
			}
			if tt.denied != "" {
				if got := counterValue(t, s.m.denied.WithLabelValues(tt.denied)) - before; got != 1 {
					t.Errorf("denied{reason=%s} rose by %v, want 1", tt.denied, got)
				}
			}
			if tt.checkFn != nil {
				tt.checkFn(t, rp)
			}
		})
	}

	t.Run("client cert from another CA", func(t *testing.T) {
		// A client offers only certificates of the CAs the server names:
		// this one goes without, and is unauthenticated.
		rp := do(t, r.client(&forgedOps), base, call{method: "GET", path: "/v1/leases"})
		if rp.code != 401 {
			t.Fatalf("a certificate of another CA got %d: %s", rp.code, rp.body)
		}
		// Sent anyway, the server refuses it in the handshake.
		forcing := r.client(nil)
		forcing.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &forgedOps, nil
		}
		rp, err := try(forcing, base, call{method: "GET", path: "/v1/leases"})
		if err == nil {
			t.Fatalf("the handshake accepted a certificate of another CA: %d %s", rp.code, rp.body)
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("handshake error %v", err)
		}
	})

	// Refusals are logged with the principal or "anonymous" and the remote
	// address; no token ever reaches the log.
	logs := r.logs.String()
	for _, want := range []string{`"principal":"anonymous"`, `"reason":"missing_credentials"`, `"principal":"dash"`,
		`"reason":"insufficient_scope"`, `"remote":"127.0.0.1:`, `"client_cn":"stranger"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	for name, tok := range r.tokens {
		if strings.Contains(logs, tok) {
			t.Errorf("the token of %s is in the logs", name)
		}
		if strings.Contains(logs, strings.TrimPrefix(TokenDigest(tok), "sha256:")) {
			t.Errorf("the digest of %s is in the logs", name)
		}
	}
	if got := counterValue(t, s.m.requests.WithLabelValues("POST /v1/revocations", "201")); got != 2 {
		t.Errorf("requests{POST,201} = %v, want 2", got)
	}
}

// checkDropped checks a revocation response: the user is gone, and the
// outcome and its evidence name the actor.
func (r *rig) checkDropped(t *testing.T, rp reply, user, actor string) {
	t.Helper()
	var resp revocationResponse
	rp.json(t, &resp)
	if r.exists(t, user) {
		t.Fatalf("%s survived", user)
	}
	if resp.Actor != actor || !resp.Complete || !resp.AllGone || len(resp.Outcomes) != 1 {
		t.Fatalf("response %s", rp.body)
	}
	o := resp.Outcomes[0]
	if o.Outcome != string(schemas.OutcomeDropped) || o.Actor != actor || o.DBUser != user || o.EvidenceID == "" || !o.Gone {
		t.Fatalf("outcome %+v", o)
	}
	if loc := rp.header.Get("Location"); loc != "/v1/revocations/"+resp.ID {
		t.Errorf("Location = %q", loc)
	}
	raw, err := evidence.RawEvent(r.ctx, r.st.Pool(), o.EvidenceID)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.ValidateJSON("evidence", raw); err != nil {
		t.Errorf("evidence: %v", err)
	}
	if !strings.Contains(string(raw), `"actor":"`+actor+`"`) || !strings.Contains(string(raw), `"name":"`+actor+`"`) {
		t.Errorf("evidence does not name the actor %s: %s", actor, raw)
	}
}

// TestRequestBody: bodies are size-limited, JSON, one object of known
// fields, and a valid request.
func TestRequestBody(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	cfg := r.config()
	cfg.MaxBodyBytes = 512
	_, base := r.start(t, cfg, nil, nil)
	c := r.client(nil)
	user := r.issue(t, "ro", "e")
	big := `{"db_user":"` + user.Username + `","reason":"` + strings.Repeat("x", 600) + `"}`
	tests := []struct {
		name, body, contentType string
		chunked                 bool
		want                    int
		msg                     string
	}{
		{"too large", big, "", false, 413, "larger than 512 bytes"},
		{"too large, chunked", big, "", true, 413, "larger than 512 bytes"},
		{"unknown field", `{"db_user":"` + user.Username + `","reason":"x","force":true}`, "", false, 400, `unknown field "force"`},
		{"two values", `{"db_user":"x","reason":"x"} {}`, "", false, 400, "more than one JSON value"},
		{"not an object", `["x"]`, "", false, 400, "JSON object"},
		{"wrong type", `{"db_user":"x","reason":"x","dry_run":"yes"}`, "", false, 400, `field "dry_run"`},
		{"truncated", `{"db_user":"x"`, "", false, 400, "truncated"},
		{"text/plain", `{"db_user":"x","reason":"x"}`, "text/plain", false, 415, "application/json"},
		{"no reason", `{"db_user":"` + user.Username + `"}`, "", false, 400, "reason is required"},
		{"two selectors", `{"db_user":"x","lease_id":"a/b","reason":"x"}`, "", false, 400, "several selectors"},
		{"no selector", `{"reason":"x"}`, "", false, 400, "no selector"},
		{"unknown database", `{"db_user":"x","database":"nope","reason":"x"}`, "", false, 400, `no target database named "nope"`},
		{"bad request id", `{"db_user":"x","reason":"x","request_id":"a b"}`, "", false, 400, "request id"},
		{"charset is fine", `{"db_user":"` + user.Username + `","reason":"look","dry_run":true}`, "application/json; charset=utf-8", false, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", base+"/v1/revocations", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.chunked {
				req.ContentLength = -1
				req.Body = io.NopCloser(struct{ io.Reader }{strings.NewReader(tt.body)})
			}
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			req.Header.Set("Authorization", "Bearer "+r.tokens["ops"])
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			var e errorBody
			_ = json.Unmarshal(b, &e)
			if resp.StatusCode != tt.want || !strings.Contains(e.Error, tt.msg) {
				t.Fatalf("status %d %s, want %d with %q", resp.StatusCode, b, tt.want, tt.msg)
			}
		})
	}
	if !r.exists(t, user.Username) {
		t.Fatal("a refused request dropped the user")
	}
}

// TestRateLimit: each principal has its own bucket; the refusal says when
// to come back.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	clock := &fakeClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	cfg := r.config()
	cfg.RatePerMinute = 3
	s, base := r.start(t, cfg, clock.Now, nil)
	c := r.client(nil)
	get := func(name string) reply {
		return do(t, c, base, call{method: "GET", path: "/v1/leases", token: r.tokens[name]})
	}
	for i := range 3 {
		if rp := get("ops"); rp.code != 200 {
			t.Fatalf("request %d: %d", i+1, rp.code)
		}
	}
	rp := get("ops")
	if rp.code != 429 || rp.header.Get("Retry-After") != "20" {
		t.Fatalf("4th request: %d, Retry-After %q: %s", rp.code, rp.header.Get("Retry-After"), rp.body)
	}
	// A forbidden request spends from the same bucket, and is refused as
	// rate limited first.
	if rp := do(t, c, base, call{method: "POST", path: "/v1/revocations", token: r.tokens["ops"], body: `{}`}); rp.code != 429 {
		t.Fatalf("POST while limited: %d", rp.code)
	}
	if rp := get("dash"); rp.code != 200 {
		t.Fatalf("another principal: %d", rp.code)
	}
	clock.Add(20 * time.Second)
	if rp := get("ops"); rp.code != 200 {
		t.Fatalf("after Retry-After: %d", rp.code)
	}
	if rp := get("ops"); rp.code != 429 {
		t.Fatalf("bucket refilled by one only: %d", rp.code)
	}
	if got := counterValue(t, s.m.denied.WithLabelValues(DeniedRateLimited)); got != 3 {
		t.Errorf("rate_limited = %v, want 3", got)
	}
	if !strings.Contains(r.logs.String(), `"reason":"rate_limited"`) {
		t.Error("rate limiting is not logged")
	}
}

// TestReadEndpoints: the GET endpoints return what the store holds, with
// filters and paging.
func TestReadEndpoints(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	_, base := r.start(t, r.config(), nil, nil)
	c := r.client(nil)
	get := func(path string) reply {
		return do(t, c, base, call{method: "GET", path: path, token: r.tokens["ops"]})
	}

	// Leases: five users, two entities, one revoked in the ledger.
	entA, entB := "ent-a-"+r.tag, "ent-b-"+r.tag
	var creds []string
	for i := range 5 {
		ent := entA
		if i >= 3 {
			ent = entB
		}
		creds = append(creds, r.issue(t, "ro", ent).LeaseID)
	}
	revokedAt := time.Now().UTC()
	r.apply(t, schemas.LeaseEvent{Type: schemas.LeaseEventType, Kind: schemas.LeaseRevoked, LeaseID: creds[4],
		RevokeBy: schemas.RevokeByPath, EventTime: revokedAt, Source: schemas.SourceRef{Transport: "file", Offset: 2}})

	var all []string
	cursor := ""
	for pages := 0; ; pages++ {
		path := "/v1/leases?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		rp := get(path)
		if rp.code != 200 {
			t.Fatalf("%s: %d %s", path, rp.code, rp.body)
		}
		var page leasePage
		rp.json(t, &page)
		for _, l := range page.Leases {
			all = append(all, l.LeaseID)
		}
		if page.NextCursor == "" {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		cursor = page.NextCursor
	}
	want := append([]string(nil), creds...)
	sortStrings(want)
	if strings.Join(all, ",") != strings.Join(want, ",") {
		t.Fatalf("paged leases %v, want %v", all, want)
	}
	count := func(path string) int {
		rp := get(path)
		if rp.code != 200 {
			t.Fatalf("%s: %d %s", path, rp.code, rp.body)
		}
		var page leasePage
		rp.json(t, &page)
		return len(page.Leases)
	}
	var one leasePage
	get("/v1/leases?state=revoked").json(t, &one)
	if len(one.Leases) != 1 || one.Leases[0].LeaseID != creds[4] || one.Leases[0].RevokedAt == nil || one.Leases[0].State != "revoked" {
		t.Fatalf("revoked leases: %+v", one.Leases)
	}
	for path, n := range map[string]int{
		"/v1/leases?state=active":                                   4,
		"/v1/leases?entity_id=" + entA:                              3,
		"/v1/leases?entity_id=" + entB + "&state=active":            1,
		"/v1/leases?database=main&limit=500":                        5,
		"/v1/leases?db_user=nobody-" + r.tag:                        0,
		"/v1/leases?database=elsewhere":                             0,
		"/v1/leases?state=active&entity_id=" + entA + "&limit=1":    1,
		"/v1/leases?state=expired&entity_id=" + entA + "&limit=500": 0,
	} {
		if got := count(path); got != n {
			t.Errorf("%s: %d leases, want %d", path, got, n)
		}
	}
	var byUser leasePage
	l0, err := r.st.Lease(r.ctx, creds[0])
	if err != nil {
		t.Fatal(err)
	}
	get("/v1/leases?db_user="+l0.DBUser).json(t, &byUser)
	if len(byUser.Leases) != 1 || byUser.Leases[0].LeaseID != creds[0] || byUser.Leases[0].EntityID != entA ||
		byUser.Leases[0].Mount != r.sim.Mount || byUser.Leases[0].Role != "ro" || byUser.Leases[0].IssuedAt == nil {
		t.Fatalf("by user: %+v", byUser.Leases)
	}
	for _, path := range []string{"/v1/leases?state=gone", "/v1/leases?limit=0", "/v1/leases?limit=501", "/v1/leases?limit=x",
		"/v1/leases?user=x", "/v1/leases?cursor=%25%25", "/v1/leases?state=active&state=revoked", "/v1/leases?db_user=%01"} {
		if rp := get(path); rp.code != 400 {
			t.Errorf("%s: %d, want 400", path, rp.code)
		}
	}

	// Findings: the most recent first, filtered, paged.
	t0 := time.Date(2026, 4, 1, 10, 0, 0, 123456000, time.UTC)
	ev1 := r.addFinding(t, "f1-"+r.tag, "expired_lease_user_present", "v-a", t0)
	r.addFinding(t, "f2-"+r.tag, "expired_lease_user_present", "v-b", t0.Add(time.Minute))
	r.addFinding(t, "f3-"+r.tag, "orphan_user", "v-a", t0.Add(2*time.Minute))
	r.addFinding(t, "f4-"+r.tag, "orphan_user", "v-c", t0.Add(2*time.Minute)) // same time: ordered by id
	ids := func(path string) ([]string, string) {
		rp := get(path)
		if rp.code != 200 {
			t.Fatalf("%s: %d %s", path, rp.code, rp.body)
		}
		var page findingPage
		rp.json(t, &page)
		var out []string
		for _, f := range page.Findings {
			out = append(out, strings.TrimSuffix(f.ID, "-"+r.tag))
			if f.EvidenceID == "" || f.Summary == "" || f.Type != schemas.FindingType {
				t.Errorf("finding %+v", f)
			}
		}
		return out, page.NextCursor
	}
	if got, _ := ids("/v1/findings"); strings.Join(got, ",") != "f4,f3,f2,f1" {
		t.Errorf("findings %v", got)
	}
	if got, _ := ids("/v1/findings?rule=orphan_user"); strings.Join(got, ",") != "f4,f3" {
		t.Errorf("by rule %v", got)
	}
	if got, _ := ids("/v1/findings?db_user=v-a"); strings.Join(got, ",") != "f3,f1" {
		t.Errorf("by user %v", got)
	}
	var paged []string
	path := "/v1/findings?limit=1"
	for range 10 {
		got, next := ids(path)
		paged = append(paged, got...)
		if next == "" {
			break
		}
		path = "/v1/findings?limit=1&cursor=" + next
	}
	if strings.Join(paged, ",") != "f4,f3,f2,f1" {
		t.Errorf("paged findings %v", paged)
	}
	for _, path := range []string{"/v1/findings?cursor=bm9wZQ", "/v1/findings?severity=high", "/v1/findings?limit=1000"} {
		if rp := get(path); rp.code != 400 {
			t.Errorf("%s: %d, want 400", path, rp.code)
		}
	}

	// Evidence: the exact stored bytes.
	rp := get("/v1/evidence/" + ev1)
	stored, err := evidence.RawEvent(r.ctx, r.st.Pool(), ev1)
	if err != nil {
		t.Fatal(err)
	}
	if rp.code != 200 || string(rp.body) != string(stored) || rp.header.Get("Content-Type") != "application/cloudevents+json" {
		t.Fatalf("evidence: %d %q\n%s\nwant\n%s", rp.code, rp.header.Get("Content-Type"), rp.body, stored)
	}
	if rp := get("/v1/evidence/" + strings.Repeat("0", 64)); rp.code != 404 {
		t.Errorf("unknown evidence: %d", rp.code)
	}
	if rp := get("/v1/evidence/-x"); rp.code != 400 {
		t.Errorf("malformed evidence id: %d", rp.code)
	}
}

// TestRevocationRequests: a request's outcomes are readable by request id
// and by command id; posting the same request id again acts no twice; a dry
// run changes nothing.
func TestRevocationRequests(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	_, base := r.start(t, r.config(), nil, nil)
	c := r.client(nil)
	ent := "ent-x-" + r.tag
	u1, u2 := r.issue(t, "ro", ent), r.issue(t, "rw", ent)
	other := r.issue(t, "ro", "ent-y-"+r.tag)
	post := func(body map[string]any) (reply, revocationResponse) {
		rp := do(t, c, base, call{method: "POST", path: "/v1/revocations", token: r.tokens["ops"], body: mustJSON(t, body)})
		var resp revocationResponse
		if rp.code < 300 {
			rp.json(t, &resp)
		}
		return rp, resp
	}

	rp, dry := post(map[string]any{"entity_id": ent, "reason": "INC-9", "dry_run": true})
	if rp.code != 200 || !dry.DryRun || len(dry.Items) != 2 || len(dry.Outcomes) != 0 || dry.Complete || dry.AllGone ||
		dry.Selector.Kind != "entity_id" || dry.Selector.Value != ent || dry.Items[0].Expect != "would be dropped" {
		t.Fatalf("dry run: %d %s", rp.code, rp.body)
	}
	if !r.exists(t, u1.Username) || !r.exists(t, u2.Username) {
		t.Fatal("a dry run dropped a user")
	}
	if rp := do(t, c, base, call{method: "GET", path: "/v1/revocations/" + dry.ID, token: r.tokens["dash"]}); rp.code != 404 {
		t.Errorf("a dry run left commands: %d %s", rp.code, rp.body)
	}

	rp, res := post(map[string]any{"entity_id": ent, "reason": "INC-9", "emergency": true})
	if rp.code != 201 || !res.Complete || !res.AllGone || len(res.Outcomes) != 2 || !res.Emergency {
		t.Fatalf("execute: %d %s", rp.code, rp.body)
	}
	if r.exists(t, u1.Username) || r.exists(t, u2.Username) || !r.exists(t, other.Username) {
		t.Fatal("not exactly the entity's users were dropped")
	}

	var st revocationStatus
	rp = do(t, c, base, call{method: "GET", path: "/v1/revocations/" + res.ID, token: r.tokens["dash"]})
	if rp.code != 200 {
		t.Fatalf("by request id: %d %s", rp.code, rp.body)
	}
	rp.json(t, &st)
	if st.ID != res.ID || !st.Complete || !st.AllGone || len(st.Outcomes) != 2 {
		t.Fatalf("by request id: %s", rp.body)
	}
	got := map[string]outcome{}
	for _, o := range st.Outcomes {
		got[o.CommandID] = o
	}
	for _, o := range res.Outcomes {
		g := got[o.CommandID]
		if g.Outcome != "dropped" || g.Actor != "ops" || g.Reason != "INC-9" || !g.Emergency || g.EvidenceID != o.EvidenceID ||
			g.FinishedAt == nil || g.Rule != "operator-revoke" || g.State != "done" {
			t.Errorf("outcome by request id %+v, posted %+v", g, o)
		}
	}
	cmd := res.Outcomes[0].CommandID
	rp = do(t, c, base, call{method: "GET", path: "/v1/revocations/" + cmd, token: r.tokens["dash"]})
	st = revocationStatus{}
	rp.json(t, &st)
	if rp.code != 200 || len(st.Outcomes) != 1 || st.Outcomes[0].CommandID != cmd {
		t.Fatalf("by command id: %d %s", rp.code, rp.body)
	}
	if rp := do(t, c, base, call{method: "GET", path: "/v1/revocations/nothing-" + r.tag, token: r.tokens["dash"]}); rp.code != 404 {
		t.Errorf("unknown id: %d", rp.code)
	}

	// The same request id again: the same commands, found recorded.
	rp, again := post(map[string]any{"entity_id": ent, "reason": "INC-9", "emergency": true, "request_id": res.ID})
	if rp.code != 201 || again.ID != res.ID || len(again.Outcomes) != 2 || !again.AllGone {
		t.Fatalf("again: %d %s", rp.code, rp.body)
	}
	for i, o := range again.Outcomes {
		if !o.Duplicate || o.Outcome != "dropped" || o.CommandID != res.Outcomes[i].CommandID {
			t.Errorf("again: %+v", o)
		}
	}
	var dropped int
	if err := r.st.Pool().QueryRow(r.ctx, "SELECT count(*) FROM revocations WHERE outcome = 'dropped'").Scan(&dropped); err != nil {
		t.Fatal(err)
	}
	if dropped != 2 {
		t.Errorf("%d dropped outcomes, want 2", dropped)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestLifecycle: Start, Addr, Shutdown (twice), off without an address, and
// no revocation starts once Shutdown began.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	cfg := r.config()
	cfg.Addr = ""
	off, err := New(cfg, Deps{Operator: r.svc, State: r.st.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Start(); err != nil || off.Addr() != "" {
		t.Fatalf("off: %v %q", err, off.Addr())
	}
	if err := off.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Handler still answers; revocations are refused after Shutdown.
	ts := httptest.NewServer(newChecker(t).wrap(off.Handler()))
	defer ts.Close()
	rp := do(t, ts.Client(), ts.URL, call{method: "POST", path: "/v1/revocations", token: r.tokens["ops"], body: `{"db_user":"v-x","reason":"x"}`})
	if rp.code != 503 {
		t.Fatalf("after shutdown: %d %s", rp.code, rp.body)
	}

	cfg = r.config()
	s, err := New(cfg, Deps{Operator: r.svc, State: r.st.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	addr := s.Addr()
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr = %s", addr)
	}
	if rp := do(t, r.client(nil), "https://"+addr, call{method: "GET", path: "/v1/leases", token: r.tokens["dash"]}); rp.code != 200 {
		t.Fatalf("GET: %d", rp.code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, err := try(r.client(nil), "https://"+addr, call{method: "GET", path: "/v1/leases", token: r.tokens["dash"]}); err == nil {
		t.Error("served after Shutdown")
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestMutualTLSOnly: when no principal has a bearer token, a client
// certificate is required in the handshake.
func TestMutualTLSOnly(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	cfg := r.config()
	var err error
	if cfg.Tokens, err = ParseTokens("dash:mtls:read"); err != nil {
		t.Fatal(err)
	}
	_, base := r.start(t, cfg, nil, nil)
	cert := r.clientCA.issue(t, "dash", false)
	if rp := do(t, r.client(&cert), base, call{method: "GET", path: "/v1/findings"}); rp.code != 200 {
		t.Fatalf("with a certificate: %d %s", rp.code, rp.body)
	}
	if rp, err := try(r.client(nil), base, call{method: "GET", path: "/v1/findings", token: r.tokens["dash"]}); err == nil {
		t.Fatalf("without a certificate: %d %s", rp.code, rp.body)
	}
	// The zero digest of a certificate-only principal matches no token.
	noCert := cfg
	noCert.ClientCA = nil
	if _, err := New(noCert, Deps{Operator: r.svc, State: r.st.Pool()}); err == nil {
		t.Fatal("certificate-only principals without a client CA")
	}
}
