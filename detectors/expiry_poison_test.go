package detectors_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// TestExpiryPoisonedLeaseDoesNotStallThePass: a forged audit entry gave
// one lease a remote address, and another a Vault request id, shaped like
// a Vault token. The evidence secret scanner must not make the whole
// expiry pass roll back (and retry forever): every due lease gets its
// finding and command, the offending values are withheld from the evidence
// and from the findings table, and the findings say what was withheld.
func TestExpiryPoisonedLeaseDoesNotStallThePass(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	token := "hvs.CAESIJ" + strings.Repeat("x7Q", 10)
	exp := f.now.Add(-time.Hour)
	issued := exp.Add(-time.Hour)
	var evs []schemas.LeaseEvent
	for i, name := range []string{"a", "poison-addr", "b", "poison-req", "c"} {
		ev := schemas.LeaseEvent{
			Type: schemas.LeaseEventType, Kind: schemas.LeaseIssued, LeaseID: "postgres/creds/reporting/" + name,
			Mount: "postgres", Role: "reporting", Database: "main", DBUser: "v-" + name, IssueTime: &issued, ExpireTime: &exp,
			ExpireSource: schemas.ExpireFromEvent, EventTime: issued.Add(time.Duration(i) * time.Millisecond),
			VaultRequestID: "req-" + name, RemoteAddress: "10.0.0.1", Source: schemas.SourceRef{Transport: "test"},
		}
		switch name {
		case "poison-addr":
			ev.RemoteAddress = token
		case "poison-req":
			ev.VaultRequestID = token
		}
		evs = append(evs, ev)
		until := exp.Add(5 * time.Second)
		f.role("main", "v-"+name, &until) // still in the database, its password expired
	}
	if _, err := f.st.Apply(ctx, store.Batch{Leases: evs}); err != nil {
		t.Fatal(err)
	}
	d := f.detector(t, "", "*")
	n, err := d.Tick(ctx)
	if err != nil || n != len(evs) {
		t.Fatalf("Tick = %d, %v; want %d due leases handled", n, err, len(evs))
	}
	if cmds := f.sink.all(); len(cmds) != len(evs) {
		t.Errorf("%d commands, want one per due lease (%d)", len(cmds), len(evs))
	}
	fs := f.findings(t)
	if len(fs) != len(evs) {
		t.Fatalf("%d findings, want %d", len(fs), len(evs))
	}
	for _, fd := range fs {
		withheld, _ := fd.Facts["withheld"].([]any)
		switch fd.DBUser {
		case "v-poison-req":
			if len(withheld) != 1 || withheld[0] != "$.facts.last_vault_request_id" ||
				fd.Facts["last_vault_request_id"] != schemas.Withheld {
				t.Errorf("poisoned finding: facts = %v", fd.Facts)
			}
		default:
			if withheld != nil {
				t.Errorf("finding of %s withheld %v", fd.DBUser, withheld)
			}
		}
	}
	if dump := tableText(t, f, "findings") + tableText(t, f, "evidence_outbox"); strings.Contains(dump, token) {
		t.Errorf("the token reached the findings or the evidence outbox")
	}
	// The poisoned remote address is withheld from the evidence, which
	// says where; the chain verifies.
	var raw []byte
	if err := f.st.Pool().QueryRow(ctx, `SELECT o.event FROM evidence_outbox o JOIN findings f ON f.evidence_id = o.id
		WHERE f.db_user = 'v-poison-addr'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var ev evidence.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	var data struct {
		Unmapped struct {
			RemoteAddress string   `json:"lease_remote_address"`
			Withheld      []string `json:"withheld"`
		} `json:"unmapped"`
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.Unmapped.RemoteAddress != schemas.Withheld || len(data.Unmapped.Withheld) != 1 ||
		data.Unmapped.Withheld[0] != "$.data.unmapped.lease_remote_address" {
		t.Errorf("evidence of the poisoned lease: %s", ev.Data)
	}
	if rep, err := evidence.VerifyOutbox(ctx, f.st.Pool(), evidence.VerifyOptions{}); err != nil || !rep.OK() || rep.Checked != len(evs) {
		t.Errorf("outbox verify = %+v, %v", rep, err)
	}
}

func tableText(t *testing.T, f *fixture, table string) string {
	t.Helper()
	rows, err := f.st.Pool().Query(context.Background(), "SELECT t::text FROM "+pgx.Identifier{table}.Sanitize()+" t")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(lines, "\n")
	if table == "evidence_outbox" {
		var events []string
		rows, err := f.st.Pool().Query(context.Background(), "SELECT convert_from(event, 'UTF8') FROM evidence_outbox")
		if err != nil {
			t.Fatal(err)
		}
		if events, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
		text += strings.Join(events, "\n")
	}
	return text
}
