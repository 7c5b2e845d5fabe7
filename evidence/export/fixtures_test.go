package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
)

var t0 = time.Date(2026, 11, 25, 20, 0, 0, 123456789, time.UTC)

// chainEvents builds a chain of real events of every class leaseguard
// writes, a minute apart: 4 revocations (Account Change), 3 findings and 1
// approval (Detection Finding), 2 policy changes (Entity Management).
func chainEvents(t *testing.T) []evidence.Event {
	t.Helper()
	b := evidence.Builder{Source: "urn:leaseguard:export-test", Version: "1.4.2"}
	var evs []evidence.Event
	add := func(ev evidence.Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	at := func() time.Time { return t0.Add(time.Duration(len(evs)) * time.Minute) }
	add(b.Policy(schemas.PolicyChange{Version: 1, Kind: schemas.PolicyConfiguration, Actor: "configuration",
		Reason: "configured", ChangedAt: at(), Modes: map[string]schemas.Mode{"lease-expired-not-revoked": schemas.ModeEnforce}}))
	for i, o := range []schemas.Outcome{schemas.OutcomeDropped, schemas.OutcomeFailed, schemas.OutcomeRefused, schemas.OutcomeAlreadyAbsent} {
		user := fmt.Sprintf("v-approle-reporting-%04d", i)
		add(b.Finding(schemas.Finding{Type: schemas.FindingType, ID: fmt.Sprintf("finding-%d", i), Rule: "lease-expired-not-revoked",
			Severity: schemas.SeverityHigh, Mode: schemas.ModeEnforce, InScope: true, DetectedAt: at(), Database: "main",
			DBUser: user, LeaseID: "postgres/creds/reporting/" + user, Summary: "user outlived its lease",
			Action: schemas.ActionRevocationRequested, CommandID: fmt.Sprintf("cmd-%d", i)},
			&evidence.LeaseContext{RemoteAddress: fmt.Sprintf("10.20.30.%d:51234", 40+i)}))
		cmd := schemas.RevocationCommand{Type: schemas.RevocationCommandType, ID: fmt.Sprintf("cmd-%d", i), Action: schemas.ActionDropRole,
			Issuer: "detector", Rule: "lease-expired-not-revoked", Database: "main", DBUser: user, RoleOID: uint32(24600 + i),
			LeaseID: "postgres/creds/reporting/" + user, Reason: "lease expired"}
		res := schemas.RevocationResult{CommandID: cmd.ID, Database: "main", DBUser: user, Outcome: o,
			StartedAt: at().Add(-time.Millisecond), FinishedAt: at(), Reason: "reason " + string(o)}
		if o == schemas.OutcomeRefused {
			res.Guard = "superuser"
		}
		add(b.Revocation(cmd, res, nil))
		if i == 0 {
			add(b.Approval(schemas.ApprovalDecision{PendingID: "p-1", Decision: schemas.ApprovalApproved, DecidedBy: "alice",
				DecidedAt: at(), FindingID: "finding-0", Rule: "lease-expired-not-revoked", Severity: schemas.SeverityHigh,
				Database: "main", DBUser: user, LeaseID: "postgres/creds/reporting/" + user, Summary: "expired",
				RequestedAt: at().Add(-time.Minute), ExpiresAt: at().Add(time.Hour)}))
		}
	}
	add(b.Policy(schemas.PolicyChange{Version: 2, Kind: schemas.PolicyExpand, Actor: "alice", Reason: "CHG-1", ChangedAt: at(),
		Scope: "db:orders", Modes: map[string]schemas.Mode{"lease-expired-not-revoked": schemas.ModeEnforce},
		Previous: &schemas.PolicyState{Version: 1, Modes: map[string]schemas.Mode{"lease-expired-not-revoked": schemas.ModeEnforce}}}))
	prev := evidence.GenesisHash
	for i := range evs {
		if err := evidence.Seal(&evs[i], prev, int64(i+1)); err != nil {
			t.Fatal(err)
		}
		prev = evs[i].Hash
	}
	return evs
}

// chainFile is the chain as a SIEM stores it, one CloudEvent per line.
func chainFile(t *testing.T, evs []evidence.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, ev := range evs {
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(raw)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// expected is what the test knows of an event from its CloudEvent, read
// independently of the export code.
type expected struct {
	Seq          int64
	Hash         string
	ClassUID     int
	Time         int64
	StatusCode   string
	StatusDetail string
	MetadataUID  string
	UserName     string
	UserUID      string
	Data         map[string]any
}

func expectations(t *testing.T, evs []evidence.Event) []expected {
	t.Helper()
	out := make([]expected, len(evs))
	for i, ev := range evs {
		var d map[string]any
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		e := expected{Seq: ev.ChainSeq, Hash: ev.Hash, ClassUID: int(d["class_uid"].(float64)), Time: int64(d["time"].(float64)),
			StatusCode: d["status_code"].(string), StatusDetail: d["status_detail"].(string),
			MetadataUID: d["metadata"].(map[string]any)["uid"].(string), Data: d}
		if u, ok := d["user"].(map[string]any); ok {
			e.UserName, _ = u["name"].(string)
			e.UserUID, _ = u["uid"].(string)
		}
		out[i] = e
	}
	return out
}
