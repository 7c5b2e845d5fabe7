package revoker_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
	"github.com/leaseguard/leaseguard/target/mysql"
)

func mysqlURL() string {
	if u := os.Getenv("TEST_MYSQL_URL"); u != "" {
		return u
	}
	return "mysql://root@127.0.0.1:3306/"
}

// mysqlRig is an Executor whose only target, "maria", is the local MariaDB,
// with a root connection for setting up and looking.
type mysqlRig struct {
	st     *store.Store
	set    *target.Set
	root   *sql.DB
	signer *revoker.Signer
	exec   *revoker.Executor
}

func newMySQLRig(t *testing.T) *mysqlRig {
	t.Helper()
	return newMySQLRigWith(t, revoker.DropperConfig{})
}

func newMySQLRigWith(t *testing.T, dc revoker.DropperConfig) *mysqlRig {
	t.Helper()
	ctx := context.Background()
	st := migratedStore(t, "lg_mysql")
	set, err := target.Open(ctx, target.Config{Targets: []target.Target{{Name: "maria", URL: mysqlURL()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	cfg, err := mysql.ParseURL(mysqlURL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := sql.OpenDB(conn)
	t.Cleanup(func() { _ = root.Close() })
	signer, verifier := testKeys(t)
	dropper, err := revoker.NewDropper(dc)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: dropper, Verifier: verifier, Targets: set,
		State: st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"}})
	if err != nil {
		t.Fatal(err)
	}
	return &mysqlRig{st: st, set: set, root: root, signer: signer, exec: exec}
}

// user creates a managed user at two hosts, dropped at cleanup whatever
// happens.
func (r *mysqlRig) user(t *testing.T, label string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "v-" + label + "-" + hex.EncodeToString(b)
	for _, h := range []string{"%", "localhost"} {
		if _, err := r.root.Exec(`CREATE USER ?@? IDENTIFIED BY 'pw'`, name, h); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = r.root.Exec(`DROP USER IF EXISTS ?@?`, name, h) })
	}
	return name
}

// signed is a signed drop command for name, corroborated by source.
func (r *mysqlRig) signed(t *testing.T, name, source string) schemas.RevocationCommand {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := r.set.Identity(ctx, "maria")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	cmd := schemas.RevocationCommand{
		Type: schemas.RevocationCommandType, ID: "cmd-" + name, Action: schemas.ActionDropRole,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Nonce: cmdtest.Nonce(), Issuer: "detectors", Actor: "test",
		Rule: "lease-expired", Database: "maria", Target: id, DBUser: name, LeaseID: "mysql/creds/app/x",
		Reason: "test", Corroboration: schemas.Corroboration{Source: source, CheckedAt: now},
	}
	if err := r.signer.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func (r *mysqlRig) hosts(t *testing.T, name string) int {
	t.Helper()
	var n int
	if err := r.root.QueryRow(`SELECT count(*) FROM mysql.user WHERE User = ?`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A signed command on a MySQL target goes through the same Executor as on
// PostgreSQL: admitted, claimed, dropped (every host), recorded with its
// evidence; its redelivery is a duplicate.
func TestExecutorDropsOnMySQL(t *testing.T) {
	t.Parallel()
	r := newMySQLRig(t)
	name := r.user(t, "exec")
	cmd := r.signed(t, name, schemas.CorroboratedByVaultLookup)

	got := execOne(r.exec, cmd)

	if !got.Recorded || got.Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("executed %+v (%v), want dropped and recorded", got.Result, got.Err)
	}
	if n := r.hosts(t, name); n != 0 {
		t.Errorf("%d hosts of %s left", n, name)
	}
	again := execOne(r.exec, cmd)
	if !again.Duplicate || again.Result.Outcome != schemas.OutcomeDropped {
		t.Errorf("redelivery %+v, want a duplicate of the drop", again)
	}
	rev, err := store.GetRevocation(context.Background(), r.st.Pool(), cmd.ID)
	if err != nil || rev.Result == nil || rev.Result.Outcome != schemas.OutcomeDropped || len(rev.Result.Statements) == 0 {
		t.Fatalf("recorded %+v, %v", rev, err)
	}
	rep, err := evidence.VerifyOutbox(context.Background(), r.st.Pool(), evidence.VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Errorf("evidence chain: %+v %v", rep, err)
	}
}

// A command that rests on PostgreSQL's VALID UNTIL means nothing on MySQL:
// refused, recorded, and the user stays.
func TestExecutorRefusesUncorroboratedMySQLDrop(t *testing.T) {
	t.Parallel()
	r := newMySQLRig(t)
	name := r.user(t, "unc")

	got := execOne(r.exec, r.signed(t, name, schemas.CorroboratedByValidUntil))

	if !got.Recorded || got.Result.Outcome != schemas.OutcomeRefused || got.Result.Guard != revoker.GuardCorroboration {
		t.Fatalf("executed %+v (%v), want refused by corroboration", got.Result, got.Err)
	}
	if n := r.hosts(t, name); n != 2 {
		t.Errorf("%d hosts of %s, want the 2 it had", n, name)
	}
}

// The MySQL engine's guard names are the revoker's.
func TestMySQLGuardNamesAreTheRevokers(t *testing.T) {
	t.Parallel()
	pairs := [][2]string{
		{mysql.GuardEmpty, revoker.GuardEmpty}, {mysql.GuardInvalidName, revoker.GuardInvalidName},
		{mysql.GuardManagedPattern, revoker.GuardManagedPattern}, {mysql.GuardProtected, revoker.GuardProtected},
		{mysql.GuardDatabase, revoker.GuardDatabase}, {mysql.GuardSuperuser, revoker.GuardSuperuser},
		{mysql.GuardOwnRole, revoker.GuardOwnRole}, {mysql.GuardTarget, revoker.GuardTarget},
		{mysql.GuardAction, revoker.GuardAction}, {mysql.GuardCorroboration, revoker.GuardCorroboration},
	}
	for _, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("mysql guard %q is %q in the revoker", p[0], p[1])
		}
	}
}

// MySQL names are not PostgreSQL's: MariaDB 10.11 accepts user names of up
// to 128 characters (tried: 128 is created, 129 is error 1470), so a name
// past PostgreSQL's 63 bytes is dropped there, and one past 128 characters
// is refused as invalid before anything runs.
func TestMySQLNameLimitIsMySQLs(t *testing.T) {
	t.Parallel()
	r := newMySQLRig(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	long := "v-long-" + hex.EncodeToString(b) + "-" + strings.Repeat("x", 128-16)
	if len(long) != 128 {
		t.Fatalf("test name is %d characters", len(long))
	}
	for _, h := range []string{"%", "localhost"} {
		if _, err := r.root.Exec(`CREATE USER ?@? IDENTIFIED BY 'pw'`, long, h); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = r.root.Exec(`DROP USER IF EXISTS ?@?`, long, h) })
	}

	got := execOne(r.exec, r.signed(t, long, schemas.CorroboratedByVaultLookup))
	if !got.Recorded || got.Result.Outcome != schemas.OutcomeDropped {
		t.Fatalf("128-character name: %+v (%v), want dropped", got.Result, got.Err)
	}
	if n := r.hosts(t, long); n != 0 {
		t.Errorf("%d hosts of the 128-character name left", n)
	}

	tooLong := long + "y"
	got = execOne(r.exec, r.signed(t, tooLong, schemas.CorroboratedByVaultLookup))
	if got.Result.Outcome != schemas.OutcomeRefused || got.Result.Guard != revoker.GuardInvalidName ||
		!strings.Contains(got.Result.Reason, "128") {
		t.Errorf("129-character name: %+v, want refused as invalid_name, naming MySQL's 128", got.Result)
	}
}

// The revoker dies after MySQL dropped the user and before the outcome was
// recorded; the command is delivered again and finds the user absent. The
// drop was this command's: the redelivery records it as dropped, once,
// saying the user was absent at the re-check and which earlier attempt
// dropped it, so a SIEM sees one drop and no already_absent.
func TestCrashBeforeRecordOnMySQL(t *testing.T) {
	t.Parallel()
	plan := newFaultPlan().crash(revoker.StepBeforeRecord, 1)
	r := newMySQLRigWith(t, revoker.DropperConfig{Faults: plan.fn})
	name := r.user(t, "crash")
	cmd := r.signed(t, name, schemas.CorroboratedByVaultLookup)

	first := execOne(r.exec, cmd)
	if first.Recorded || !first.Retry || plan.count(revoker.StepBeforeRecord) != 1 {
		t.Fatalf("first attempt %+v (%v), want it stopped before the record and handed back", first.Result, first.Err)
	}
	if n := r.hosts(t, name); n != 0 {
		t.Fatalf("%d hosts of %s left after the first attempt's drop", n, name)
	}

	again := execOne(r.exec, cmd)
	res := again.Result
	if !again.Recorded || res.Outcome != schemas.OutcomeDropped ||
		!strings.Contains(res.Reason, "absent at the re-check") || !strings.Contains(res.Reason, "earlier attempt") {
		t.Fatalf("redelivery %+v, want dropped, naming the earlier attempt", res)
	}
	if len(res.Statements) == 0 || !strings.Contains(strings.Join(res.Statements, ";"), "DROP USER") {
		t.Errorf("statements %v, want the earlier attempt's DROP USER", res.Statements)
	}
	rev, err := store.GetRevocation(context.Background(), r.st.Pool(), cmd.ID)
	if err != nil || rev.Attempts != 2 || rev.Outcome != schemas.OutcomeDropped {
		t.Errorf("revocation %+v, %v; want dropped after 2 attempts", rev, err)
	}
	var outcomes []string
	rows, err := r.st.Pool().Query(context.Background(), `SELECT convert_from(event, 'UTF8')::jsonb->'data'->'unmapped'->>'outcome'
		FROM evidence_outbox WHERE subject = $1 AND type = 'io.leaseguard.revocation.v1' ORDER BY seq`, "maria/"+name)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			t.Fatal(err)
		}
		outcomes = append(outcomes, o)
	}
	if len(outcomes) != 1 || outcomes[0] != "dropped" {
		t.Errorf("revocation evidence outcomes %v, want one dropped", outcomes)
	}
}

// A user someone else dropped (Vault's own revocation) is already_absent:
// no earlier attempt of the command dropped it.
func TestAbsentMySQLUserIsAlreadyAbsent(t *testing.T) {
	t.Parallel()
	r := newMySQLRig(t)
	name := r.user(t, "gone")
	for _, h := range []string{"%", "localhost"} {
		if _, err := r.root.Exec(`DROP USER ?@?`, name, h); err != nil {
			t.Fatal(err)
		}
	}
	got := execOne(r.exec, r.signed(t, name, schemas.CorroboratedByVaultLookup))
	if got.Result.Outcome != schemas.OutcomeAlreadyAbsent || strings.Contains(got.Result.Reason, "earlier attempt") {
		t.Errorf("%+v, want already_absent", got.Result)
	}
}

// On MySQL each command is one account at a time, under the account's
// named lock: a drop that waits on that lock (another revoker holds it)
// must not hold up the other accounts of the batch.
func TestMySQLDropsOfABatchDoNotWaitOnEachOther(t *testing.T) {
	t.Parallel()
	r := newMySQLRig(t)
	held, free := r.user(t, "held"), r.user(t, "free")
	// Another revoker's lock on the first account, as target/mysql names it
	// (a digest of the name, as docs/mysql.md says).
	conn, err := r.root.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256([]byte(held))
	var got int
	if err := conn.QueryRowContext(context.Background(), `SELECT GET_LOCK(?, 0)`,
		"leaseguard.user:"+hex.EncodeToString(sum[:16])).Scan(&got); err != nil || got != 1 {
		t.Fatalf("take the lock: %d %v", got, err)
	}
	cmds := []schemas.RevocationCommand{r.signed(t, held, schemas.CorroboratedByVaultLookup),
		r.signed(t, free, schemas.CorroboratedByVaultLookup)}

	out := r.exec.Execute(context.Background(), cmds, nil)

	a, b := out[0].Result, out[1].Result
	if a.Outcome == schemas.OutcomeDropped {
		t.Fatalf("the held account was dropped under another revoker's lock: %+v", a)
	}
	if b.Outcome != schemas.OutcomeDropped {
		t.Fatalf("the free account: %+v (%v)", b, out[1].Err)
	}
	if !b.FinishedAt.Before(a.FinishedAt) {
		t.Errorf("the free account's drop finished at %s, after the held one gave up (%s): it waited on it",
			b.FinishedAt.Format(time.StampMilli), a.FinishedAt.Format(time.StampMilli))
	}
}
