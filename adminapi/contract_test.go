package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/leaseguard/leaseguard/approval"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/rollout"
	"github.com/leaseguard/leaseguard/schemas"
)

// openAPIURL is where the test registers the OpenAPI document with the
// schema compiler; component schemas are compiled by JSON pointer into it.
const openAPIURL = "https://leaseguard.dev/openapi.json"

// apiOp is one documented operation.
type apiOp struct {
	key       string // "GET /v1/leases", a ServeMux pattern
	scope     string
	responses map[string]apiResponse
}

// apiResponse is one documented response of an operation.
type apiResponse struct {
	contentType string
	schema      *jsonschema.Schema
	headers     []string
}

// contract is the OpenAPI document, compiled for checking responses.
type contract struct {
	ops map[string]*apiOp
	mux *http.ServeMux
}

var (
	contractOnce sync.Once
	contractDoc  *contract
	contractErr  error
)

func loadContract(t *testing.T) *contract {
	t.Helper()
	contractOnce.Do(func() { contractDoc, contractErr = compileContract() })
	if contractErr != nil {
		t.Fatalf("openapi: %v", contractErr)
	}
	return contractDoc
}

func compileContract() (*contract, error) {
	var doc map[string]any
	if err := json.Unmarshal(schemas.OpenAPI, &doc); err != nil {
		return nil, err
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		return nil, fmt.Errorf("openapi version %q, want 3.1.x", v)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemas.OpenAPI))
	if err != nil {
		return nil, err
	}
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.AssertFormat()
	if err := comp.AddResource(openAPIURL, inst); err != nil {
		return nil, err
	}
	c := &contract{ops: map[string]*apiOp{}, mux: http.NewServeMux()}
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		for method, v := range item.(map[string]any) {
			opDoc := v.(map[string]any)
			op := &apiOp{key: strings.ToUpper(method) + " " + path, responses: map[string]apiResponse{}}
			op.scope, _ = opDoc["x-leaseguard-scope"].(string)
			for status, rv := range opDoc["responses"].(map[string]any) {
				ptr := "/paths/" + escapePointer(path) + "/" + method + "/responses/" + status
				rdoc := rv.(map[string]any)
				if ref, ok := rdoc["$ref"].(string); ok {
					ptr = strings.TrimPrefix(ref, "#")
					rdoc = lookupPointer(doc, ptr)
					if rdoc == nil {
						return nil, fmt.Errorf("%s %s: unresolved %s", op.key, status, ref)
					}
				}
				var resp apiResponse
				content, _ := rdoc["content"].(map[string]any)
				if len(content) != 1 {
					return nil, fmt.Errorf("%s %s: want exactly one content type", op.key, status)
				}
				for mt := range content {
					resp.contentType = mt
					sch, err := comp.Compile(openAPIURL + "#" + ptr + "/content/" + escapePointer(mt) + "/schema")
					if err != nil {
						return nil, fmt.Errorf("%s %s: %v", op.key, status, err)
					}
					resp.schema = sch
				}
				headers, _ := rdoc["headers"].(map[string]any)
				for name, h := range headers {
					if req, _ := h.(map[string]any)["required"].(bool); req {
						resp.headers = append(resp.headers, name)
					}
				}
				op.responses[status] = resp
			}
			c.ops[op.key] = op
			c.mux.HandleFunc(op.key, func(http.ResponseWriter, *http.Request) {})
		}
	}
	return c, nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func lookupPointer(doc map[string]any, ptr string) map[string]any {
	cur := any(doc)
	for _, part := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	m, _ := cur.(map[string]any)
	return m
}

// checker checks every response a handler gives against the contract and
// records which documented responses it saw.
type checker struct {
	c    *contract
	t    *testing.T
	mu   sync.Mutex
	seen map[string]map[string]bool
}

func newChecker(t *testing.T) *checker {
	return &checker{c: loadContract(t), t: t, seen: map[string]map[string]bool{}}
}

// teeWriter keeps a copy of the response.
type teeWriter struct {
	http.ResponseWriter
	code int
	body bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func (ck *checker) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &teeWriter{ResponseWriter: w}
		h.ServeHTTP(tw, r)
		ck.check(r, tw.code, tw.Header(), tw.body.Bytes())
	})
}

func (ck *checker) check(r *http.Request, code int, h http.Header, body []byte) {
	t := ck.t
	where := r.Method + " " + r.URL.Path
	_, pattern := ck.c.mux.Handler(r)
	op := ck.c.ops[pattern]
	if op == nil || r.Method == http.MethodHead {
		// Not a documented operation: only refusals and "no such
		// endpoint", as JSON errors.
		if !slices.Contains([]int{401, 404, 405, 429}, code) {
			t.Errorf("%s: undocumented route answered %d", where, code)
		}
		ck.validateError(where, code, h, body)
		return
	}
	status := strconv.Itoa(code)
	resp, ok := op.responses[status]
	if !ok {
		t.Errorf("%s: status %d is not documented for %s (body %s)", where, code, op.key, body)
		return
	}
	ck.mu.Lock()
	if ck.seen[op.key] == nil {
		ck.seen[op.key] = map[string]bool{}
	}
	ck.seen[op.key][status] = true
	ck.mu.Unlock()
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt != resp.contentType {
		t.Errorf("%s %d: content type %q, documented %q", where, code, h.Get("Content-Type"), resp.contentType)
	}
	for _, name := range resp.headers {
		if h.Get(name) == "" {
			t.Errorf("%s %d: documented header %s is missing", where, code, name)
		}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Errorf("%s %d: body is not JSON: %v: %s", where, code, err, body)
		return
	}
	if err := resp.schema.Validate(inst); err != nil {
		t.Errorf("%s %d: body does not match the documented schema: %v\n%s", where, code, err, body)
	}
}

func (ck *checker) validateError(where string, code int, h http.Header, body []byte) {
	var e errorBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == "" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		ck.t.Errorf("%s %d: not a JSON error: %q %s", where, code, h.Get("Content-Type"), body)
	}
}

// missing lists the documented responses the checker has not seen.
func (ck *checker) missing() []string {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	var out []string
	for key, op := range ck.c.ops {
		for status := range op.responses {
			if !ck.seen[key][status] {
				out = append(out, key+" "+status)
			}
		}
	}
	sort.Strings(out)
	return out
}

// fakeApprover fails every decision with err, or, for the comment "slow",
// with a deadline.
type fakeApprover struct{ err error }

func (f fakeApprover) Approve(_ context.Context, _, _, comment string) (approval.Decided, error) {
	if comment == "slow" {
		return approval.Decided{}, fmt.Errorf("decide: %w", context.DeadlineExceeded)
	}
	return approval.Decided{}, f.err
}

func (f fakeApprover) Reject(ctx context.Context, id, actor, comment string) (approval.Decided, error) {
	return f.Approve(ctx, id, actor, comment)
}

// fakeRollout fails everything with err.
type fakeRollout struct{ err error }

func (f fakeRollout) Overview(context.Context, int) (rollout.Overview, error) {
	return rollout.Overview{}, f.err
}
func (f fakeRollout) Expand(context.Context, rollout.Expand) (rollout.Record, error) {
	return rollout.Record{}, f.err
}
func (f fakeRollout) Rollback(context.Context, rollout.Rollback) (rollout.Record, error) {
	return rollout.Record{}, f.err
}
func (f fakeRollout) Report(context.Context, rollout.ReportConfig) (rollout.Report, error) {
	return rollout.Report{}, f.err
}

// fakeOperator is an Operator whose answers a test chooses.
type fakeOperator struct {
	plan    func(ctx context.Context, req operator.Request) (operator.Plan, error)
	execute func(ctx context.Context, p operator.Plan, progress func(done, total int)) ([]revoker.Executed, error)
}

func (f fakeOperator) Plan(ctx context.Context, req operator.Request) (operator.Plan, error) {
	return f.plan(ctx, req)
}

func (f fakeOperator) Execute(ctx context.Context, p operator.Plan, progress func(done, total int)) ([]revoker.Executed, error) {
	return f.execute(ctx, p, progress)
}

// TestOpenAPIContract checks the handlers against schemas/openapi.json:
// the documented operations are exactly the routes served, with the
// documented scopes, and every documented response of every operation is
// produced here, its status, content type, required headers and body
// matching the document. (Every other test checks its responses too.)
func TestOpenAPIContract(t *testing.T) {
	t.Parallel()
	ck := newChecker(t)
	r := newRig(t)
	s, base := r.start(t, r.config(), nil, ck)

	var served []string
	for _, p := range s.Patterns() {
		served = append(served, p)
		op := ck.c.ops[p]
		if op == nil {
			t.Errorf("route %s is not documented", p)
			continue
		}
		if op.scope != string(s.scopeOf[p]) {
			t.Errorf("%s: documented scope %q, served %q", p, op.scope, s.scopeOf[p])
		}
	}
	for key := range ck.c.ops {
		if !slices.Contains(served, key) {
			t.Errorf("documented operation %s is not served", key)
		}
	}

	user := r.issue(t, "ro", "ent-"+r.tag)
	evID := r.addFinding(t, "f-"+r.tag, "orphan_user", user.Username, time.Now())
	c := r.client(nil)
	ops, dash, writer := r.tokens["ops"], r.tokens["dash"], r.tokens["writer"]
	revoke := mustJSON(t, map[string]any{"db_user": user.Username, "reason": "contract"})
	pendA := r.pend(t, r.issue(t, "ro", "ent-"+r.tag), time.Hour)
	pendB := r.pend(t, r.issue(t, "ro", "ent-"+r.tag), time.Hour)

	// Specific responses, in order (the 201 makes the revocation read
	// later).
	rp := do(t, c, base, call{method: "POST", path: "/v1/revocations", token: ops, body: mustJSON(t, map[string]any{"db_user": user.Username, "reason": "contract", "dry_run": true})})
	expect(t, rp, 200)
	rp = do(t, c, base, call{method: "POST", path: "/v1/revocations", token: ops, body: revoke})
	expect(t, rp, 201)
	var created revocationResponse
	rp.json(t, &created)
	for _, cl := range []struct {
		call
		want int
	}{
		{call{method: "POST", path: "/v1/revocations", token: ops, body: `{"db_user":"x"}`}, 400},
		{call{method: "POST", path: "/v1/revocations", token: ops, body: `{"reason":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`}, 413},
		{call{method: "POST", path: "/v1/revocations", token: ops, body: revoke, contentType: "application/x-www-form-urlencoded"}, 415},
		{call{method: "GET", path: "/v1/revocations/" + created.ID, token: dash}, 200},
		{call{method: "GET", path: "/v1/revocations/" + created.Outcomes[0].CommandID, token: dash}, 200},
		{call{method: "GET", path: "/v1/revocations/-x", token: dash}, 400},
		{call{method: "GET", path: "/v1/revocations/nothing", token: dash}, 404},
		{call{method: "GET", path: "/v1/leases?db_user=" + user.Username, token: dash}, 200},
		{call{method: "GET", path: "/v1/leases?limit=0", token: dash}, 400},
		{call{method: "GET", path: "/v1/findings?limit=1", token: dash}, 200},
		{call{method: "GET", path: "/v1/findings?x=1", token: dash}, 400},
		{call{method: "GET", path: "/v1/evidence/" + evID, token: dash}, 200},
		{call{method: "GET", path: "/v1/evidence/" + created.Outcomes[0].EvidenceID, token: dash}, 200},
		{call{method: "GET", path: "/v1/evidence/-x", token: dash}, 400},
		{call{method: "GET", path: "/v1/evidence/nothing", token: dash}, 404},
		{call{method: "GET", path: "/v1/revocations?state=pending", token: dash}, 200},
		{call{method: "GET", path: "/v1/revocations?state=maybe", token: dash}, 400},
		{call{method: "POST", path: "/v1/revocations/" + pendA + "/approve", token: ops, body: `{"comment":"contract"}`}, 200},
		{call{method: "POST", path: "/v1/revocations/" + pendA + "/reject", token: ops}, 409},
		{call{method: "POST", path: "/v1/revocations/" + pendB + "/reject", token: ops}, 200},
		{call{method: "GET", path: "/v1/scope", token: dash}, 200},
		{call{method: "GET", path: "/v1/scope?history=1", token: dash}, 400},
		{call{method: "POST", path: "/v1/scope/expand", token: ops, body: `{"reason":"contract","add":"db:main"}`}, 201},
		{call{method: "POST", path: "/v1/scope/expand", token: ops, body: `{"add":"*"}`}, 400},
		{call{method: "POST", path: "/v1/scope/expand", token: ops, body: `{"reason":"again","add":"db:main"}`}, 409},
		{call{method: "POST", path: "/v1/scope/expand", token: ops, body: `{"reason":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`}, 413},
		{call{method: "POST", path: "/v1/scope/expand", token: ops, body: "x", contentType: "text/plain"}, 415},
		{call{method: "POST", path: "/v1/scope/rollback", token: ops, body: `{"reason":"contract"}`}, 201},
		{call{method: "POST", path: "/v1/scope/rollback", token: ops, body: `{"reason":"contract","to":99}`}, 400},
		{call{method: "POST", path: "/v1/scope/rollback", token: ops, body: `{"reason":"contract","to":1}`}, 409},
		{call{method: "POST", path: "/v1/scope/rollback", token: ops, body: `{"reason":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`}, 413},
		{call{method: "POST", path: "/v1/scope/rollback", token: ops, body: "x", contentType: "text/plain"}, 415},
		{call{method: "GET", path: "/v1/pilot/report?since=24h", token: dash}, 200},
		{call{method: "GET", path: "/v1/pilot/report?since=yesterday", token: dash}, 400},
	} {
		expect(t, do(t, c, base, cl.call), cl.want)
	}
	for _, verb := range []string{"approve", "reject"} {
		for _, cl := range []struct {
			call
			want int
		}{
			{call{method: "POST", path: "/v1/revocations/" + pendA + "/" + verb, token: ops}, 409},
			{call{method: "POST", path: "/v1/revocations/nothing/" + verb, token: ops}, 404},
			{call{method: "POST", path: "/v1/revocations/-x/" + verb, token: ops}, 400},
			{call{method: "POST", path: "/v1/revocations/" + pendA + "/" + verb, token: ops, body: `{"comment":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`}, 413},
			{call{method: "POST", path: "/v1/revocations/" + pendA + "/" + verb, token: ops, body: "x", contentType: "text/plain"}, 415},
			{call{method: "POST", path: "/v1/revocations/" + pendA + "/" + verb, token: ops, body: `{"note":"x"}`}, 400},
		} {
			expect(t, do(t, c, base, cl.call), cl.want)
		}
	}

	// One request per operation for the generic responses: 401, 403, and
	// 429 from a server allowing one request a minute.
	examples := map[string]call{
		"POST /v1/revocations":              {method: "POST", path: "/v1/revocations", body: revoke},
		"GET /v1/revocations/{id}":          {method: "GET", path: "/v1/revocations/" + created.ID},
		"GET /v1/leases":                    {method: "GET", path: "/v1/leases"},
		"GET /v1/findings":                  {method: "GET", path: "/v1/findings"},
		"GET /v1/evidence/{id}":             {method: "GET", path: "/v1/evidence/" + evID},
		"GET /v1/revocations":               {method: "GET", path: "/v1/revocations?state=pending"},
		"POST /v1/revocations/{id}/approve": {method: "POST", path: "/v1/revocations/" + pendA + "/approve", body: `{"comment":"x"}`},
		"POST /v1/revocations/{id}/reject":  {method: "POST", path: "/v1/revocations/" + pendB + "/reject", body: `{"comment":"x"}`},
		"GET /v1/scope":                     {method: "GET", path: "/v1/scope"},
		"POST /v1/scope/expand":             {method: "POST", path: "/v1/scope/expand", body: `{"reason":"x","add":"db:x"}`},
		"POST /v1/scope/rollback":           {method: "POST", path: "/v1/scope/rollback", body: `{"reason":"x"}`},
		"GET /v1/pilot/report":              {method: "GET", path: "/v1/pilot/report"},
	}
	slowCfg := r.config()
	slowCfg.RatePerMinute = 1
	_, slow := r.start(t, slowCfg, nil, ck)
	expect(t, do(t, c, slow, call{method: "GET", path: "/v1/leases", token: ops}), 200)
	for key, ex := range examples {
		expect(t, do(t, c, base, ex), 401)
		ex.token = writer
		if s.scopeOf[key] == ScopeRevoke {
			ex.token = dash
		}
		expect(t, do(t, c, base, ex), 403)
		ex.token = ops
		expect(t, do(t, c, slow, ex), 429)
	}

	// 500 and 503: a state store that is gone, an operator that fails.
	closed, err := pgxpool.New(context.Background(), pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	fail := errors.New("the target is on fire")
	broken, err := New(Config{Tokens: r.table}, Deps{State: closed, Approvals: fakeApprover{err: fail},
		Rollout: rollout.New(closed, evidence.Builder{Source: "urn:leaseguard:test"}, rollout.Spec{}), Operator: fakeOperator{
			plan: func(_ context.Context, req operator.Request) (operator.Plan, error) {
				if req.Reason == "slow" {
					return operator.Plan{}, fmt.Errorf("read roles: %w", context.DeadlineExceeded)
				}
				return operator.Plan{}, fail
			},
		}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(ck.wrap(broken))
	defer ts.Close()
	for _, ex := range examples {
		ex.token = ops
		expect(t, do(t, ts.Client(), ts.URL, ex), 500)
	}
	expect(t, do(t, ts.Client(), ts.URL, call{method: "POST", path: "/v1/revocations", token: ops, body: `{"db_user":"x","reason":"slow"}`}), 503)
	for _, verb := range []string{"approve", "reject"} {
		expect(t, do(t, ts.Client(), ts.URL, call{method: "POST", path: "/v1/revocations/" + pendA + "/" + verb, token: ops, body: `{"comment":"slow"}`}), 503)
	}
	// No policy recorded yet on this state store: 503 on every rollout route.
	nopolicy, err := New(Config{Tokens: r.table}, Deps{State: r.st.Pool(), Operator: r.svc, Rollout: fakeRollout{err: rollout.ErrNoPolicy}})
	if err != nil {
		t.Fatal(err)
	}
	tn := httptest.NewServer(ck.wrap(nopolicy))
	defer tn.Close()
	for key, ex := range examples {
		if strings.Contains(key, "/scope") || strings.Contains(key, "/pilot/") {
			ex.token = ops
			expect(t, do(t, tn.Client(), tn.URL, ex), 503)
		}
	}
	// A request whose context ends (the client went away, or Shutdown gave
	// up waiting) before the store answers.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for key, ex := range examples {
		if strings.HasPrefix(key, "POST ") {
			continue // runs under the server's context, not the client's
		}
		req := httptest.NewRequestWithContext(gone, ex.method, ex.path, nil)
		req.Header.Set("Authorization", "Bearer "+ops)
		rec := httptest.NewRecorder()
		ck.wrap(s).ServeHTTP(rec, req)
		if rec.Code != 503 {
			t.Errorf("%s with its context ended: %d %s", key, rec.Code, rec.Body)
		}
	}

	if m := ck.missing(); len(m) > 0 {
		t.Errorf("documented responses never produced:\n  %s", strings.Join(m, "\n  "))
	}
}

func expect(t *testing.T, rp reply, code int) {
	t.Helper()
	if rp.code != code {
		t.Errorf("status %d, want %d: %s", rp.code, code, rp.body)
	}
}
