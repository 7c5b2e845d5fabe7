package evidence

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
)

// An export is the evidence as plain OCSF, for SIEMs that take OCSF and not
// CloudEvents (AWS Security Lake, Splunk's and Elastic's OCSF mappings): the
// event's data alone, with the envelope and the chain under
// unmapped.chain. unmapped is the one OCSF attribute whose content the
// schema leaves open, so the export stays conformant OCSF, and it keeps
// every envelope attribute that is not a constant, so Rewrap can rebuild
// the event and the chain can be verified from the export alone.

// ExportChain is unmapped.chain of an exported event.
type ExportChain struct {
	Seq        int64  `json:"seq"`
	PrevHash   string `json:"prevhash"`
	Hash       string `json:"hash"`
	EventID    string `json:"event_id"`
	Type       string `json:"cloudevents_type"`
	Source     string `json:"cloudevents_source"`
	Time       string `json:"cloudevents_time"`
	DataSchema string `json:"cloudevents_dataschema"`
	Subject    string `json:"subject,omitempty"`
}

// Exported is one evidence event as plain OCSF.
type Exported struct {
	Chain ExportChain
	// Time is the event's time (its CloudEvents time, the instant of the
	// OCSF time to the nanosecond).
	Time time.Time
	// OCSF is the OCSF event with unmapped.chain, one line of JSON.
	OCSF json.RawMessage
	// Summary holds the attributes every class has, read from OCSF.
	Summary OCSFSummary
}

// OCSFSummary is what an exported event's columns are made of: the
// attributes common to leaseguard's classes.
type OCSFSummary struct {
	Time         int64  `json:"time"`
	ClassUID     int    `json:"class_uid"`
	ClassName    string `json:"class_name"`
	CategoryUID  int    `json:"category_uid"`
	ActivityID   int    `json:"activity_id"`
	TypeUID      int64  `json:"type_uid"`
	SeverityID   int    `json:"severity_id"`
	StatusID     int    `json:"status_id"`
	StatusCode   string `json:"status_code"`
	StatusDetail string `json:"status_detail"`
	Message      string `json:"message"`
	Metadata     struct {
		UID     string `json:"uid"`
		Version string `json:"version"`
	} `json:"metadata"`
	User *struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"user"`
}

// envelopeKnown: the attributes an event may carry besides data.
var envelopeKnown = map[string]bool{"specversion": true, "id": true, "source": true, "type": true, "subject": true,
	"time": true, "datacontenttype": true, "dataschema": true, "chainseq": true, "prevhash": true, "hash": true}

// Unwrap turns one stored evidence event (the CloudEvent as sealed) into
// plain OCSF. It refuses an event it could not carry whole: an attribute
// it does not know, a specversion or content type other than leaseguard's,
// an unsealed event, data that is not an object or already has
// unmapped.chain.
func Unwrap(raw []byte) (Exported, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(raw, &env); err != nil {
		return Exported{}, fmt.Errorf("export: decode event: %w", err)
	}
	var ev Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return Exported{}, fmt.Errorf("export: decode event: %w", err)
	}
	if err := checkEnvelope(env, ev); err != nil {
		return Exported{}, fmt.Errorf("export event %s: %w", ev.ID, err)
	}
	chain := ExportChain{Seq: ev.ChainSeq, PrevHash: ev.PrevHash, Hash: ev.Hash, EventID: ev.ID, Type: ev.Type,
		Source: ev.Source, DataSchema: ev.DataSchema, Subject: ev.Subject}
	// The time as written, not as re-encoded: Rewrap must give back the
	// same bytes.
	_ = json.Unmarshal(env["time"], &chain.Time)
	out, err := withChain(ev.Data, chain)
	if err != nil {
		return Exported{}, fmt.Errorf("export event %s: %w", ev.ID, err)
	}
	x := Exported{Chain: chain, Time: ev.Time, OCSF: out}
	if err := json.Unmarshal(out, &x.Summary); err != nil {
		return Exported{}, fmt.Errorf("export event %s: %w", ev.ID, err)
	}
	return x, nil
}

func checkEnvelope(env map[string]json.RawMessage, ev Event) error {
	for k := range env {
		if k != "data" && !envelopeKnown[k] {
			return fmt.Errorf("attribute %q has no place in the export", k)
		}
	}
	switch {
	case ev.SpecVersion != SpecVersion:
		return fmt.Errorf("specversion %q, not %q", ev.SpecVersion, SpecVersion)
	case ev.DataContentType != DataContentType:
		return fmt.Errorf("datacontenttype %q, not %q", ev.DataContentType, DataContentType)
	case ev.ChainSeq <= 0 || ev.Hash == "" || ev.PrevHash == "":
		return errors.New("event is not sealed (no chainseq, prevhash or hash)")
	}
	return nil
}

// withChain adds unmapped.chain to an OCSF event. Members are kept as
// written (numbers verbatim), so the data's canonical form is unchanged.
func withChain(data json.RawMessage, chain ExportChain) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("data is not a JSON object")
	}
	unmapped := map[string]json.RawMessage{}
	if u, ok := obj["unmapped"]; ok {
		if err := json.Unmarshal(u, &unmapped); err != nil || unmapped == nil {
			return nil, fmt.Errorf("data's unmapped is not an object")
		}
	}
	if _, ok := unmapped["chain"]; ok {
		return nil, errors.New("data already has unmapped.chain")
	}
	c, err := encodeJSON(chain)
	if err != nil {
		return nil, err
	}
	unmapped["chain"] = c
	if obj["unmapped"], err = encodeJSON(unmapped); err != nil {
		return nil, err
	}
	return encodeJSON(obj)
}

// Rewrap rebuilds the stored evidence event from an exported one: the
// inverse of Unwrap. The result verifies as the original did (the hash
// covers the canonical form, which neither key order nor re-encoding
// changes).
func Rewrap(ocsf []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(ocsf, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("rewrap: not a JSON object")
	}
	var unmapped map[string]json.RawMessage
	if err := json.Unmarshal(obj["unmapped"], &unmapped); err != nil || unmapped["chain"] == nil {
		return nil, errors.New("rewrap: no unmapped.chain")
	}
	var c ExportChain
	if err := json.Unmarshal(unmapped["chain"], &c); err != nil {
		return nil, fmt.Errorf("rewrap: unmapped.chain: %w", err)
	}
	delete(unmapped, "chain")
	var err error
	if obj["unmapped"], err = encodeJSON(unmapped); err != nil {
		return nil, err
	}
	data, err := encodeJSON(obj)
	if err != nil {
		return nil, err
	}
	env := map[string]any{"specversion": SpecVersion, "id": c.EventID, "source": c.Source, "type": c.Type,
		"time": c.Time, "datacontenttype": DataContentType, "dataschema": c.DataSchema,
		"chainseq": c.Seq, "prevhash": c.PrevHash, "hash": c.Hash, "data": json.RawMessage(data)}
	if c.Subject != "" {
		env["subject"] = c.Subject
	}
	return encodeJSON(env)
}

// ExportFilter selects events to export. Zero fields select everything.
type ExportFilter struct {
	// FromSeq is the first chain position exported.
	FromSeq int64
	// Since (inclusive) and Until (exclusive) bound the event time.
	Since, Until time.Time
}

// Match reports whether x is selected.
func (f ExportFilter) Match(x Exported) bool {
	return x.Chain.Seq >= f.FromSeq &&
		(f.Since.IsZero() || !x.Time.Before(f.Since)) &&
		(f.Until.IsZero() || x.Time.Before(f.Until))
}

// ExportFile exports the events of a file as VerifyFile reads it (one
// CloudEvent per line, other lines skipped). With verify, the whole file is
// verified first and nothing is exported from a broken chain: the report
// says where it breaks. emit receives the selected events in file order,
// each once: a redelivered event (the same event on consecutive lines) is
// skipped, as verification skips it.
func ExportFile(r io.ReadSeeker, f ExportFilter, verify bool, emit func(Exported) error) (VerifyReport, error) {
	var rep VerifyReport
	if verify {
		var err error
		if rep, err = VerifyFile(r, VerifyOptions{}); err != nil || !rep.OK() {
			return rep, err
		}
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return rep, fmt.Errorf("export: rewind: %w", err)
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var prev ExportChain
	for line := 1; sc.Scan(); line++ {
		doc := bytes.TrimSpace(sc.Bytes())
		if len(doc) == 0 || doc[0] != '{' {
			continue
		}
		x, err := Unwrap(doc)
		if err != nil {
			return rep, fmt.Errorf("line %d: %w", line, err)
		}
		// A redelivery repeats the event before it: export it once.
		redelivered := x.Chain.Seq == prev.Seq && x.Chain.EventID == prev.EventID && x.Chain.Hash == prev.Hash
		prev = x.Chain
		if redelivered || !f.Match(x) {
			continue
		}
		if err := emit(x); err != nil {
			return rep, err
		}
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("read evidence: %w", err)
	}
	return rep, nil
}

// ExportOutbox exports the events of the outbox in chain order. With
// verify, the chain is verified first (VerifyOutbox) and only events up to
// the verified end are exported; nothing is exported from a broken chain.
func ExportOutbox(ctx context.Context, db Snapshotter, f ExportFilter, verify bool, emit func(Exported) error) (VerifyReport, error) {
	// One snapshot for both reads: what is exported is what was verified,
	// whatever another session writes meanwhile.
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return VerifyReport{}, fmt.Errorf("read evidence outbox: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	return exportOutbox(ctx, tx, f, verify, emit)
}

// Snapshotter opens the transaction an export reads in (a pool fits).
type Snapshotter interface {
	BeginTx(ctx context.Context, o pgx.TxOptions) (pgx.Tx, error)
}

func exportOutbox(ctx context.Context, q Querier, f ExportFilter, verify bool, emit func(Exported) error) (VerifyReport, error) {
	var rep VerifyReport
	last := int64(1<<63 - 1)
	if verify {
		var err error
		if rep, err = VerifyOutbox(ctx, q, VerifyOptions{}); err != nil || !rep.OK() {
			return rep, err
		}
		last = rep.LastSeq
	}
	const page = 1000
	for after := max(f.FromSeq-1, 0); after < last; {
		rows, err := q.Query(ctx, `SELECT seq, event FROM evidence_outbox WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`,
			after, last, page)
		if err != nil {
			return rep, fmt.Errorf("read evidence outbox: %w", err)
		}
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
			Seq   int64
			Event []byte
		}])
		if err != nil {
			return rep, fmt.Errorf("read evidence outbox: %w", err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			x, err := Unwrap(r.Event)
			if err != nil {
				return rep, fmt.Errorf("outbox seq %d: %w", r.Seq, err)
			}
			if f.Match(x) {
				if err := emit(x); err != nil {
					return rep, err
				}
			}
		}
		after = rs[len(rs)-1].Seq
	}
	return rep, nil
}
