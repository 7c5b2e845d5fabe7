package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/schemas"
)

// InsertFindings is InsertFinding for many findings in one statement, for
// a detector pass: evidenceIDs[i] is the evidence of fs[i]. It returns how
// many were new.
func InsertFindings(ctx context.Context, tx pgx.Tx, fs []schemas.Finding, evidenceIDs []string) (int, error) {
	if len(fs) != len(evidenceIDs) {
		return 0, fmt.Errorf("insert findings: %d findings, %d evidence ids", len(fs), len(evidenceIDs))
	}
	if len(fs) == 0 {
		return 0, nil
	}
	n := len(fs)
	var (
		ids, rules, sevs, modes, dbs, users, leases = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actions, cmdIDs                             = make([]string, n), make([]string, n)
		inScope                                     = make([]bool, n)
		detected                                    = make([]time.Time, n)
		docs                                        = make([][]byte, n)
	)
	for i, f := range fs {
		f = schemas.WithholdFinding(f)
		doc, err := json.Marshal(f)
		if err != nil {
			return 0, fmt.Errorf("encode finding: %w", err)
		}
		ids[i], rules[i], sevs[i], modes[i] = f.ID, f.Rule, string(f.Severity), string(f.Mode)
		dbs[i], users[i], leases[i] = f.Database, f.DBUser, f.LeaseID
		actions[i], cmdIDs[i], inScope[i], detected[i], docs[i] = f.Action, f.CommandID, f.InScope, f.DetectedAt, doc
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO findings (id, rule, severity, mode, in_scope, database, db_user, lease_id, detected_at, action, command_id, finding, evidence_id)
		SELECT id, rule, sev, mode, sc, NULLIF(db, ''), NULLIF(u, ''), NULLIF(l, ''), at, act, NULLIF(cmd, ''), doc, NULLIF(ev, '')
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::text[], $8::text[],
			$9::timestamptz[], $10::text[], $11::text[], $12::jsonb[], $13::text[])
			AS t(id, rule, sev, mode, sc, db, u, l, at, act, cmd, doc, ev)
		ON CONFLICT (id) DO NOTHING`,
		ids, rules, sevs, modes, inScope, dbs, users, leases, detected, actions, cmdIDs, docs, evidenceIDs)
	if err != nil {
		return 0, fmt.Errorf("insert %d findings: %w", n, err)
	}
	return int(tag.RowsAffected()), nil
}
