//go:build linux

// The end-to-end shipping tests run Debian's rsyslogd and kcat (see
// scripts/ensure-tools.sh), so they are built on Linux only.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
)

// shippedRsyslogConf is the rsyslog configuration users install; the test
// runs rsyslogd with it, only its site-specific values replaced.
const shippedRsyslogConf = "../../deploy/shippers/rsyslog-vault-audit.conf"

// TestShipperRsyslogKafka runs the Kafka path with programs nobody here
// wrote, as users would: Vault-style audit entries are appended to a file
// audit log; a real rsyslogd (imfile → omkafka), configured from the
// shipped configuration, produces each line to the in-process broker;
// leaseguard drops the expired users and relays its evidence to Kafka,
// where kcat reads it as a SIEM would. One credential's audit entries are
// longer than rsyslog's default 8 KB message limit, so the shipped
// configuration's raised limit is exercised too (without it rsyslog cuts
// them, and leaseguard dead-letters the cut entries as truncated).
func TestShipperRsyslogKafka(t *testing.T) {
	rsyslogd := findProgram(t, "rsyslogd")
	kcat := findProgram(t, "kcat")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(2, "vault.audit", "vault.leases"), kfake.SeedTopics(1, "leaseguard.deadletter", "leaseguard.evidence"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close) // after rsyslogd and the pipeline stopped
	broker := cluster.ListenAddrs()[0]

	admin := pgtest.Pool(t)
	schema := pgtest.Schema(t, "lg_ship")
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	// The observer's rules act on the whole shared test server; its own
	// package tests cover it with test-unique patterns.
	t.Setenv("LEASEGUARD_ROLES", "ingest,detectors,revoker,relay")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_EXPIRY_GRACE", "1s")
	t.Setenv("LEASEGUARD_DETECT_INTERVAL", "200ms")
	t.Setenv("LEASEGUARD_ENFORCE_SCOPE", "*") // nothing is enforced without a scope
	t.Setenv("LEASEGUARD_KAFKA_BROKERS", broker)
	// rsyslog ships the raw line: no envelope.
	t.Setenv("LEASEGUARD_EVIDENCE_SINKS", "nats,kafka")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p, err := startPipeline(ctx, cfg, newLogger(logs, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop() })

	dir := t.TempDir()
	auditLog := filepath.Join(dir, "vault-audit.log")
	confPath, _ := rsyslogConfig(t, ctx, rsyslogd, dir, auditLog, broker)
	rs := startRsyslog(t, ctx, rsyslogd, confPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("leaseguard log:\n%s", tail(logs.String(), 8<<10))
			for _, r := range kcatRecords(t, context.Background(), kcat, broker, "leaseguard.deadletter", "%h") {
				t.Logf("dead letter: %s\n  %.300s", r.key, r.value)
			}
		}
	})

	// Vault issues two credentials with a 1 s lease. The second one's
	// client token carries many policies, which makes both of its audit
	// entries several times longer than rsyslog's default 8 KB limit.
	sim := &vaultsim.Sim{Pool: admin, Mount: "postgres", DisplayName: "token", EntityID: "ent-" + pgtest.Suffix(), RemoteAddress: "10.0.0.7"}
	short, shortLines, err := sim.Issue(ctx, "ship", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, admin, short.Username)
	long, longLines, err := sim.Issue(ctx, "shiplong", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DropRoleAtCleanup(t, admin, long.Username)
	longLines = withManyPolicies(t, longLines, 150)
	for _, l := range longLines {
		if len(l) <= 16<<10 {
			t.Fatalf("long audit entry has %d bytes, want more than 16 KiB", len(l))
		}
	}
	var entries [][]byte
	entries = append(entries, sim.Noise()...)
	entries = append(entries, shortLines...)
	entries = append(entries, longLines...)
	// Vault creates the file when the device is enabled, after rsyslogd
	// started watching for it, and appends one line per entry.
	appendAuditLog(t, auditLog, entries)

	// rsyslog produced every line to the audit topic, byte for byte.
	checkShipped(t, ctx, kcat, broker, entries, 15*time.Second)
	if t.Failed() {
		t.FailNow() // the rest depends on it; rsyslogd's log says why
	}

	// leaseguard dropped both users once their leases expired.
	waitFor(t, ctx, 25*time.Second, "both expired users dropped", func() bool {
		return !roleExists(ctx, admin, short.Username) && !roleExists(ctx, admin, long.Username)
	})

	// The long entries were read whole: the creds request is complete in
	// the ledger (request and response, with the lease), and nothing was
	// dead-lettered.
	reqID := auditRequestID(t, longLines[0])
	var requested, responded bool
	var leaseID string
	q := "SELECT requested_at IS NOT NULL, responded_at IS NOT NULL, coalesce(lease_id, '') FROM " +
		pgx.Identifier{schema, "creds_requests"}.Sanitize() + " WHERE request_id = $1"
	if err := admin.QueryRow(ctx, q, reqID).Scan(&requested, &responded, &leaseID); err != nil {
		t.Errorf("creds request %s of the long entries is not in the ledger: %v", reqID, err)
	} else if !requested || !responded || leaseID != long.LeaseID {
		t.Errorf("creds request %s: requested %v, responded %v, lease %q; want both entries and lease %q", reqID, requested, responded, leaseID, long.LeaseID)
	}
	if dead := kcatRecords(t, ctx, kcat, broker, "leaseguard.deadletter", "%h"); len(dead) > 0 {
		t.Errorf("%d audit records were dead-lettered", len(dead)) // listed at cleanup
	}

	// A SIEM reads the evidence topic with kcat: a record keyed
	// <database>/<user> per dropped user, its value the CloudEvent.
	want := map[string]bool{cfg.targetName() + "/" + short.Username: false, cfg.targetName() + "/" + long.Username: false}
	var evidenceRecs []kcatRecord
	waitFor(t, ctx, 15*time.Second, "dropped evidence on leaseguard.evidence (kcat)", func() bool {
		evidenceRecs = kcatRecords(t, ctx, kcat, broker, "leaseguard.evidence", "%k")
		for _, r := range evidenceRecs {
			if _, ok := want[r.key]; ok && revocationOutcome(r.value, r.key) == "dropped" {
				want[r.key] = true
			}
		}
		for _, found := range want {
			if !found {
				return false
			}
		}
		return true
	})
	// What the SIEM received verifies as a chain.
	var values bytes.Buffer
	for _, r := range evidenceRecs {
		values.WriteString(r.value + "\n")
	}
	if rep, err := evidence.VerifyFile(&values, evidence.VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("evidence read by kcat does not verify: %+v %v", rep, err)
	}

	// rsyslogd stops cleanly when asked, with nothing left to deliver.
	if err := rs.stop(); err != nil {
		t.Errorf("rsyslogd: %v", err)
	}
}

// TestShipperRsyslogOutage: with the shipped configuration, lines Vault
// writes while Kafka is unreachable are delivered once it is back, even
// when rsyslogd is restarted during the outage (omkafka keeps the records
// it held in its failed-message file).
func TestShipperRsyslogOutage(t *testing.T) {
	rsyslogd := findProgram(t, "rsyslogd")
	kcat := findProgram(t, "kcat")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// A loopback port nobody listens on yet: the broker is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	broker := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	dir := t.TempDir()
	auditLog := filepath.Join(dir, "vault-audit.log")
	confPath, logFile := rsyslogConfig(t, ctx, rsyslogd, dir, auditLog, broker)
	// rsyslogd counts what entered the Kafka action's queue (impstats,
	// every second): from there a line is either handed to omkafka (kept in
	// its failed-message file at shutdown) or, once omkafka has suspended
	// the action for the dead broker, held in the queue (saved on
	// shutdown). Either way it is in rsyslogd's hands; which one depends on
	// whether the line came before the first failed connection.
	statsFile := filepath.Join(dir, "stats.log")
	appendFile(t, confPath, "\nmodule(load=\"impstats\" interval=\"1\" log.syslog=\"off\" log.file=\""+statsFile+"\")\n")
	rs := startRsyslog(t, ctx, rsyslogd, confPath)
	sim := &vaultsim.Sim{Mount: "postgres", DisplayName: "token", EntityID: "ent-outage", RemoteAddress: "10.0.0.8"}
	before := append(sim.Noise(), sim.Noise()...)
	appendAuditLog(t, auditLog, before)
	waitFor(t, ctx, 20*time.Second, "the Kafka action to take every line while the broker is down", func() bool {
		return actionEnqueued(readFile(statsFile)) >= len(before)
	})
	// rsyslogd stops during the outage and saves what it holds.
	if err := rs.stop(); err != nil {
		t.Fatalf("rsyslogd: %v", err)
	}
	if out := rs.output.String() + readFile(logFile); !strings.Contains(out, "omkafka: action will suspend") {
		t.Fatalf("omkafka did not report the broker down; the outage was not exercised")
	}
	saved, _ := filepath.Glob(filepath.Join(dir, "spool", "vault-audit-kafka*"))
	if len(saved) == 0 {
		t.Fatalf("rsyslogd saved nothing in its work directory during the outage")
	}
	t.Logf("saved during the outage: %v", saved)

	// Kafka is back, rsyslogd starts again and Vault writes on.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(2, "vault.audit"))
	if err != nil {
		t.Fatalf("start the broker on port %d: %v", port, err)
	}
	t.Cleanup(cluster.Close)
	startRsyslog(t, ctx, rsyslogd, confPath)
	after := sim.Noise()
	appendAuditLog(t, auditLog, after)
	checkShipped(t, ctx, kcat, broker, append(before, after...), 20*time.Second)
}

// checkShipped waits until every entry is on vault.audit, each record's
// value the line as Vault wrote it and its key the shipped
// configuration's, and reports records that are not. The value ends in
// the line's newline, except for records omkafka saved across a restart:
// it reads them back line by line, without it.
func checkShipped(t *testing.T, ctx context.Context, kcat, broker string, entries [][]byte, within time.Duration) {
	t.Helper()
	want := map[string]bool{}
	for _, e := range entries {
		want[string(e)] = true
	}
	var recs []kcatJSON
	missing := 0
	deadline := time.Now().Add(within)
	for {
		recs = kcatPayloads(t, ctx, kcat, broker, "vault.audit")
		missing = len(want)
		seen := map[string]bool{}
		for _, r := range recs {
			if e := strings.TrimSuffix(r.Payload, "\n"); want[e] && !seen[e] {
				seen[e] = true
				missing--
			}
		}
		if missing == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if missing > 0 {
		t.Errorf("%d of %d audit lines are not on vault.audit as written (%d records there)", missing, len(want), len(recs))
	}
	for _, r := range recs {
		if !want[strings.TrimSuffix(r.Payload, "\n")] {
			t.Errorf("vault.audit record %d/%d is not a line as written: %d bytes, %.120q", r.Partition, r.Offset, len(r.Payload), r.Payload)
		}
		if r.Key == nil || *r.Key != "vault-audit" {
			t.Errorf("vault.audit record %d/%d has key %v, want vault-audit", r.Partition, r.Offset, r.Key)
		}
	}
	if len(recs) > len(want) {
		t.Logf("vault.audit holds %d records for %d lines (repeats are harmless to leaseguard)", len(recs), len(want))
	}
}

// findProgram returns the path of a program the test runs. It is
// installed by `make tools` (scripts/ensure-tools.sh); the test fails,
// never skips, without it.
func findProgram(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} { // rsyslogd, off a user's PATH
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	t.Fatalf("%s is not installed; run `make tools` (scripts/ensure-tools.sh)", name)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// rsyslog is a running rsyslogd child process.
type rsyslog struct {
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	done    chan struct{}
	waitErr error
	output  *syncBuffer
}

// rsyslogConfig writes dir/rsyslog.conf: the shipped configuration with
// its site values pointed at dir/spool, auditLog and broker, plus a rule
// that keeps rsyslogd's own messages in the returned log file. It checks
// the result with rsyslogd -N1.
func rsyslogConfig(t *testing.T, ctx context.Context, rsyslogd, dir, auditLog, broker string) (confPath, logFile string) {
	t.Helper()
	shipped, err := os.ReadFile(shippedRsyslogConf)
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := string(shipped)
	for _, r := range [][2]string{
		{`workDirectory="/var/spool/rsyslog-vault-audit"`, `workDirectory="` + spool + `"`},
		{`failedMsgFile="/var/spool/rsyslog-vault-audit/`, `failedMsgFile="` + spool + `/`},
		{`file="/var/log/vault/audit.log"`, `file="` + auditLog + `"`},
		{`broker=["kafka-1.example.com:9092", "kafka-2.example.com:9092"]`, `broker=["` + broker + `"]`},
	} {
		if !strings.Contains(conf, r[0]) {
			t.Fatalf("%s no longer contains %s; update the test", shippedRsyslogConf, r[0])
		}
		conf = strings.ReplaceAll(conf, r[0], r[1])
	}
	// rsyslogd's own messages (omkafka's and imfile's errors among them)
	// go to the system logger by default; here it keeps them and writes
	// them from its default ruleset, which nothing else feeds, to a file
	// shown when the test fails.
	logFile = filepath.Join(dir, "rsyslogd.log")
	conf += "\nglobal(processInternalMessages=\"on\")\n*.* action(type=\"omfile\" file=\"" + logFile + "\")\n"
	confPath = filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, rsyslogd, "-N1", "-f", confPath).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 rejects the configuration: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rsyslogd log (%s):\n%s", logFile, tail(readFile(logFile), 8<<10))
		}
	})
	return confPath, logFile
}

// startRsyslog runs rsyslogd in the foreground (-n) with confPath and its
// own pid file, and waits until it is up. It is stopped at cleanup at the
// latest; its output is shown when the test failed.
func startRsyslog(t *testing.T, ctx context.Context, rsyslogd, confPath string) *rsyslog {
	t.Helper()
	rctx, cancel := context.WithCancel(ctx)
	rs := &rsyslog{cancel: cancel, done: make(chan struct{}), output: &syncBuffer{}}
	pidFile := filepath.Join(filepath.Dir(confPath), "rsyslogd.pid")
	rs.cmd = exec.CommandContext(rctx, rsyslogd, "-n", "-f", confPath, "-i", pidFile)
	rs.cmd.Dir = filepath.Dir(confPath)
	rs.cmd.Stdout = rs.output
	rs.cmd.Stderr = rs.output
	// Stopping asks politely (rsyslogd then delivers or saves what it
	// holds) and kills after the bound.
	rs.cmd.Cancel = func() error { return rs.cmd.Process.Signal(syscall.SIGTERM) }
	rs.cmd.WaitDelay = 15 * time.Second
	// Should the test binary die first, the kernel stops rsyslogd too.
	rs.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := rs.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start rsyslogd: %v", err)
	}
	go func() {
		rs.waitErr = rs.cmd.Wait()
		close(rs.done)
	}()
	t.Cleanup(func() {
		_ = rs.stop()
		if t.Failed() {
			t.Logf("rsyslogd (pid %d) output:\n%s", rs.cmd.Process.Pid, tail(rs.output.String(), 4<<10))
		}
	})
	waitFor(t, ctx, 10*time.Second, "rsyslogd started (pid file)", func() bool {
		select {
		case <-rs.done:
			t.Fatalf("rsyslogd exited at start: %v", rs.waitErr)
		default:
		}
		_, err := os.Stat(pidFile)
		return err == nil
	})
	return rs
}

// stop ends rsyslogd (SIGTERM, then SIGKILL after WaitDelay) and reports
// how it exited; it is safe to call twice.
func (r *rsyslog) stop() error {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		return errors.New("did not exit 30 s after SIGTERM")
	}
	// Wait reports the cancelled context whenever Cancel ran; the exit
	// status says how rsyslogd took it.
	st := r.cmd.ProcessState
	switch {
	case errors.Is(r.waitErr, exec.ErrWaitDelay):
		return fmt.Errorf("killed: not stopped %s after SIGTERM", r.cmd.WaitDelay)
	case st == nil:
		return fmt.Errorf("wait: %w", r.waitErr)
	case st.Success():
		return nil
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
		return nil
	}
	return fmt.Errorf("exit: %s", st)
}

// appendAuditLog writes entries as Vault's file audit device does: the
// file opened for appending (created 0600), one JSON entry and a newline
// per write.
func appendAuditLog(t *testing.T, path string, entries [][]byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, e := range entries {
		if _, err := f.Write(append(append([]byte(nil), e...), '\n')); err != nil {
			t.Fatal(err)
		}
	}
}

// withManyPolicies gives the client token of each entry n policies, all
// of which granted the request, as Vault logs a token of a member of
// many groups.
func withManyPolicies(t *testing.T, lines [][]byte, n int) [][]byte {
	t.Helper()
	policies := make([]any, n)
	granting := make([]any, n)
	for i := range policies {
		name := fmt.Sprintf("team-%03d-database-reporting-read", i)
		policies[i] = name
		granting[i] = map[string]any{"name": name, "namespace_id": "root", "type": "acl"}
	}
	out := make([][]byte, len(lines))
	for i, l := range lines {
		var e map[string]any
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		auth, ok := e["auth"].(map[string]any)
		if !ok {
			t.Fatalf("audit entry has no auth: %s", l)
		}
		auth["policies"] = policies
		auth["token_policies"] = policies
		auth["policy_results"] = map[string]any{"allowed": true, "granting_policies": granting}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func auditRequestID(t *testing.T, line []byte) string {
	t.Helper()
	var e struct {
		Request struct {
			ID string `json:"id"`
		} `json:"request"`
	}
	if err := json.Unmarshal(line, &e); err != nil || e.Request.ID == "" {
		t.Fatalf("audit entry without request id: %v", err)
	}
	return e.Request.ID
}

// runKcat reads topic from the beginning to its end with kcat, as a SIEM's
// collector would, and returns what kcat printed.
func runKcat(t *testing.T, ctx context.Context, kcat, broker, topic string, format ...string) string {
	t.Helper()
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	args := append([]string{"-C", "-q", "-b", broker, "-t", topic, "-o", "beginning", "-e"}, format...)
	cmd := exec.CommandContext(kctx, kcat, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// kcatJSON is a record as kcat -J prints it.
type kcatJSON struct {
	Partition int32   `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
	Payload   string  `json:"payload"`
}

// kcatPayloads reads topic with kcat -J, whose JSON envelope keeps each
// record value exact, newlines included.
func kcatPayloads(t *testing.T, ctx context.Context, kcat, broker, topic string) []kcatJSON {
	t.Helper()
	var recs []kcatJSON
	for _, line := range strings.Split(runKcat(t, ctx, kcat, broker, topic, "-J"), "\n") {
		if line == "" {
			continue
		}
		var r kcatJSON
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("kcat -J printed %.200q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// kcatRecord is one record as kcat printed it: key holds what kcat's
// format printed before the value (the record key, or its headers).
type kcatRecord struct{ key, value string }

// kcatRecords reads topic with kcat -f '<keyFormat>\t%s\n'; keyFormat is
// "%k" (the key) or "%h" (the headers). Values must be one line each.
func kcatRecords(t *testing.T, ctx context.Context, kcat, broker, topic, keyFormat string) []kcatRecord {
	t.Helper()
	var recs []kcatRecord
	for _, line := range strings.Split(runKcat(t, ctx, kcat, broker, topic, "-f", keyFormat+`\t%s\n`), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("kcat printed a line without a key separator: %.200q", line)
		}
		recs = append(recs, kcatRecord{key: k, value: v})
	}
	return recs
}

// revocationOutcome returns the outcome of a revocation CloudEvent whose
// subject is subject, or "".
func revocationOutcome(value, subject string) string {
	var ev struct {
		SpecVersion string `json:"specversion"`
		Type        string `json:"type"`
		Subject     string `json:"subject"`
		Data        struct {
			Unmapped struct {
				Outcome string `json:"outcome"`
			} `json:"unmapped"`
		} `json:"data"`
	}
	if json.Unmarshal([]byte(value), &ev) != nil || ev.SpecVersion != "1.0" ||
		ev.Type != "io.leaseguard.revocation.v1" || ev.Subject != subject {
		return ""
	}
	return ev.Data.Unmapped.Outcome
}

// appendFile appends text to the file at path.
func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// actionEnqueued is the last count impstats gave of lines enqueued to the
// Kafka action's queue (queue.filename vault-audit-kafka).
func actionEnqueued(stats string) int {
	n := 0
	for _, line := range strings.Split(stats, "\n") {
		if !strings.Contains(line, "vault-audit-kafka queue:") {
			continue
		}
		for _, field := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(field, "enqueued="); ok {
				if k, err := strconv.Atoi(v); err == nil {
					n = k
				}
			}
		}
	}
	return n
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
