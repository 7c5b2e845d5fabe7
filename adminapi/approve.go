package adminapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/leaseguard/leaseguard/approval"
	"github.com/leaseguard/leaseguard/approval/pending"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
)

// Owner approval over the API: GET /v1/revocations?state=pending lists the
// revocations rules in approve mode hold for an owner (read scope); POST
// /v1/revocations/{id}/approve and …/reject decide one (revoke scope), the
// principal being the approver named in the evidence. A decision on a
// pending revocation that is already decided or expired is a 409.

// Approver decides pending revocations: an *approval.Approvals.
type Approver interface {
	Approve(ctx context.Context, id, actor, comment string) (approval.Decided, error)
	Reject(ctx context.Context, id, actor, comment string) (approval.Decided, error)
}

var _ Approver = (*approval.Approvals)(nil)

// pendingJSON is one pending revocation.
type pendingJSON struct {
	// ID is the id of the command approval executes (the id enforce would
	// have used): GET /v1/revocations/{id} reads its outcome once approved.
	ID          string     `json:"id"`
	State       string     `json:"state"`
	FindingID   string     `json:"finding_id"`
	Rule        string     `json:"rule"`
	Severity    string     `json:"severity"`
	Database    string     `json:"database"`
	DBUser      string     `json:"db_user"`
	LeaseID     string     `json:"lease_id,omitempty"`
	Summary     string     `json:"summary"`
	RequestedAt time.Time  `json:"requested_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	DecidedBy   string     `json:"decided_by,omitempty"`
	DecidedAt   *time.Time `json:"decided_at,omitempty"`
	Comment     string     `json:"comment,omitempty"`
	EvidenceID  string     `json:"evidence_id,omitempty"`
}

func pendingOut(p pending.Revocation) pendingJSON {
	return pendingJSON{ID: p.ID, State: string(p.State), FindingID: p.FindingID, Rule: p.Rule, Severity: string(p.Severity),
		Database: p.Database, DBUser: p.DBUser, LeaseID: p.LeaseID, Summary: p.Summary, RequestedAt: p.RequestedAt.UTC(),
		ExpiresAt: p.ExpiresAt.UTC(), DecidedBy: p.DecidedBy, DecidedAt: utcPtr(p.DecidedAt), Comment: p.Comment,
		EvidenceID: p.EvidenceID}
}

type pendingPage struct {
	Revocations []pendingJSON `json:"revocations"`
	NextCursor  string        `json:"next_cursor,omitempty"`
}

// listPending answers GET /v1/revocations?state=pending (the default
// state; approved, rejected and expired list the decided ones).
func (s *Server) listPending(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "state", "limit", "cursor")
	if err != nil {
		s.clientError(w, err)
		return
	}
	p := pending.Page{State: schemas.ApprovalState(q.get("state"))}
	switch p.State {
	case "":
		p.State = schemas.ApprovalPending
	case schemas.ApprovalPending, schemas.ApprovalApproved, schemas.ApprovalRejected, schemas.ApprovalExpired:
	default:
		writeError(w, http.StatusBadRequest, "state %q: want pending, approved, rejected or expired", p.State)
		return
	}
	limit, err := q.limit()
	if err != nil {
		s.clientError(w, err)
		return
	}
	if c := q.get("cursor"); c != "" {
		if p.AfterTime, p.AfterID, err = decodeTimeCursor(c); err != nil {
			s.clientError(w, err)
			return
		}
	}
	p.Limit = limit + 1
	ps, err := pending.List(r.Context(), s.d.State, p)
	if err != nil {
		s.operatorError(w, "list pending revocations", err)
		return
	}
	page := pendingPage{Revocations: make([]pendingJSON, 0, min(len(ps), limit))}
	if len(ps) > limit {
		ps = ps[:limit]
		last := ps[limit-1]
		page.NextCursor = encodeTimeCursor(last.RequestedAt, last.ID)
	}
	for _, x := range ps {
		page.Revocations = append(page.Revocations, pendingOut(x))
	}
	writeJSON(w, http.StatusOK, page)
}

// decisionRequest is the optional body of approve and reject.
type decisionRequest struct {
	// Comment is recorded with the decision and in its evidence.
	Comment string `json:"comment"`
}

// decisionResponse answers approve and reject: the pending revocation as
// decided and, for an approval, the outcome of its command.
type decisionResponse struct {
	pendingJSON
	Outcome *outcome `json:"outcome,omitempty"`
}

func (s *Server) approvePending(w http.ResponseWriter, r *http.Request) {
	s.decidePending(w, r, schemas.ApprovalApproved)
}

func (s *Server) rejectPending(w http.ResponseWriter, r *http.Request) {
	s.decidePending(w, r, schemas.ApprovalRejected)
}

func (s *Server) decidePending(w http.ResponseWriter, r *http.Request, decision schemas.ApprovalState) {
	p, _ := principalFrom(r.Context())
	id := r.PathValue("id")
	if !idRE.MatchString(id) {
		writeError(w, http.StatusBadRequest, "id %q: use 1 to 128 letters, digits, '.', '_', ':' or '-'", id)
		return
	}
	var body decisionRequest
	if r.ContentLength != 0 { // no body: no comment
		if err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
			s.clientError(w, err)
			return
		}
	}
	if s.d.Approvals == nil {
		writeError(w, http.StatusServiceUnavailable, "owner approval is not available on this server")
		return
	}
	ctx, done, ok := s.detach(w)
	if !ok {
		return
	}
	defer done()
	var res approval.Decided
	var err error
	if decision == schemas.ApprovalApproved {
		res, err = s.d.Approvals.Approve(ctx, id, p.Name, body.Comment)
	} else {
		res, err = s.d.Approvals.Reject(ctx, id, p.Name, body.Comment)
	}
	switch {
	case errors.Is(err, pending.ErrNotFound):
		writeError(w, http.StatusNotFound, "no pending revocation %q", id)
		return
	case errors.Is(err, approval.ErrAlreadyDecided), errors.Is(err, approval.ErrApprovalExpired):
		s.d.Logger.Info("admin api decision refused", "id", id, "principal", p.Name, "decision", decision, "err", err)
		writeError(w, http.StatusConflict, "%s", err)
		return
	case err != nil:
		s.operatorError(w, string(decision), err)
		return
	}
	resp := decisionResponse{pendingJSON: pendingOut(res.Pending)}
	if res.Executed != nil {
		outs, err := s.executedOutcomes(context.WithoutCancel(ctx), []revoker.Executed{*res.Executed})
		if err != nil {
			s.operatorError(w, "read outcome", err)
			return
		}
		resp.Outcome = &outs[0]
	}
	s.d.Logger.Info("admin api pending revocation decided", "id", id, "principal", p.Name, "decision", decision)
	writeJSON(w, http.StatusOK, resp)
}
