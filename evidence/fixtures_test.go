package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)

func testBuilder() Builder {
	return Builder{Source: "urn:leaseguard:test", Clock: func() time.Time { return t0 }}
}

func sampleCommand(i int) schemas.RevocationCommand {
	return schemas.RevocationCommand{
		Type:      schemas.RevocationCommandType,
		ID:        fmt.Sprintf("cmd-%04d", i),
		Action:    schemas.ActionDropRole,
		IssuedAt:  t0.Add(-2 * time.Second),
		ExpiresAt: t0.Add(10*time.Minute - 2*time.Second),
		Nonce:     "3f1c6d0b9e2a47c58d6e0f1a2b3c4d5e",
		Issuer:    "detector",
		Rule:      "lease-expired-not-revoked",
		FindingID: fmt.Sprintf("finding-%04d", i),
		Database:  "main",
		Target:    schemas.TargetIdentity{SystemIdentifier: "7716256923339417742", DatabaseOID: 16384},
		DBUser:    fmt.Sprintf("v-approle-reporting-avBCPAqNnSFaMO7m%04d-1795634398", i),
		RoleOID:   uint32(24600 + i),
		LeaseID:   fmt.Sprintf("postgres/creds/reporting/Zq8vR2kPq0aLx7Wn%08d", i),
		Reason:    "lease expired 42s ago; user still present",
		Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByValidUntil, CheckedAt: t0.Add(-3 * time.Second),
			Detail: "rolvaliduntil 2026-03-14T09:26:06Z has passed"},
		KeyID:     "3f9a1c2b7d4e5f60",
		Signature: "c2lnbmF0dXJl",
	}
}

func sampleResult(cmd schemas.RevocationCommand, outcome schemas.Outcome) schemas.RevocationResult {
	res := schemas.RevocationResult{
		CommandID:  cmd.ID,
		Database:   cmd.Database,
		DBUser:     cmd.DBUser,
		Outcome:    outcome,
		StartedAt:  t0.Add(-180 * time.Millisecond),
		FinishedAt: t0,
	}
	q := pgx.Identifier{cmd.DBUser}.Sanitize()
	switch outcome {
	case schemas.OutcomeDropped:
		res.Statements = []string{
			"ALTER ROLE " + q + " NOLOGIN",
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
			"REASSIGN OWNED BY " + q + " TO \"leaseguard_orphans\"",
			"DROP OWNED BY " + q,
			"DROP ROLE " + q,
		}
		res.SessionsTerminated = 2
		res.ReassignedTo = "leaseguard_orphans"
		res.RoleAbsentAfter = true
	case schemas.OutcomeAlreadyAbsent:
		res.RoleAbsentAfter = true
	case schemas.OutcomeRefused:
		res.Guard = "superuser"
		res.Reason = "role has rolsuper"
	case schemas.OutcomeFailed:
		res.Statements = []string{"DROP ROLE " + q}
		res.Reason = "role owns objects in another database"
		res.SQLState = "2BP01"
		res.SessionsLeftAfter = 1
	}
	return res
}

func sampleLease(i int) *LeaseContext {
	return &LeaseContext{
		LeaseID:        fmt.Sprintf("postgres/creds/reporting/Zq8vR2kPq0aLx7Wn%08d", i),
		VaultRequestID: "5b0f3c1e-8e1d-4d8e-9d0a-6f3b2a1c9e7d",
		EntityID:       "8d2f1e4a-3b6c-4f7e-a1d9-0c5b7e2f4a68",
		RemoteAddress:  "10.20.30.40:51234",
		Mount:          "postgres",
		Role:           "reporting",
	}
}

func sampleFinding(i int) schemas.Finding {
	cmd := sampleCommand(i)
	return schemas.Finding{
		Type:       schemas.FindingType,
		ID:         cmd.FindingID,
		Rule:       cmd.Rule,
		Severity:   schemas.SeverityHigh,
		Mode:       schemas.ModeEnforce,
		InScope:    true,
		DetectedAt: t0.Add(-time.Second),
		Database:   cmd.Database,
		DBUser:     cmd.DBUser,
		LeaseID:    cmd.LeaseID,
		Mount:      "postgres",
		Role:       "reporting",
		Summary:    "user outlived its lease by 42s",
		Facts: map[string]any{
			"expire_time":   "2026-03-14T09:26:11Z",
			"expire_source": "pg_valid_until",
			"overdue_s":     42,
			"sessions":      2,
		},
		Action:    schemas.ActionRevocationRequested,
		CommandID: cmd.ID,
	}
}

// sampleEvents builds n distinct events, revocations and findings in turn.
func sampleEvents(t testing.TB, n int) []Event {
	t.Helper()
	b := testBuilder()
	events := make([]Event, 0, n)
	for i := range n {
		var ev Event
		var err error
		if i%2 == 0 {
			cmd := sampleCommand(i)
			ev, err = b.Revocation(cmd, sampleResult(cmd, schemas.OutcomeDropped), sampleLease(i))
		} else {
			ev, err = b.Finding(sampleFinding(i), sampleLease(i))
		}
		if err != nil {
			t.Fatalf("build event %d: %v", i, err)
		}
		events = append(events, ev)
	}
	return events
}

// sealAll chains events in order from genesis.
func sealAll(t testing.TB, events []Event) []Event {
	t.Helper()
	out := make([]Event, len(events))
	prev := GenesisHash
	for i, ev := range events {
		if err := Seal(&ev, prev, int64(i+1)); err != nil {
			t.Fatal(err)
		}
		out[i] = ev
		prev = ev.Hash
	}
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// evidenceSchema is schemas/evidence.schema.json as embedded in the binary.
func evidenceSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	sch, err := schemas.Compile("evidence")
	if err != nil {
		t.Fatalf("compile evidence schema: %v", err)
	}
	return sch
}

func validateDoc(sch *jsonschema.Schema, doc []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// testDB returns a pool whose search_path is a fresh schema holding the
// evidence tables, created by running the migration file itself.
func testDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	schema := pgtest.Schema(t, "evidence")
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.URLWithSearchPath(schema))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 12
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to test postgres: %v", err)
	}
	t.Cleanup(pool.Close)
	for _, name := range []string{"002_evidence.sql", "015_evidence_append.sql", "017_evidence_append_packed.sql"} {
		migration, err := os.ReadFile(filepath.Join("..", "store", "migrations", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, string(migration)); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
	}
	return pool
}

// appendOne appends ev in its own committed transaction.
func appendOne(t testing.TB, pool *pgxpool.Pool, ev Event) Event {
	t.Helper()
	var stored Event
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		var err error
		stored, err = Append(context.Background(), tx, ev)
		return err
	})
	if err != nil {
		t.Fatalf("append %s: %v", ev.ID, err)
	}
	return stored
}
