package revoker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/cmdtest"
	"github.com/leaseguard/leaseguard/internal/natstest"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

type svcRig struct {
	st       *store.Store
	admin    *pgxpool.Pool
	js       jetstream.JetStream
	nc       *nats.Conn
	signer   *revoker.Signer
	verifier *revoker.Verifier
	dropper  *revoker.Dropper
	cfg      revoker.ServiceConfig
	activity *revoker.Activity
}

func newSvcRig(t *testing.T) *svcRig {
	t.Helper()
	return newSvcRigWith(t, revoker.DropperConfig{})
}

// newSvcRigWith is newSvcRig whose revoker drops with a Dropper of dcfg
// (its faults, say).
func newSvcRigWith(t *testing.T, dcfg revoker.DropperConfig) *svcRig {
	t.Helper()
	ctx := context.Background()
	st := migratedStore(t, "lg_revoker")
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	signer, verifier := testKeys(t)
	dropper, err := revoker.NewDropper(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	admin := pgtest.Pool(t)
	cfg := revoker.DefaultServiceConfig()
	cfg.AckWait = 5 * time.Second
	cfg.Backoff = []time.Duration{100 * time.Millisecond}
	cfg.Activity = &revoker.Activity{}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{
		Dropper: dropper, Verifier: verifier, Targets: target.Pools{"main": admin}, State: st.Pool(),
		Evidence: evidence.Builder{Source: "urn:leaseguard:test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := revoker.NewService(cfg, js, exec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.EnsureConsumer(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("revoker stopped with error: %v", err)
		}
	})
	return &svcRig{st: st, admin: admin, js: js, nc: nc, signer: signer, verifier: verifier, dropper: dropper, cfg: cfg,
		activity: cfg.Activity}
}

func (r *svcRig) role(t *testing.T, name string) {
	t.Helper()
	if _, err := r.admin.Exec(context.Background(), "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, r.admin, name)
}

func (r *svcRig) command(t *testing.T, id, user string) schemas.RevocationCommand {
	t.Helper()
	cmd := cmdtest.Drop(t, r.admin, "main", user)
	cmd.ID = id
	if err := r.signer.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// publish sends the command bytes without a message id, so every publish
// is a separate delivery (as a redelivery or a resubmission would be).
func (r *svcRig) publish(t *testing.T, v any) {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.js.Publish(context.Background(), r.cfg.Queue.Subject, b); err != nil {
		t.Fatal(err)
	}
}

// drained waits until the revoker has acknowledged every command published
// so far: its ack floor reaches the stream's last sequence.
func (r *svcRig) drained(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	stream, err := r.js.Stream(ctx, r.cfg.Queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	si, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := si.State.LastSeq
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := r.js.Consumer(ctx, r.cfg.Queue.Stream, r.cfg.Consumer)
		if err == nil {
			if info, err := c.Info(ctx); err == nil && info.AckFloor.Stream >= last && info.NumAckPending == 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("revocation queue not drained")
}

// outcomes lists the outcomes in the revocation evidence of user, in chain
// order, as a SIEM filters on them: data.status_code. It must agree with
// unmapped.outcome.
func (r *svcRig) outcomes(t *testing.T, user string) []string {
	t.Helper()
	var out []string
	for _, ev := range r.revocationEvidence(t, user) {
		if ev.Data.StatusCode != ev.Data.Unmapped.Outcome {
			t.Errorf("evidence of %s: status_code %q, unmapped.outcome %q", user, ev.Data.StatusCode, ev.Data.Unmapped.Outcome)
		}
		out = append(out, ev.Data.StatusCode)
	}
	return out
}

// revocationEvent is the part of a revocation's evidence the tests read.
type revocationEvent struct {
	Data struct {
		StatusCode   string `json:"status_code"`
		StatusDetail string `json:"status_detail"`
		Unmapped     struct {
			Outcome string `json:"outcome"`
		} `json:"unmapped"`
	} `json:"data"`
}

// revocationEvidence is the revocation evidence of user, in chain order.
func (r *svcRig) revocationEvidence(t *testing.T, user string) []revocationEvent {
	t.Helper()
	rows, err := r.st.Pool().Query(context.Background(),
		`SELECT convert_from(event, 'UTF8') FROM evidence_outbox WHERE subject = $1 AND type = 'io.leaseguard.revocation.v1' ORDER BY seq`, "main/"+user)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out []revocationEvent
	for _, e := range evs {
		var ce revocationEvent
		if err := json.Unmarshal([]byte(e), &ce); err != nil {
			t.Fatal(err)
		}
		out = append(out, ce)
	}
	return out
}

func exists(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestServiceDuplicateDeliveryAndSecondCommand(t *testing.T) {
	t.Parallel()
	r := newSvcRig(t)
	user := "v-token-dup-" + pgtest.Suffix()
	r.role(t, user)
	cmd := r.command(t, "cmd-"+user, user)
	r.publish(t, cmd)
	r.publish(t, cmd) // the same command delivered twice
	r.drained(t)
	if exists(t, r.admin, user) {
		t.Fatal("user not dropped")
	}
	if got := r.outcomes(t, user); len(got) != 1 || got[0] != "dropped" {
		t.Fatalf("evidence outcomes after a duplicate delivery = %v, want [dropped]", got)
	}
	// A second command (another id) for the same user.
	r.publish(t, r.command(t, "cmd2-"+user, user))
	r.drained(t)
	if got := r.outcomes(t, user); len(got) != 2 || got[0] != "dropped" || got[1] != "already_absent" {
		t.Fatalf("evidence outcomes after a second command = %v, want [dropped already_absent]", got)
	}
	revs, err := store.RevocationsByUser(context.Background(), r.st.Pool(), "main", user)
	if err != nil || len(revs) != 2 || revs[0].Attempts != 2 {
		t.Fatalf("revocations = %+v, %v", revs, err)
	}
	rep, err := evidence.VerifyOutbox(context.Background(), r.st.Pool(), evidence.VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Errorf("chain = %+v %v", rep, err)
	}
}

func TestServiceRefusesUnsignedAndForged(t *testing.T) {
	t.Parallel()
	r := newSvcRig(t)
	user := "v-token-forged-" + pgtest.Suffix()
	r.role(t, user)
	unsigned := r.command(t, "unsigned-"+user, user)
	unsigned.Signature, unsigned.KeyID = "", ""
	forged := r.command(t, "forged-"+user, user)
	forged.DBUser = user // re-signed below with another key
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	if err := revoker.NewSigner(otherKey).Sign(&forged); err != nil {
		t.Fatal(err)
	}
	tampered := r.command(t, "tampered-"+user, "v-token-someone-else")
	tampered.DBUser = user
	r.publish(t, unsigned)
	r.publish(t, forged)
	r.publish(t, tampered)
	r.publish(t, tampered) // redelivered: recorded once
	r.drained(t)
	if !exists(t, r.admin, user) {
		t.Fatal("a user was dropped on the word of an unsigned or forged command")
	}
	got := r.outcomes(t, user)
	if len(got) != 3 || got[0] != "refused" || got[1] != "refused" || got[2] != "refused" {
		t.Fatalf("outcomes = %v, want three refusals", got)
	}
	// Refused before anything was recorded under their ids: no claim, so
	// none of them can take the id of a real command.
	for _, id := range []string{unsigned.ID, forged.ID, tampered.ID} {
		if _, err := store.GetRevocation(context.Background(), r.st.Pool(), id); !errors.Is(err, store.ErrNoRevocation) {
			t.Errorf("command %s was recorded under its id: %v", id, err)
		}
	}
	var refused, findings int
	if err := r.st.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM refused_commands WHERE guard = 'signature'),
		(SELECT count(*) FROM findings WHERE rule = 'command-refused' AND severity = 'critical')`).Scan(&refused, &findings); err != nil {
		t.Fatal(err)
	}
	if refused != 3 || findings != 3 {
		t.Errorf("refused commands %d, critical findings %d; want 3 and 3", refused, findings)
	}
	// The real command of one of those ids still acts.
	r.publish(t, r.command(t, unsigned.ID, user))
	r.drained(t)
	if exists(t, r.admin, user) {
		t.Error("the real command was not carried out after a forged one took its id")
	}
}

func TestServiceDeadLettersMalformedAndRefusesUnknownTarget(t *testing.T) {
	t.Parallel()
	r := newSvcRig(t)
	r.publish(t, []byte(`{"type":"io.leaseguard.revocation_command.v2","id":"x","db_user":"v-a","database":"main","rule":"r","extra":1}`))
	r.publish(t, []byte(`not json`))
	user := "v-token-elsewhere-" + pgtest.Suffix()
	cmd := r.command(t, "elsewhere-"+user, user)
	cmd.Database = "nowhere"
	if err := r.signer.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	r.publish(t, cmd)
	r.drained(t)
	// A dead letter is stored before its command is acknowledged: once the
	// queue is drained, every dead letter there will be is in the stream.
	dead := r.deadLetters(t)
	if len(dead) != 2 {
		t.Fatalf("dead letters = %d, want 2", len(dead))
	}
	for _, m := range dead {
		if m.Header.Get("Leaseguard-Reason") == "" {
			t.Errorf("dead letter without reason: %q", m.Data)
		}
	}
	var guard string
	if err := r.st.Pool().QueryRow(context.Background(), `SELECT guard FROM refused_commands WHERE database = 'nowhere' AND db_user = $1`, user).Scan(&guard); err != nil || guard != "unknown_target" {
		t.Fatalf("unknown target refusal = %q, %v", guard, err)
	}
}

// deadLetters reads the dead-letter stream.
func (r *svcRig) deadLetters(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := r.js.Stream(ctx, bus.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestServiceCrashAfterDropBeforeRecord: an earlier attempt dropped the
// role and died before it recorded the outcome. The redelivered command
// must end with exactly one "dropped".
func TestServiceCrashAfterDropBeforeRecord(t *testing.T) {
	t.Parallel()
	r := newSvcRig(t)
	ctx := context.Background()
	user := "v-token-crash-" + pgtest.Suffix()
	r.role(t, user)
	cmd := r.command(t, "crash-"+user, user)
	// The first attempt: claimed, transaction id recorded, drop committed,
	// then the process dies.
	if _, err := store.ClaimRevocation(ctx, r.st.Pool(), cmd); err != nil {
		t.Fatal(err)
	}
	res := r.dropper.DropBatch(ctx, r.admin, "main", []schemas.RevocationCommand{cmd}, func(ctx context.Context, xid int64, ids []string) error {
		return store.SetTargetXID(ctx, r.st.Pool(), ids, xid)
	})
	if res[0].Outcome != schemas.OutcomeDropped {
		t.Fatalf("first attempt = %+v", res[0])
	}
	if got := r.outcomes(t, user); len(got) != 0 {
		t.Fatalf("evidence before redelivery = %v", got)
	}
	// Redelivery.
	r.publish(t, cmd)
	r.drained(t)
	got := r.outcomes(t, user)
	if len(got) != 1 || got[0] != "dropped" {
		t.Fatalf("outcomes after redelivery = %v, want exactly [dropped]", got)
	}
	// A SIEM rule on status_code finds this drop like any other; the
	// explanation is status_detail.
	if ev := r.revocationEvidence(t, user)[0]; !strings.HasPrefix(ev.Data.StatusDetail, "dropped by an earlier attempt (target transaction ") {
		t.Errorf("status_detail = %q, want the earlier attempt's explanation", ev.Data.StatusDetail)
	}
	rev, err := store.GetRevocation(ctx, r.st.Pool(), cmd.ID)
	if err != nil || rev.Result == nil || !strings.Contains(rev.Result.Reason, "earlier attempt") {
		t.Fatalf("revocation = %+v, %v", rev, err)
	}
}

// TestServiceDeadLettersHoldNoSecrets: a forged message on the queue that
// carries a password or a token is dead-lettered with those redacted,
// body and headers, in a dead-letter stream that forgets after its max age.
func TestServiceDeadLettersHoldNoSecrets(t *testing.T) {
	t.Parallel()
	r := newSvcRig(t)
	pw, token := "A1a-forgedCommandSecret1", "hvs.CAESIForgedCommandToken0001"
	r.publish(t, []byte(`{"type":"io.leaseguard.revocation_command.v1","id":"x","db_user":"v-a","database":"main","password":"`+pw+`"}`))
	r.publish(t, []byte(`{"id":"y","reason":"leaked `+token+`","db_user":"v-b","pass`))
	ctx := context.Background()
	s, err := r.js.Stream(ctx, bus.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	var dump []string
	waitFor(t, 20*time.Second, "two dead letters", func() bool {
		dump = dump[:0]
		info, err := s.Info(ctx)
		if err != nil {
			return false
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				return false
			}
			hdr, _ := json.Marshal(m.Header)
			dump = append(dump, string(hdr)+" "+string(m.Data))
		}
		return len(dump) == 2
	})
	for i, d := range dump {
		if strings.Contains(d, pw) || strings.Contains(d, token) || !strings.Contains(d, "[redacted]") || !strings.Contains(d, "Leaseguard-Reason") {
			t.Errorf("dead letter %d: %s", i, d)
		}
	}
	info, err := s.Info(ctx)
	if err != nil || info.Config.MaxAge != bus.DefaultDeadLetterMaxAge {
		t.Errorf("dead-letter stream max age = %v, want %v (%v)", info.Config.MaxAge, bus.DefaultDeadLetterMaxAge, err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKeyRotationWithCommandsInFlight follows the documented rotation:
// commands signed with the old key are still in the queue when the revoker
// restarts trusting both keys (step 2) and are carried out; commands of the
// new key too; once the old key is dropped from the verify keys (step 3),
// a command it signed is refused, and nothing is recorded under its id.
func TestKeyRotationWithCommandsInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newSvcRig(t)
	_, oldPriv, _ := ed25519.GenerateKey(rand.Reader)
	_, newPriv, _ := ed25519.GenerateKey(rand.Reader)
	oldKey, newKey := revoker.NewSigner(oldPriv), revoker.NewSigner(newPriv)
	sfx := pgtest.Suffix()
	users := []string{"v-rot-a-" + sfx, "v-rot-b-" + sfx, "v-rot-c-" + sfx, "v-rot-late-" + sfx}
	for _, u := range users {
		r.role(t, u)
	}
	signed := func(s *revoker.Signer, user string) schemas.RevocationCommand {
		cmd := cmdtest.Drop(t, r.admin, "main", user)
		cmd.ID = "rot-" + user
		if err := s.Sign(&cmd); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// In flight: two commands of the old key, queued before the restart.
	inFlight := []schemas.RevocationCommand{signed(oldKey, users[0]), signed(oldKey, users[1])}
	late := signed(oldKey, users[3])

	// Step 2: a revoker that trusts both keys drains the queue.
	both := r.service(t, "rotation", oldKey.PublicKey(), newKey.PublicKey())
	stop := both.start(t)
	for _, c := range inFlight {
		r.publishTo(t, both.subject, c)
	}
	r.publishTo(t, both.subject, signed(newKey, users[2]))
	both.drained(t)
	stop()
	for _, u := range users[:3] {
		if exists(t, r.admin, u) {
			t.Errorf("%s was not dropped during the rotation", u)
		}
	}
	// Step 3: the old key is no longer trusted.
	onlyNew := r.service(t, "rotation", newKey.PublicKey())
	defer onlyNew.start(t)()
	r.publishTo(t, onlyNew.subject, late)
	onlyNew.drained(t)
	if !exists(t, r.admin, users[3]) {
		t.Fatal("a command of the retired key was carried out")
	}
	if _, err := store.GetRevocation(ctx, r.st.Pool(), late.ID); !errors.Is(err, store.ErrNoRevocation) {
		t.Errorf("the retired key's command was recorded under its id: %v", err)
	}
	var guard string
	if err := r.st.Pool().QueryRow(ctx, `SELECT guard FROM refused_commands WHERE command_id = $1`, late.ID).Scan(&guard); err != nil || guard != "signature" {
		t.Errorf("refusal of the retired key's command: %q, %v", guard, err)
	}
}

// queueService is a revoker on a queue of its own, trusting the given keys.
type queueService struct {
	r       *svcRig
	svc     *revoker.Service
	cfg     revoker.ServiceConfig
	subject string
}

// service builds a revoker on queue name (its own stream and subject),
// whose verifier trusts pubs; start runs it until the returned stop.
func (r *svcRig) service(t *testing.T, name string, pubs ...ed25519.PublicKey) *queueService {
	t.Helper()
	verifier, err := revoker.NewVerifier(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := revoker.NewExecutor(revoker.ExecutorDeps{Dropper: r.dropper, Verifier: verifier,
		Targets: target.Pools{"main": r.admin}, State: r.st.Pool(), Evidence: evidence.Builder{Source: "urn:leaseguard:test"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.cfg
	cfg.Queue.Stream, cfg.Queue.Subject, cfg.Consumer = "Q_"+strings.ToUpper(name), "q."+name, "revoker-"+name
	svc, err := revoker.NewService(cfg, r.js, exec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.EnsureConsumer(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &queueService{r: r, svc: svc, cfg: cfg, subject: cfg.Queue.Subject}
}

func (q *queueService) start(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.svc.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("revoker stopped with error: %v", err)
		}
	}
}

func (q *queueService) drained(t *testing.T) {
	t.Helper()
	saved := q.r.cfg
	q.r.cfg = q.cfg
	defer func() { q.r.cfg = saved }()
	q.r.drained(t)
}

func (r *svcRig) publishTo(t *testing.T, subject string, cmd schemas.RevocationCommand) {
	t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.js.Publish(context.Background(), subject, b); err != nil {
		t.Fatal(err)
	}
}

// TestABatchWaitingOnARoleHoldsNoOtherBatch: a batch whose role is locked
// by someone else (another revoker's drop, an operator's session) waits for
// it, and the batches after it go on meanwhile: the revoker keeps more
// than one batch in flight, which also keeps its claims and records of one
// batch from idling the target while another drops.
func TestABatchWaitingOnARoleHoldsNoOtherBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The held drop waits on its lock longer than the test waits for the
	// free one, so the free one cannot pass in the held one's retry.
	r := newSvcRigWith(t, revoker.DropperConfig{LockTimeout: time.Minute, StatementTimeout: time.Minute})
	held, free := "v-token-held-"+pgtest.Suffix(), "v-token-free-"+pgtest.Suffix()
	r.role(t, held)
	r.role(t, free)
	lock, err := r.admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('leaseguard.role:' || $1, 0))`, held); err != nil {
		t.Fatal(err)
	}
	var holder int
	if err := lock.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	r.publish(t, r.command(t, "cmd-"+held, held))
	waitFor(t, 20*time.Second, "the held role's drop waiting on its lock", func() bool {
		var n int
		err := r.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, holder).Scan(&n)
		return err == nil && n > 0
	})
	r.publish(t, r.command(t, "cmd-"+free, free))
	waitFor(t, 20*time.Second, "the free role dropped while the held one waits", func() bool { return !exists(t, r.admin, free) })
	if !exists(t, r.admin, held) {
		t.Fatal("the held role was dropped under someone else's lock")
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	r.drained(t)
	if exists(t, r.admin, held) {
		t.Fatal("the held role was not dropped once its lock was released")
	}
	for _, u := range []string{held, free} {
		if got := r.outcomes(t, u); len(got) != 1 || got[0] != "dropped" {
			t.Errorf("evidence of %s: %v, want [dropped]", u, got)
		}
	}
}
