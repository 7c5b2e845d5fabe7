package adminapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/leaseguard/leaseguard/operator"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// revocationRequest is the body of POST /v1/revocations: exactly one
// selector, the reason, and the options of `leaseguard revoke`.
type revocationRequest struct {
	DBUser        string `json:"db_user"`
	LeaseID       string `json:"lease_id"`
	Prefix        string `json:"prefix"`
	EntityID      string `json:"entity_id"`
	TokenAccessor string `json:"token_accessor"`
	AllManaged    bool   `json:"all_managed"`
	Database      string `json:"database"`
	Reason        string `json:"reason"`
	Emergency     bool   `json:"emergency"`
	DryRun        bool   `json:"dry_run"`
	// RequestID repeats an earlier request (same reason, same principal)
	// to resume it without acting twice; empty makes a new one.
	RequestID string `json:"request_id"`
}

type selectorJSON struct {
	Kind     string `json:"kind"`
	Value    string `json:"value,omitempty"`
	Database string `json:"database,omitempty"`
}

type planItem struct {
	Expect string `json:"expect"`
	operator.Item
}

// revocationResponse answers POST /v1/revocations: the plan and, unless it
// is a dry run, the outcome of each planned item.
type revocationResponse struct {
	// ID is the request id: GET /v1/revocations/{id} reads its outcomes,
	// and posting it again as request_id resumes the request.
	ID        string             `json:"id"`
	Actor     string             `json:"actor"`
	Reason    string             `json:"reason"`
	Selector  selectorJSON       `json:"selector"`
	Emergency bool               `json:"emergency"`
	DryRun    bool               `json:"dry_run"`
	PlannedAt time.Time          `json:"planned_at"`
	Items     []planItem         `json:"items"`
	Skipped   []operator.Skipped `json:"skipped"`
	Warnings  []string           `json:"warnings"`
	Matched   int                `json:"matched"`
	Gone      int                `json:"gone"`
	Unmanaged int                `json:"unmanaged"`
	Outcomes  []outcome          `json:"outcomes"`
	// Complete: every item has a recorded outcome (false for a dry run).
	Complete bool `json:"complete"`
	// AllGone: every selected user is verifiably gone, nothing was skipped
	// (false for a dry run).
	AllGone bool `json:"all_gone"`
	// Interrupted says why the execution stopped early, if it did: post
	// the same request with this id as request_id to finish it.
	Interrupted string `json:"interrupted,omitempty"`
}

// outcome is what became of one revocation command.
type outcome struct {
	CommandID string `json:"command_id"`
	Database  string `json:"database"`
	DBUser    string `json:"db_user"`
	LeaseID   string `json:"lease_id,omitempty"`
	Rule      string `json:"rule"`
	Actor     string `json:"actor,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Emergency bool   `json:"emergency"`
	// State is done (outcome recorded), in_progress (claimed, no outcome
	// yet) or not_recorded (this call could not record it).
	State              string     `json:"state"`
	Outcome            string     `json:"outcome,omitempty"`
	Guard              string     `json:"guard,omitempty"`
	Detail             string     `json:"detail,omitempty"`
	SessionsTerminated int        `json:"sessions_terminated"`
	Duplicate          bool       `json:"duplicate,omitempty"`
	Gone               bool       `json:"gone"`
	EvidenceID         string     `json:"evidence_id,omitempty"`
	FinishedAt         *time.Time `json:"finished_at,omitempty"`
}

const (
	stateDone        = "done"
	stateInProgress  = "in_progress"
	stateNotRecorded = "not_recorded"
)

func (s *Server) postRevocation(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	var body revocationRequest
	if err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		s.clientError(w, err)
		return
	}
	req := operator.Request{
		Selector: operator.Selector{DBUser: body.DBUser, LeaseID: body.LeaseID, Prefix: body.Prefix, EntityID: body.EntityID,
			TokenAccessor: body.TokenAccessor, AllManaged: body.AllManaged, Database: body.Database},
		Reason: body.Reason, Actor: p.Name, Emergency: body.Emergency, DryRun: body.DryRun, RequestID: body.RequestID,
	}
	if err := req.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "%s", err)
		return
	}
	ctx, done, ok := s.detach(w)
	if !ok {
		return
	}
	defer done()

	plan, err := s.d.Operator.Plan(ctx, req)
	if err != nil {
		s.operatorError(w, "plan", err)
		return
	}
	resp := planResponse(plan)
	if req.DryRun || len(plan.Items) == 0 {
		// As `leaseguard revoke` judges it: nothing left to drop is clean
		// unless live leases were skipped, or a ledger selector matched no
		// lease at all (then nobody can tell whether its users are gone).
		kind := req.Kind()
		resp.AllGone = !req.DryRun && len(plan.Skipped) == 0 &&
			(plan.Matched > 0 || kind == operator.KindDBUser || kind == operator.KindAllManaged)
		s.d.Logger.Info("admin api revocation planned", "request_id", plan.Request.RequestID, "actor", p.Name,
			"selector", req.Kind(), "value", req.Value(), "items", len(plan.Items), "dry_run", req.DryRun)
		writeJSON(w, http.StatusOK, resp)
		return
	}
	results, runErr := s.d.Operator.Execute(ctx, plan, nil)
	if results == nil && runErr != nil {
		s.operatorError(w, "execute", runErr)
		return
	}
	if runErr != nil {
		resp.Interrupted = runErr.Error()
	}
	resp.Outcomes, err = s.executedOutcomes(context.WithoutCancel(ctx), results)
	if err != nil {
		s.operatorError(w, "read outcomes", err)
		return
	}
	resp.Complete = runErr == nil
	resp.AllGone = len(plan.Skipped) == 0
	for _, o := range resp.Outcomes {
		resp.Complete = resp.Complete && o.State == stateDone
		resp.AllGone = resp.AllGone && o.Gone
	}
	s.d.Logger.Info("admin api revocation executed", "request_id", plan.Request.RequestID, "actor", p.Name,
		"selector", req.Kind(), "value", req.Value(), "items", len(plan.Items), "complete", resp.Complete, "all_gone", resp.AllGone)
	w.Header().Set("Location", "/v1/revocations/"+plan.Request.RequestID)
	writeJSON(w, http.StatusCreated, resp)
}

func planResponse(plan operator.Plan) revocationResponse {
	req := plan.Request
	resp := revocationResponse{
		ID: req.RequestID, Actor: req.Actor, Reason: req.Reason,
		Selector:  selectorJSON{Kind: req.Kind(), Value: req.Value(), Database: req.Database},
		Emergency: req.Emergency, DryRun: req.DryRun, PlannedAt: plan.PlannedAt,
		Items: make([]planItem, len(plan.Items)), Skipped: plan.Skipped, Warnings: plan.Warnings,
		Matched: plan.Matched, Gone: plan.Gone, Unmanaged: plan.Unmanaged, Outcomes: []outcome{},
	}
	for i, it := range plan.Items {
		resp.Items[i] = planItem{Expect: it.Expect(), Item: it}
	}
	if resp.Skipped == nil {
		resp.Skipped = []operator.Skipped{}
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	return resp
}

// executedOutcomes turns Execute's results into outcomes, with the
// evidence id and finish time of those recorded.
func (s *Server) executedOutcomes(ctx context.Context, results []revoker.Executed) ([]outcome, error) {
	var ids []string
	for _, x := range results {
		if x.Recorded {
			ids = append(ids, x.Command.ID)
		}
	}
	recorded := map[string]store.CommandRecord{}
	if len(ids) > 0 {
		recs, err := store.RevocationsByCommandIDs(ctx, s.d.State, ids)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			recorded[rec.CommandID] = rec
		}
	}
	out := make([]outcome, len(results))
	for i, x := range results {
		c := x.Command
		o := outcome{CommandID: c.ID, Database: c.Database, DBUser: c.DBUser, LeaseID: c.LeaseID, Rule: c.Rule,
			Actor: c.Actor, Reason: c.Reason, Emergency: c.Emergency, State: stateNotRecorded, Duplicate: x.Duplicate}
		if x.Recorded {
			o.State, o.Outcome, o.Guard, o.Detail = stateDone, string(x.Result.Outcome), x.Result.Guard, x.Result.Reason
			o.SessionsTerminated = x.Result.SessionsTerminated
			o.Gone = operator.Gone(x)
			if rec, ok := recorded[c.ID]; ok {
				o.EvidenceID, o.FinishedAt = rec.EvidenceID, utcPtr(rec.FinishedAt)
			}
		} else if x.Err != nil {
			o.Detail = x.Err.Error()
		}
		out[i] = o
	}
	return out, nil
}

// revocationStatus answers GET /v1/revocations/{id}.
type revocationStatus struct {
	ID       string    `json:"id"`
	Outcomes []outcome `json:"outcomes"`
	// Complete: every command has a recorded outcome.
	Complete bool `json:"complete"`
	// AllGone: every command's user is verifiably gone.
	AllGone bool `json:"all_gone"`
}

// idRE is what request ids, command ids and evidence ids look like (request
// ids as operator.Request accepts them).
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// getRevocation reads the commands of an operator request (by its request
// id, from the CLI or this API) or one command (by command id, of any
// rule), and their outcomes.
func (s *Server) getRevocation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !idRE.MatchString(id) {
		writeError(w, http.StatusBadRequest, "id %q: use 1 to 128 letters, digits, '.', '_', ':' or '-'", id)
		return
	}
	ctx := r.Context()
	// Operator command ids are derived from the request id and recorded
	// with the other parts, so the request's commands are found by
	// deriving each recorded operator command's id again.
	keys, err := store.CommandKeysOfRule(ctx, s.d.State, operator.RuleOperatorRevoke)
	if err != nil {
		s.operatorError(w, "read revocations", err)
		return
	}
	ids := []string{id}
	for _, k := range keys {
		if k.CommandID != id && operator.CommandID(id, k.Database, k.DBUser, k.LeaseID, k.Reason, k.Actor) == k.CommandID {
			ids = append(ids, k.CommandID)
		}
	}
	recs, err := store.RevocationsByCommandIDs(ctx, s.d.State, ids)
	if err != nil {
		s.operatorError(w, "read revocations", err)
		return
	}
	if len(recs) == 0 {
		writeError(w, http.StatusNotFound, "no revocation request or command %q", id)
		return
	}
	resp := revocationStatus{ID: id, Outcomes: make([]outcome, len(recs)), Complete: true, AllGone: true}
	for i, rec := range recs {
		o := recordOutcome(rec)
		resp.Outcomes[i] = o
		resp.Complete = resp.Complete && o.State == stateDone
		resp.AllGone = resp.AllGone && o.Gone
	}
	writeJSON(w, http.StatusOK, resp)
}

func recordOutcome(rec store.CommandRecord) outcome {
	c := rec.Command
	o := outcome{CommandID: rec.CommandID, Database: rec.Database, DBUser: rec.DBUser, LeaseID: rec.LeaseID, Rule: rec.Rule,
		Actor: c.Actor, Reason: c.Reason, Emergency: c.Emergency, State: rec.State, Outcome: string(rec.Outcome),
		EvidenceID: rec.EvidenceID, FinishedAt: utcPtr(rec.FinishedAt)}
	if rec.Result != nil {
		o.Guard, o.Detail, o.SessionsTerminated = rec.Result.Guard, rec.Result.Reason, rec.Result.SessionsTerminated
	}
	o.Gone = rec.State == stateDone && (rec.Outcome == schemas.OutcomeDropped || rec.Outcome == schemas.OutcomeAlreadyAbsent)
	return o
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// clientError answers a requestError with its status, anything else 400.
func (s *Server) clientError(w http.ResponseWriter, err error) {
	var re *requestError
	if errors.As(err, &re) {
		writeError(w, re.code, "%s", re.msg)
		return
	}
	writeError(w, http.StatusBadRequest, "%s", err)
}

// operatorError answers an error of the operator or the store: 400 for an
// invalid request, 503 when the request ran out of time, else 500 (the
// detail goes to the log only).
func (s *Server) operatorError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, operator.ErrInvalid):
		writeError(w, http.StatusBadRequest, "%s", err)
		return
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		s.d.Logger.Warn("admin api request ran out of time", "step", what, "err", err)
		writeError(w, http.StatusServiceUnavailable, "%s: the request ran out of time or the server is shutting down", what)
		return
	}
	s.d.Logger.Error("admin api request failed", "step", what, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error (%s); the server log has the detail", what)
}
