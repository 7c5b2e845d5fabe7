package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	evidenceStream   = "LEASEGUARD_EVIDENCE"
	revocationStream = "LEASEGUARD_REVOCATIONS"
)

var outcomeRE = regexp.MustCompile(`"outcome":"([a-z_]+)"`)

// record reads one CloudEvent's id, type, subject and, for a revocation,
// its outcome.
func record(event []byte, at time.Time) (Record, error) {
	var ev struct {
		ID      string          `json:"id"`
		Type    string          `json:"type"`
		Subject string          `json:"subject"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(event, &ev); err != nil {
		return Record{}, fmt.Errorf("evidence is not a CloudEvent: %w", err)
	}
	r := Record{ID: ev.ID, Type: ev.Type, Subject: ev.Subject, At: at, Raw: event}
	if m := outcomeRE.FindSubmatch(ev.Data); r.Type == RevocationType && m != nil {
		r.Outcome = string(m[1])
	}
	return r, nil
}

// outbox reads every event of the case's outbox, and whether all of them
// are marked published.
func (e *caseEnv) outbox(ctx context.Context) ([]Record, bool, error) {
	rows, err := e.h.admin.Query(ctx, "SELECT event, created_at, published_at IS NOT NULL FROM "+
		pgx.Identifier{e.schema, "evidence_outbox"}.Sanitize()+" ORDER BY seq")
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var out []Record
	all := true
	for rows.Next() {
		var ev []byte
		var at time.Time
		var published bool
		if err := rows.Scan(&ev, &at, &published); err != nil {
			return nil, false, err
		}
		r, err := record(ev, at)
		if err != nil {
			return nil, false, err
		}
		out = append(out, r)
		all = all && published
	}
	return out, all, rows.Err()
}

// evidence reads the outbox and the evidence stream at a moment when they
// can be compared: the parts keep adding evidence (audit rules run every
// few seconds), so the outbox is read before and after the stream, and
// the reads count only when the outbox did not change in between and was
// all published.
func (e *caseEnv) evidence(ctx context.Context) (outbox, relayed []Record, err error) {
	err = poll(ctx, "a quiet outbox to compare with the stream", time.Minute, func(ctx context.Context) (bool, string, error) {
		before, published, err := e.outbox(ctx)
		if err != nil || !published {
			return false, "outbox not all published", err
		}
		if relayed, err = e.relayed(ctx); err != nil {
			return false, "", err
		}
		after, _, err := e.outbox(ctx)
		if err != nil {
			return false, "", err
		}
		outbox = after
		return len(after) == len(before), "outbox grew while the stream was read", nil
	})
	return outbox, relayed, err
}

// relayed reads the evidence stream from its start, as a SIEM would.
func (e *caseEnv) relayed(ctx context.Context) ([]Record, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := e.nats.js.Stream(ctx, evidenceStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	if last == 0 {
		return nil, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []Record
	for seq := uint64(0); seq < last; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			seq = md.Sequence.Stream
			r, err := record(append([]byte(nil), m.Data()...), md.Timestamp)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		if n == 0 {
			return nil, fmt.Errorf("evidence stream: read %d of %d messages", len(out), last)
		}
	}
	return out, nil
}

// usersLeft lists the case's users still present in pg_roles.
func (e *caseEnv) usersLeft(ctx context.Context) ([]string, error) {
	rows, err := e.h.admin.Query(ctx, "SELECT rolname FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1", sortedKeys(e.users))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// droppedInOutbox counts the `dropped` revocations in the outbox.
func (e *caseEnv) droppedInOutbox(ctx context.Context) (int, error) {
	var n int
	err := e.h.admin.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{e.schema, "revocations"}.Sanitize()+
		" WHERE outcome = 'dropped'").Scan(&n)
	return n, err
}

// pending says what the pipeline still owes, "" once nothing: users left,
// outbox rows unpublished, revocations in progress, commands queued.
func (e *caseEnv) pending(ctx context.Context) (string, error) {
	left, err := e.usersLeft(ctx)
	if err != nil {
		return "", err
	}
	var unpublished, inProgress int
	q := "SELECT (SELECT count(*) FROM " + pgx.Identifier{e.schema, "evidence_outbox"}.Sanitize() + " WHERE published_at IS NULL), " +
		"(SELECT count(*) FROM " + pgx.Identifier{e.schema, "revocations"}.Sanitize() + " WHERE state = 'in_progress')"
	if err := e.h.admin.QueryRow(ctx, q).Scan(&unpublished, &inProgress); err != nil {
		return "", err
	}
	queued, err := e.queued(ctx)
	if err != nil {
		return "", err
	}
	if len(left)+unpublished+inProgress+queued == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d users left, %d evidence unpublished, %d revocations in progress, %d commands queued",
		len(left), unpublished, inProgress, queued), nil
}

// queued is how many revocation commands wait in the work queue.
func (e *caseEnv) queued(ctx context.Context) (int, error) {
	s, err := e.nats.js.Stream(ctx, revocationStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.State.Msgs), nil
}

// poll checks cond every 100 ms until it holds or timeout passes; cond
// says why not. Errors of cond count as "not yet".
func poll(ctx context.Context, what string, timeout time.Duration, cond func(context.Context) (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	why := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, w, err := cond(cctx)
		cancel()
		switch {
		case ok:
			return nil
		case err != nil:
			why = err.Error()
		default:
			why = w
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s: %s", what, timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFirstDrop waits until leaseguard has dropped at least one user.
func (e *caseEnv) waitFirstDrop(ctx context.Context, timeout time.Duration) error {
	return e.waitDropped(ctx, 1, timeout)
}

// waitClaimed waits until the revoker has claimed at least n commands
// (recorded them in progress, before it acts): a batch is in hand.
func (e *caseEnv) waitClaimed(ctx context.Context, n int, timeout time.Duration) error {
	q := "SELECT count(*) FROM " + pgx.Identifier{e.schema, "revocations"}.Sanitize()
	return poll(ctx, fmt.Sprintf("%d commands claimed", n), timeout, func(ctx context.Context) (bool, string, error) {
		var got int
		err := e.h.admin.QueryRow(ctx, q).Scan(&got)
		return got >= n, fmt.Sprintf("%d claimed", got), err
	})
}

// waitDropped waits until leaseguard has dropped at least n users.
func (e *caseEnv) waitDropped(ctx context.Context, n int, timeout time.Duration) error {
	return poll(ctx, fmt.Sprintf("%d users dropped", n), timeout, func(ctx context.Context) (bool, string, error) {
		got, err := e.droppedInOutbox(ctx)
		return got >= n, fmt.Sprintf("%d dropped", got), err
	})
}

// waitSettled waits until the pipeline owes nothing and every user's
// dropped evidence has been relayed.
func (e *caseEnv) waitSettled(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, "every user dropped and its evidence relayed", timeout, func(ctx context.Context) (bool, string, error) {
		why, err := e.pending(ctx)
		if err != nil || why != "" {
			return false, why, err
		}
		rel, err := e.relayed(ctx)
		if err != nil {
			return false, "", err
		}
		counts := outcomesPerUser(rel, targetName, e.outcome, e.users)
		missing := 0
		for _, n := range counts {
			if n == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d users' %s evidence not relayed", missing, e.outcome), nil
	})
}

// observe gathers the case's end state. restore is the end of its fault.
func (e *caseEnv) observe(ctx context.Context, restore time.Time) (Observation, error) {
	obs := Observation{Target: targetName, Outcome: e.outcome, Users: e.users, Restore: restore}
	var err error
	if obs.Left, err = e.usersLeft(ctx); err != nil {
		return obs, err
	}
	if obs.Outbox, obs.Relayed, err = e.evidence(ctx); err != nil {
		return obs, err
	}
	e.writeOdd(obs)
	var out string
	if obs.ChainOK, out = e.verifyChain(ctx); !obs.ChainOK {
		obs.Extra = append(obs.Extra, "evidence verify: "+out)
	}
	return obs, nil
}

// writeOdd writes the relayed events that are doubled or not in the outbox
// to odd-events.jsonl in the case's directory, for a closer look.
func (e *caseEnv) writeOdd(obs Observation) {
	in := map[string]bool{}
	for _, r := range obs.Outbox {
		in[r.ID] = true
	}
	seen := map[string]bool{}
	var b []byte
	for _, r := range obs.Relayed {
		if !in[r.ID] || seen[r.ID] {
			b = append(append(b, r.Raw...), '\n')
		}
		seen[r.ID] = true
	}
	if len(b) > 0 {
		_ = os.WriteFile(filepath.Join(e.dir, "odd-events.jsonl"), b, 0o600)
	}
}
