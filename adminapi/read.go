package adminapi

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Paging of the list endpoints.
const (
	defaultLimit = 100
	maxLimit     = 500
)

// query reads a request's query parameters strictly: each known at most
// once, unknown ones refused (a misspelt filter must not return
// everything), values plain text.
type query struct {
	v url.Values
}

func parseQuery(r *http.Request, known ...string) (*query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("the query string is malformed")
	}
	for k, vs := range v {
		if !slices.Contains(known, k) {
			return nil, badRequest("unknown query parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return nil, badRequest("query parameter %q is given %d times", k, len(vs))
		}
		if s := vs[0]; len(s) > 1024 || !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
			return nil, badRequest("query parameter %q: want plain text of at most 1024 bytes", k)
		}
	}
	return &query{v: v}, nil
}

func (q *query) get(k string) string { return q.v.Get(k) }

// limit is the limit parameter: 1 to maxLimit, default defaultLimit.
func (q *query) limit() (int, error) {
	s := q.v.Get("limit")
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, badRequest("limit %q: want 1 to %d", s, maxLimit)
	}
	return n, nil
}

// Cursors are opaque to clients: base64url of the paging key.
func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// encodeTimeCursor is the cursor of a page ordered by (time, id).
func encodeTimeCursor(at time.Time, id string) string {
	return encodeCursor(at.UTC().Format(time.RFC3339Nano) + "|" + id)
}

// decodeTimeCursor reads a cursor of encodeTimeCursor.
func decodeTimeCursor(c string) (time.Time, string, error) {
	key, err := decodeCursor(c)
	if err != nil {
		return time.Time{}, "", err
	}
	ts, id, ok := strings.Cut(key, "|")
	at, terr := time.Parse(time.RFC3339Nano, ts)
	if !ok || id == "" || terr != nil {
		return time.Time{}, "", badRequest("cursor is not one this API returned")
	}
	return at, id, nil
}

func decodeCursor(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !utf8.Valid(b) {
		return "", badRequest("cursor is not one this API returned")
	}
	return string(b), nil
}

// leaseJSON is one lease of the ledger. Empty and null fields are unknown.
type leaseJSON struct {
	LeaseID       string     `json:"lease_id"`
	State         string     `json:"state"`
	Mount         string     `json:"mount,omitempty"`
	Role          string     `json:"role,omitempty"`
	Namespace     string     `json:"namespace,omitempty"`
	Database      string     `json:"database,omitempty"`
	DBUser        string     `json:"db_user,omitempty"`
	DBUserHMAC    bool       `json:"db_user_hmac"`
	IssuedAt      *time.Time `json:"issued_at,omitempty"`
	RenewedAt     *time.Time `json:"renewed_at,omitempty"`
	FirstSeenAt   *time.Time `json:"first_seen_at,omitempty"`
	ExpireAt      *time.Time `json:"expire_at,omitempty"`
	ExpireSource  string     `json:"expire_source,omitempty"`
	TTLSeconds    *int64     `json:"ttl_seconds,omitempty"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	RevokeMethod  string     `json:"revoke_method,omitempty"`
	LastEvent     string     `json:"last_event,omitempty"`
	LastEventAt   *time.Time `json:"last_event_at,omitempty"`
	LastRequestID string     `json:"last_request_id,omitempty"`
	EntityID      string     `json:"entity_id,omitempty"`
	TokenAccessor string     `json:"token_accessor,omitempty"`
	DisplayName   string     `json:"display_name,omitempty"`
	RemoteAddress string     `json:"remote_address,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

func leaseOut(l store.Lease) leaseJSON {
	return leaseJSON{
		LeaseID: l.LeaseID, State: string(l.State), Mount: l.Mount, Role: l.Role, Namespace: l.Namespace,
		Database: l.Database, DBUser: l.DBUser, DBUserHMAC: l.DBUserHMAC, IssuedAt: l.IssuedAt, RenewedAt: l.RenewedAt,
		FirstSeenAt: l.FirstSeenAt, ExpireAt: l.ExpireAt, ExpireSource: string(l.ExpireSource), TTLSeconds: l.TTLSeconds,
		RevokedAt: l.RevokedAt, RevokeMethod: string(l.RevokeMethod), LastEvent: string(l.LastEvent),
		LastEventAt: l.LastEventAt, LastRequestID: l.LastRequestID, EntityID: l.EntityID, TokenAccessor: l.TokenAccessor,
		DisplayName: l.DisplayName, RemoteAddress: l.RemoteAddress, CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt,
	}
}

type leasePage struct {
	Leases     []leaseJSON `json:"leases"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

func (s *Server) listLeases(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "state", "db_user", "entity_id", "database", "limit", "cursor")
	if err != nil {
		s.clientError(w, err)
		return
	}
	p := store.LeasePage{State: store.LeaseState(q.get("state")), DBUser: q.get("db_user"),
		EntityID: q.get("entity_id"), Database: q.get("database")}
	switch p.State {
	case "", store.StateActive, store.StateExpired, store.StateRevoked:
	default:
		writeError(w, http.StatusBadRequest, "state %q: want active, expired or revoked", p.State)
		return
	}
	limit, err := q.limit()
	if err != nil {
		s.clientError(w, err)
		return
	}
	if c := q.get("cursor"); c != "" {
		if p.After, err = decodeCursor(c); err != nil {
			s.clientError(w, err)
			return
		}
	}
	p.Limit = limit + 1
	ls, err := store.ListLeases(r.Context(), s.d.State, p)
	if err != nil {
		s.operatorError(w, "list leases", err)
		return
	}
	page := leasePage{Leases: make([]leaseJSON, 0, min(len(ls), limit))}
	if len(ls) > limit {
		ls = ls[:limit]
		page.NextCursor = encodeCursor(ls[limit-1].LeaseID)
	}
	for _, l := range ls {
		page.Leases = append(page.Leases, leaseOut(l))
	}
	writeJSON(w, http.StatusOK, page)
}

// findingJSON is a finding as the detectors recorded it, and the id of its
// evidence event.
type findingJSON struct {
	schemas.Finding
	EvidenceID string `json:"evidence_id,omitempty"`
}

type findingPage struct {
	Findings   []findingJSON `json:"findings"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

func (s *Server) listFindings(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "rule", "db_user", "database", "limit", "cursor")
	if err != nil {
		s.clientError(w, err)
		return
	}
	p := store.FindingPage{Rule: q.get("rule"), DBUser: q.get("db_user"), Database: q.get("database")}
	limit, err := q.limit()
	if err != nil {
		s.clientError(w, err)
		return
	}
	if c := q.get("cursor"); c != "" {
		if p.BeforeTime, p.BeforeID, err = decodeTimeCursor(c); err != nil {
			s.clientError(w, err)
			return
		}
	}
	p.Limit = limit + 1
	fs, err := store.ListFindings(r.Context(), s.d.State, p)
	if err != nil {
		s.operatorError(w, "list findings", err)
		return
	}
	page := findingPage{Findings: make([]findingJSON, 0, min(len(fs), limit))}
	if len(fs) > limit {
		fs = fs[:limit]
		last := fs[limit-1]
		page.NextCursor = encodeTimeCursor(last.DetectedAt, last.Finding.ID)
	}
	for _, f := range fs {
		page.Findings = append(page.Findings, findingJSON{Finding: f.Finding, EvidenceID: f.EvidenceID})
	}
	writeJSON(w, http.StatusOK, page)
}

// getEvidence returns one evidence event exactly as stored in the outbox,
// the bytes its chain hash covers.
func (s *Server) getEvidence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !idRE.MatchString(id) {
		writeError(w, http.StatusBadRequest, "id %q: not an evidence id", id)
		return
	}
	raw, err := evidence.RawEvent(r.Context(), s.d.State, id)
	if errors.Is(err, evidence.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no evidence event %q", id)
		return
	}
	if err != nil {
		s.operatorError(w, "read evidence", err)
		return
	}
	w.Header().Set("Content-Type", evidence.ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw)
}
