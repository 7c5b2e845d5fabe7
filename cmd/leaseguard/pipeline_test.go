package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
	"github.com/leaseguard/leaseguard/revoker"
)

// syncBuffer is a log sink safe for the pipeline's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPipelineEndToEnd runs the whole path in one process against the real
// PostgreSQL and an embedded JetStream: Vault-shaped audit entries →
// ledger → expiry → signed command → drop → evidence on the subject.
func TestPipelineEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := pgtest.Pool(t)
	schema := pgtest.Schema(t, "lg_e2e")
	sfx := pgtest.Suffix()
	protected := "v-protected-" + sfx

	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	// The observer's rules act on the whole shared test server; its own
	// package tests cover it with test-unique patterns.
	t.Setenv("LEASEGUARD_ROLES", "ingest,detectors,revoker,relay")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_EXPIRY_GRACE", "1s")
	t.Setenv("LEASEGUARD_DETECT_INTERVAL", "200ms")
	t.Setenv("LEASEGUARD_PROTECTED_ROLES", protected)
	t.Setenv("LEASEGUARD_LOG_LEVEL", "debug")
	// Nothing is enforced without a scope (TestRolloutPilotByDefault).
	t.Setenv("LEASEGUARD_ENFORCE_SCOPE", "*")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p, err := startPipeline(ctx, cfg, newLogger(logs, "debug", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.stop()
		}
	}()

	var evMu sync.Mutex
	var events []evidence.Event
	var raw [][]byte
	sub, err := p.nc.Subscribe(cfg.EvidenceSubject, func(m *nats.Msg) {
		var ev evidence.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Errorf("evidence is not a CloudEvent: %v", err)
			return
		}
		evMu.Lock()
		events = append(events, ev)
		raw = append(raw, append([]byte(nil), m.Data...))
		evMu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	// Vault issues three credentials in the target (the test database).
	tableSchema := pgtest.Schema(t, "lg_e2e_app")
	tbl := pgx.Identifier{tableSchema, "orders"}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE TABLE "+tbl+" (id int)"); err != nil {
		t.Fatal(err)
	}
	sim := &vaultsim.Sim{Pool: admin, Mount: "postgres", DisplayName: "token", EntityID: "ent-" + sfx, RemoteAddress: "10.1.2.3"}
	grants := []string{"GRANT USAGE ON SCHEMA " + pgx.Identifier{tableSchema}.Sanitize() + " TO {{name}}", "GRANT SELECT ON " + tbl + " TO {{name}}"}
	expiring, lines1, err := sim.Issue(ctx, "reporting", 2*time.Second, grants...)
	if err != nil {
		t.Fatal(err)
	}
	renewed, lines2, err := sim.Issue(ctx, "reporting", 2*time.Second, grants...)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, admin, expiring.Username, renewed.Username, protected)
	renewLines, err := sim.Renew(ctx, &renewed, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The expiring user owns a table and holds a live session.
	owned := pgx.Identifier{tableSchema, "scratch"}.Sanitize()
	if _, err := admin.Exec(ctx, "GRANT CREATE ON SCHEMA "+pgx.Identifier{tableSchema}.Sanitize()+" TO "+pgx.Identifier{expiring.Username}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	conn := connectAs(t, ctx, expiring.Username, expiring.Password)
	if _, err := conn.Exec(ctx, "CREATE TABLE "+owned+" (x int)"); err != nil {
		t.Fatal(err)
	}
	// A protected role, issued the same way, must survive.
	if _, err := admin.Exec(ctx, "CREATE ROLE "+pgx.Identifier{protected}.Sanitize()+" LOGIN VALID UNTIL '2000-01-01'"); err != nil {
		t.Fatal(err)
	}
	protLine := strings.ReplaceAll(string(lines2[1]), renewed.Username, protected)
	protLine = strings.ReplaceAll(protLine, renewed.LeaseID, "postgres/creds/reporting/PROTECTEDxxxxxxxxxxxxxxxx")

	var all [][]byte
	all = append(all, lines1...)
	all = append(all, lines2...)
	all = append(all, renewLines...)
	all = append(all, []byte(protLine))
	for _, l := range all {
		if _, err := p.js.Publish(ctx, "vault.audit.file", l); err != nil {
			t.Fatal(err)
		}
	}

	// The expiring user is dropped: role gone, session cut, table reassigned.
	waitFor(t, ctx, 30*time.Second, "expired user dropped", func() bool { return !roleExists(ctx, admin, expiring.Username) })
	if err := conn.Ping(ctx); err == nil {
		t.Error("the dropped user's session is still alive")
	}
	var owner string
	if err := admin.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE schemaname = $1 AND tablename = 'scratch'", tableSchema).Scan(&owner); err != nil {
		t.Errorf("owned table was not kept (reassigned): %v", err)
	}
	// Evidence: a finding and a dropped revocation for that user, and a
	// refusal for the protected role.
	subject := cfg.targetName() + "/" + expiring.Username
	waitFor(t, ctx, 30*time.Second, "evidence relayed", func() bool {
		evMu.Lock()
		defer evMu.Unlock()
		var dropped, refused bool
		for _, ev := range events {
			if ev.Type == "io.leaseguard.revocation.v1" && ev.Subject == subject && strings.Contains(string(ev.Data), `"outcome":"dropped"`) {
				dropped = true
			}
			if ev.Type == "io.leaseguard.revocation.v1" && strings.HasSuffix(ev.Subject, "/"+protected) && strings.Contains(string(ev.Data), `"guard":"protected"`) {
				refused = true
			}
		}
		return dropped && refused
	})
	if !roleExists(ctx, admin, protected) {
		t.Error("protected role was dropped")
	}
	if !roleExists(ctx, admin, renewed.Username) {
		t.Error("renewed user was dropped")
	}

	// Exactly one "dropped" per user, as the SIEM received it, once the
	// pipeline has gone past every point that could still add one.
	received := func() int {
		evMu.Lock()
		defer evMu.Unlock()
		return len(events)
	}
	waitQuiet(t, ctx, p, schema, received)
	evMu.Lock()
	dropped, ids := map[string]int{}, map[string]int{}
	for _, ev := range events {
		ids[ev.ID]++
		if ev.Type == "io.leaseguard.revocation.v1" && strings.Contains(string(ev.Data), `"outcome":"dropped"`) {
			dropped[ev.Subject]++
		}
	}
	evMu.Unlock()
	for _, u := range []string{expiring.Username, renewed.Username, protected} {
		want := 0
		if u == expiring.Username {
			want = 1
		}
		if got := dropped[cfg.targetName()+"/"+u]; got != want {
			t.Errorf("%s: %d dropped evidence relayed, want %d", u, got, want)
		}
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("evidence %s relayed %d times", id, n)
		}
	}

	// The chain verifies, in the outbox and as the SIEM received it.
	var out bytes.Buffer
	m := NewMain(strings.NewReader(""), &out, io.Discard)
	if code := m.Run(ctx, []string{"evidence", "verify"}); code != 0 {
		t.Errorf("evidence verify exit %d: %s", code, out.String())
	}
	evMu.Lock()
	file := bytes.Join(raw, []byte("\n"))
	evMu.Unlock()
	if rep, err := evidence.VerifyFile(bytes.NewReader(file), evidence.VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("relayed evidence does not verify: %+v %v", rep, err)
	}

	// No password anywhere: ledger, outbox, logs, metrics. The entries
	// here carry only HMACs of the passwords, so this cannot fail on
	// input; TestSecretsNeverStored feeds plaintext through every path.
	metrics := httpGet(t, "http://"+p.opsSrv.Addr()+"/metrics")
	stateDump := dumpSchema(t, ctx, admin, schema)
	for name, hay := range map[string]string{"logs": logs.String(), "metrics": metrics, "state store": stateDump, "evidence": string(file)} {
		for _, pw := range []string{expiring.Password, renewed.Password} {
			if strings.Contains(hay, pw) {
				t.Errorf("a password appears in the %s", name)
			}
		}
	}
	// The series exists at 0 from the start: the drop makes it count.
	if !regexp.MustCompile(`(?m)^leaseguard_revocations_total\{guard="",outcome="dropped"\} [1-9]`).MatchString(metrics) {
		t.Errorf("metrics lack the dropped revocation")
	}
	stopped = true
	if err := p.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	// A graceful stop checkpoints the head with the evidence key made in
	// DATA_DIR: every event in the outbox is confirmed.
	out.Reset()
	if code := NewMain(strings.NewReader(""), &out, io.Discard).Run(ctx, []string{"evidence", "verify", "--require-checkpoint"}); code != 0 {
		t.Errorf("evidence verify --require-checkpoint after the stop: exit %d: %s", code, out.String())
	}
}

// waitQuiet waits until the pipeline has processed past every point where
// it could still add evidence: two more expiry passes (a command one of them
// issued is in the queue when it ends), the revocation queue drained, the
// outbox published, and received() (events the test subscriber got) equal
// to the outbox.
func waitQuiet(t *testing.T, ctx context.Context, p *pipeline, schema string, received func() int) {
	t.Helper()
	from := detectorPasses(t, p)
	waitFor(t, ctx, 30*time.Second, "two more expiry passes", func() bool { return detectorPasses(t, p) >= from+2 })
	qcfg, scfg := revoker.DefaultQueueConfig(), revoker.DefaultServiceConfig()
	waitFor(t, ctx, 30*time.Second, "revocation queue drained", func() bool {
		c, err := p.js.Consumer(ctx, qcfg.Stream, scfg.Consumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	outbox := pgx.Identifier{schema, "evidence_outbox"}.Sanitize()
	var total int
	waitFor(t, ctx, 30*time.Second, "outbox published and received", func() bool {
		var unpublished int
		if err := p.store.Pool().QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM "+outbox).
			Scan(&total, &unpublished); err != nil {
			return false
		}
		return unpublished == 0 && received() >= total
	})
	if n := received(); n != total {
		t.Errorf("the subscriber received %d events, the outbox holds %d", n, total)
	}
}

// detectorPasses is how many expiry passes have ended.
func detectorPasses(t *testing.T, p *pipeline) uint64 {
	t.Helper()
	mfs, err := p.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "leaseguard_detector_pass_seconds" && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

func connectAs(t *testing.T, ctx context.Context, user, password string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = user, password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func waitFor(t *testing.T, ctx context.Context, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// dumpSchema renders every row of every table in schema as text.
func dumpSchema(t *testing.T, ctx context.Context, pool interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, schema string) string {
	t.Helper()
	rows, err := pool.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tb := range tables {
		rows, err := pool.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{schema, tb}.Sanitize()+" t")
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.Join(lines, "\n"))
		// bytea columns render as hex: decode the outbox's event bytes too.
	}
	rows, err = pool.Query(ctx, "SELECT convert_from(event, 'UTF8') FROM "+pgx.Identifier{schema, "evidence_outbox"}.Sanitize())
	if err == nil {
		evs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		b.WriteString(strings.Join(evs, "\n"))
	}
	return b.String()
}
