package observer

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/observer/observed"
	"github.com/leaseguard/leaseguard/schemas"
)

// noCommands is an issuer and sink for passes that must issue nothing: a
// steady pass over roles that were there at the first pass gives no
// verdict that acts.
type noCommands struct{ tb testing.TB }

func (n noCommands) Issue(context.Context, []schemas.RevocationCommand) error {
	n.tb.Fatal("a steady pass issued commands")
	return nil
}

func (n noCommands) Submit(ctx context.Context, cmds []schemas.RevocationCommand) error {
	return n.Issue(ctx, cmds)
}

func (n noCommands) SignProposal(schemas.RevocationCommand) (string, error) {
	n.tb.Fatal("a steady pass signed a proposal")
	return "", nil
}

// steadyTarget is a target of many managed roles, a session open on each
// of the first few.
func steadyTarget(roles, sessions int) ([]observed.DBRole, []observed.DBSession) {
	all := append([]observed.DBRole{{OID: 10, Name: "postgres", CanLogin: true, Superuser: true}}, vaultRoles(roles)...)
	sess := make([]observed.DBSession, 0, sessions)
	for i := range sessions {
		r := all[1+i]
		sess = append(sess, observed.DBSession{PID: int32(1000 + i), BackendStart: at(-time.Minute), UserOID: r.OID, UserName: r.Name,
			ClientAddr: "10.1.2.3", ClientPort: 40000, ApplicationName: "report", Datname: "app", BackendType: "client backend"})
	}
	return all, sess
}

// BenchmarkSteadyPass is a pass that sees no change over 100,000 managed
// roles and 5,000 of their sessions: the diff against what the previous
// pass recorded, and the database rules, in the pass transaction on a
// real state store (the target itself is not read: its snapshot is
// given). The first pass, which records everything, is not measured.
func BenchmarkSteadyPass(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, pgtest.Schema(b, "observer_bench"))
	roles, sessions := steadyTarget(100_000, 5_000)
	rules, err := detectors.NewDBRules(detectors.DBRulesConfig{ManagedPattern: regexp.MustCompile(`^v-`)},
		detectors.DBRulesDeps{Issuer: noCommands{b}, Sink: noCommands{b}})
	if err != nil {
		b.Fatal(err)
	}
	var known *knownRoles
	step := func(i int, judge bool) {
		err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
			p, next, err := applySnapshotKnown(ctx, tx, Snapshot{Database: "main", ObservedAt: at(time.Duration(i) * 2 * time.Second),
				Roles: roles, Sessions: sessions, Managed: managed}, known)
			if err != nil {
				return err
			}
			known = nil
			if judge {
				if _, err := rules.Evaluate(ctx, tx, p); err != nil {
					return err
				}
			}
			known = next
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	step(0, false)
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		step(i, true)
		i++
	}
}
