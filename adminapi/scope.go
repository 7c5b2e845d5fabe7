package adminapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/leaseguard/leaseguard/rollout"
)

// Safe rollout over the API (package rollout): GET /v1/scope shows the
// enforcement policy in force, the configured one and the latest versions
// (read scope); POST /v1/scope/expand and /v1/scope/rollback change it
// (revoke scope, a reason required, the principal the actor in its
// evidence); GET /v1/pilot/report summarises a pilot window (read scope).

// Rollout is the enforcement policy: a *rollout.Policies.
type Rollout interface {
	Overview(ctx context.Context, limit int) (rollout.Overview, error)
	Expand(ctx context.Context, e rollout.Expand) (rollout.Record, error)
	Rollback(ctx context.Context, r rollout.Rollback) (rollout.Record, error)
	Report(ctx context.Context, cfg rollout.ReportConfig) (rollout.Report, error)
}

var _ Rollout = (*rollout.Policies)(nil)

// historyShown is how many versions GET /v1/scope lists.
const historyShown = 20

// maxReportWindow bounds a report's window (exception hits are kept 90
// days).
const maxReportWindow = 90 * 24 * time.Hour

// expandRequest is the body of POST /v1/scope/expand.
type expandRequest struct {
	Reason        string `json:"reason"`
	Add           string `json:"add"`
	Modes         string `json:"modes"`
	ExpectVersion int64  `json:"expect_version"`
}

// rollbackRequest is the body of POST /v1/scope/rollback: to a version
// (0: the one before the version in force) or to the configuration.
type rollbackRequest struct {
	Reason          string `json:"reason"`
	To              int64  `json:"to"`
	ToConfiguration bool   `json:"to_configuration"`
	ExpectVersion   int64  `json:"expect_version"`
}

func (s *Server) getScope(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.clientError(w, err)
		return
	}
	if s.d.Rollout == nil {
		writeError(w, http.StatusServiceUnavailable, "the enforcement policy is not available on this server")
		return
	}
	o, err := s.d.Rollout.Overview(r.Context(), historyShown)
	if err != nil {
		s.rolloutError(w, "read the enforcement policy", err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) expandScope(w http.ResponseWriter, r *http.Request) {
	var body expandRequest
	if err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		s.clientError(w, err)
		return
	}
	s.changeScope(w, r, "expand", func(ctx context.Context, actor string) (rollout.Record, error) {
		return s.d.Rollout.Expand(ctx, rollout.Expand{Actor: actor, Reason: body.Reason, Add: body.Add, Modes: body.Modes,
			ExpectVersion: body.ExpectVersion})
	})
}

func (s *Server) rollbackScope(w http.ResponseWriter, r *http.Request) {
	var body rollbackRequest
	if err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		s.clientError(w, err)
		return
	}
	s.changeScope(w, r, "rollback", func(ctx context.Context, actor string) (rollout.Record, error) {
		return s.d.Rollout.Rollback(ctx, rollout.Rollback{Actor: actor, Reason: body.Reason, To: body.To,
			ToConfiguration: body.ToConfiguration, ExpectVersion: body.ExpectVersion})
	})
}

// changeScope records a change with the principal as its actor. Like a
// revocation it runs under the server's context: once started, it commits
// or not whether or not the client waits.
func (s *Server) changeScope(w http.ResponseWriter, r *http.Request, verb string,
	change func(ctx context.Context, actor string) (rollout.Record, error)) {
	p, _ := principalFrom(r.Context())
	if s.d.Rollout == nil {
		writeError(w, http.StatusServiceUnavailable, "the enforcement policy is not available on this server")
		return
	}
	ctx, done, ok := s.detach(w)
	if !ok {
		return
	}
	defer done()
	rec, err := change(ctx, p.Name)
	if err != nil {
		s.d.Logger.Info("admin api policy change refused", "verb", verb, "principal", p.Name, "err", err)
		s.rolloutError(w, verb, err)
		return
	}
	s.d.Logger.Warn("enforcement policy changed", "verb", verb, "principal", p.Name, "version", rec.Version,
		"scope", rec.Scope.String(), "reason", rec.Reason)
	writeJSON(w, http.StatusCreated, rec.View())
}

func (s *Server) pilotReport(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "since", "until")
	if err != nil {
		s.clientError(w, err)
		return
	}
	now := s.d.Clock()
	cfg, err := reportWindow(q.get("since"), q.get("until"), now)
	if err != nil {
		s.clientError(w, err)
		return
	}
	if s.d.Rollout == nil {
		writeError(w, http.StatusServiceUnavailable, "the enforcement policy is not available on this server")
		return
	}
	rep, err := s.d.Rollout.Report(r.Context(), cfg)
	if err != nil {
		s.rolloutError(w, "pilot report", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// reportWindow reads since (a duration back from now, e.g. 24h, or an RFC
// 3339 time; default 24h) and until (RFC 3339; default now).
func reportWindow(since, until string, now time.Time) (rollout.ReportConfig, error) {
	cfg := rollout.ReportConfig{Until: now}
	if until != "" {
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return cfg, badRequest("until %q: want an RFC 3339 time", until)
		}
		cfg.Until = t
	}
	from, err := rollout.ParseSince(since, cfg.Until)
	if err != nil {
		return cfg, badRequest("%s", err)
	}
	cfg.Since = from
	if !cfg.Since.Before(cfg.Until) || cfg.Until.Sub(cfg.Since) > maxReportWindow {
		return cfg, badRequest("the window %s to %s must be positive and at most %s", cfg.Since.Format(time.RFC3339),
			cfg.Until.Format(time.RFC3339), maxReportWindow)
	}
	return cfg, nil
}

// rolloutError answers an error of the policy store: 400 for an invalid
// change or an unknown version, 409 when it changes nothing or another
// change came first, 503 when there is no policy yet or time ran out,
// else 500.
func (s *Server) rolloutError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, rollout.ErrInvalid), errors.Is(err, rollout.ErrUnknownVersion):
		writeError(w, http.StatusBadRequest, "%s", err)
	case errors.Is(err, rollout.ErrNothingChanges), errors.Is(err, rollout.ErrConflict):
		writeError(w, http.StatusConflict, "%s", err)
	case errors.Is(err, rollout.ErrNoPolicy):
		writeError(w, http.StatusServiceUnavailable, "%s: start leaseguard run once, or run leaseguard scope", err)
	default:
		s.operatorError(w, what, err)
	}
}
