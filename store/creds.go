package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// CredsRecord is one audit entry of a <mount>/creds/<role> request: the
// request entry (Response false) or its response entry (Response true, with
// Error when the response is an error, and LeaseID when a lease was issued).
type CredsRecord struct {
	RequestID string
	// Path is request.path as logged, relative to the namespace.
	Path string
	// Mount is the mount point relative to the namespace, without the
	// trailing slash ("postgres").
	Mount string
	Role  string
	// Namespace is namespace.path as logged ("team-a/"), "" for root.
	Namespace     string
	EntityID      string
	TokenAccessor string
	DisplayName   string
	// RemoteAddress is the client address without a port.
	RemoteAddress string
	// Time is the audit entry's time.
	Time time.Time
	// Response is false for the request entry, true for the response entry.
	Response bool
	// Error is true when the entry carries an error.
	Error bool
	// LeaseID is the issued lease, on a successful response.
	LeaseID string
}

// credsRow is a creds_requests row being merged. Both entries of a request
// carry the request fields; the first non-empty value is kept (they agree).
// Times merge by least, response_error by or: any order gives one row.
type credsRow struct {
	RequestID, Path, Mount, Role, Namespace, EntityID, TokenAccessor, DisplayName, RemoteAddress string
	RequestedAt, RespondedAt                                                                     *time.Time
	ResponseError                                                                                *bool
	LeaseID                                                                                      string
}

func (r *credsRow) merge(c *CredsRecord) {
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&r.Path, c.Path}, {&r.Mount, c.Mount}, {&r.Role, c.Role}, {&r.Namespace, c.Namespace},
		{&r.EntityID, c.EntityID}, {&r.TokenAccessor, c.TokenAccessor}, {&r.DisplayName, c.DisplayName},
		{&r.RemoteAddress, c.RemoteAddress}, {&r.LeaseID, c.LeaseID},
	} {
		if *f.dst == "" {
			*f.dst = f.src
		}
	}
	t := dbTime(c.Time)
	if !c.Response {
		r.RequestedAt = earliest(r.RequestedAt, t)
		return
	}
	r.RespondedAt = earliest(r.RespondedAt, t)
	e := c.Error
	if r.ResponseError != nil {
		e = e || *r.ResponseError
	}
	r.ResponseError = &e
}

// mergeCreds validates cs and merges them into one row per request id,
// sorted by request id (the lock order of the upsert).
func mergeCreds(cs []CredsRecord) ([]credsRow, error) {
	byID := map[string]*credsRow{}
	for i := range cs {
		c := &cs[i]
		switch {
		case c.RequestID == "":
			return nil, &InvalidError{Field: "Creds", Index: i, Err: errors.New("request id is missing")}
		case c.Time.IsZero():
			return nil, &InvalidError{Field: "Creds", Index: i, Err: errors.New("time is missing")}
		}
		r := byID[c.RequestID]
		if r == nil {
			r = &credsRow{RequestID: c.RequestID}
			byID[c.RequestID] = r
		}
		r.merge(c)
	}
	out := make([]credsRow, 0, len(byID))
	for _, r := range byID {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RequestID < out[j].RequestID })
	return out, nil
}

// queueCredsUpsert merges rows into creds_requests with the same rules as
// credsRow.merge.
func queueCredsUpsert(b *pgx.Batch, rows []credsRow) {
	n := len(rows)
	cols := make([][]string, 10)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	req, resp := make([]*time.Time, n), make([]*time.Time, n)
	errs := make([]*bool, n)
	for i, r := range rows {
		for j, v := range []string{r.RequestID, r.Path, r.Mount, r.Role, r.Namespace, r.EntityID,
			r.TokenAccessor, r.DisplayName, r.RemoteAddress, r.LeaseID} {
			cols[j][i] = v
		}
		req[i], resp[i], errs[i] = r.RequestedAt, r.RespondedAt, r.ResponseError
	}
	b.Queue(`INSERT INTO creds_requests AS c (request_id, path, mount, role, namespace, entity_id,
			token_accessor, display_name, remote_address, lease_id, requested_at, responded_at, response_error)
		SELECT id, NULLIF(p, ''), NULLIF(m, ''), NULLIF(ro, ''), NULLIF(ns, ''), NULLIF(ent, ''),
			NULLIF(acc, ''), NULLIF(dn, ''), NULLIF(ra, ''), NULLIF(l, ''), rq, rs, er
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::bool[])
			AS x(id, p, m, ro, ns, ent, acc, dn, ra, l, rq, rs, er)
		ORDER BY id
		ON CONFLICT (request_id) DO UPDATE SET
			path           = COALESCE(c.path, EXCLUDED.path),
			mount          = COALESCE(c.mount, EXCLUDED.mount),
			role           = COALESCE(c.role, EXCLUDED.role),
			namespace      = COALESCE(c.namespace, EXCLUDED.namespace),
			entity_id      = COALESCE(c.entity_id, EXCLUDED.entity_id),
			token_accessor = COALESCE(c.token_accessor, EXCLUDED.token_accessor),
			display_name   = COALESCE(c.display_name, EXCLUDED.display_name),
			remote_address = COALESCE(c.remote_address, EXCLUDED.remote_address),
			lease_id       = COALESCE(c.lease_id, EXCLUDED.lease_id),
			requested_at   = LEAST(c.requested_at, EXCLUDED.requested_at),
			responded_at   = LEAST(c.responded_at, EXCLUDED.responded_at),
			response_error = COALESCE(c.response_error OR EXCLUDED.response_error, c.response_error, EXCLUDED.response_error)`,
		cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9], req, resp, errs)
}

// UnansweredCredsRequests returns creds requests logged before olderThan
// that have no response entry yet, oldest first: the request entry was
// written, the response never was (the client got an error while the
// backend may have created a user).
func (s *Store) UnansweredCredsRequests(ctx context.Context, olderThan time.Time, limit int) ([]CredsRecord, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.pool.Query(ctx, `SELECT request_id, COALESCE(path, ''), COALESCE(mount, ''),
			COALESCE(role, ''), COALESCE(namespace, ''), COALESCE(entity_id, ''),
			COALESCE(token_accessor, ''), COALESCE(display_name, ''), COALESCE(remote_address, ''),
			requested_at
		FROM creds_requests
		WHERE responded_at IS NULL AND requested_at < $1
		ORDER BY requested_at, request_id
		LIMIT $2`, olderThan, limit)
	if err != nil {
		return nil, fmt.Errorf("unanswered creds requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanCredsRecord)
	if err != nil {
		return nil, fmt.Errorf("unanswered creds requests: %w", err)
	}
	return out, nil
}

// scanCredsRecord reads one creds_requests row selected with the columns
// RequestID, Path, Mount, Role, Namespace, EntityID, TokenAccessor,
// DisplayName, RemoteAddress and Time, in that order.
func scanCredsRecord(r pgx.CollectableRow) (CredsRecord, error) {
	var c CredsRecord
	err := r.Scan(&c.RequestID, &c.Path, &c.Mount, &c.Role, &c.Namespace, &c.EntityID,
		&c.TokenAccessor, &c.DisplayName, &c.RemoteAddress, &c.Time)
	c.Time = c.Time.UTC()
	return c, err
}
