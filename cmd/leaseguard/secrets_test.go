package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
)

// TestSecretsNeverStored feeds leaseguard audit entries that carry
// plaintext secrets — a mount tuned with
// audit_non_hmac_response_keys=username,password logs each credential's
// password in clear, and an audit device with log_raw logs client tokens
// in clear — through every ingest path: a shipper publishing on the audit
// subject, the file source and the socket source. Each path also gets
// entries that carry a secret and are dead-lettered (oversize, cut short),
// and the revocation queue gets a forged message with one. Once everything
// is ingested, dropped and relayed, no secret may be found in any sink:
// logs, metrics, every table of the state store, every JetStream stream
// (the raw audit stream included, after ingest committed; dead letters
// with their headers; evidence), the embedded JetStream server's files on
// disk (an erased message must be overwritten, not only marked deleted)
// and the evidence as a subscriber received it.
func TestSecretsNeverStored(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	r := startSecretsRig(t, ctx)
	defer r.stop()
	paths := []string{"shipper", "file", "socket"}
	lines := r.credentials(paths)
	bad := r.badEntries(paths)
	r.feed(lines, bad)
	r.waitDone()
	r.waitAuditStreamClean()
	sinks := r.liveSinks()
	r.stop()
	sinks["logs"] = r.logs.String()
	sinks["files of the embedded JetStream server"] = dumpFiles(t, filepath.Join(r.dir, "data"))
	sinks["state store"] = dumpAllTables(t, ctx, r.admin, r.schema)
	if !strings.Contains(sinks["state store"], r.users[0]) {
		t.Errorf("the ledger does not hold the issued users")
	}
	for name, hay := range sinks {
		if leaked := findSecrets(hay, r.secrets); len(leaked) > 0 {
			t.Errorf("%d plaintext secrets (of %d) appear in the %s, e.g. as %s", len(leaked), len(r.secrets), name, leaked[0])
		}
	}
}

// maxEntry is LEASEGUARD_MAX_ENTRY_BYTES in TestSecretsNeverStored.
const maxEntry = 4096

// secretsRig is a running leaseguard with every ingest path on, and what
// was fed to it.
type secretsRig struct {
	t             *testing.T
	ctx           context.Context
	admin         *pgxpool.Pool
	schema, dir   string
	auditLog      string
	sockAddr      string
	cfg           Config
	p             *pipeline
	stopped       bool
	logs, relayed *syncBuffer
	sim           *vaultsim.Sim
	// secrets fed; users issued, one per path.
	secrets, users []string
}

func startSecretsRig(t *testing.T, ctx context.Context) *secretsRig {
	r := &secretsRig{t: t, ctx: ctx, admin: pgtest.Pool(t), schema: pgtest.Schema(t, "lg_secrets"), dir: t.TempDir(),
		sockAddr: freeAddr(t), logs: &syncBuffer{}, relayed: &syncBuffer{}}
	r.auditLog = filepath.Join(r.dir, "audit.log")
	if err := os.WriteFile(r.auditLog, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"DATABASE_URL": pgtest.URL(), "DATABASE_SCHEMA": r.schema, "DATA_DIR": filepath.Join(r.dir, "data"),
		"ROLES": "ingest,detectors,revoker,relay", "METRICS_ADDR": "127.0.0.1:0", "EXPIRY_GRACE": "1s",
		"DETECT_INTERVAL": "200ms", "LOG_LEVEL": "debug", "MAX_ENTRY_BYTES": fmt.Sprint(maxEntry),
		"AUDIT_FILE": r.auditLog, "AUDIT_FILE_POLL": "50ms", "AUDIT_SOCKET_ADDR": r.sockAddr, "DEADLETTER_MAX_AGE": "72h",
		// Expired users are dropped: the test follows secrets through drops.
		"ENFORCE_SCOPE": "*",
	} {
		t.Setenv(env(k), v)
	}
	var err error
	if r.cfg, err = loadConfig(); err != nil {
		t.Fatal(err)
	}
	if r.p, err = startPipeline(ctx, r.cfg, newLogger(r.logs, "debug", "json"), nil); err != nil {
		t.Fatal(err)
	}
	sub, err := r.p.nc.Subscribe(r.cfg.EvidenceSubject, func(m *nats.Msg) {
		_, _ = r.relayed.Write(append(append([]byte(nil), m.Data...), '\n'))
	})
	if err != nil {
		r.stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	r.sim = &vaultsim.Sim{Pool: r.admin, Mount: "postgres", DisplayName: "token", EntityID: "ent-" + pgtest.Suffix(),
		RemoteAddress: "10.1.2.3", PlaintextPasswords: true}
	return r
}

func (r *secretsRig) stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	if err := r.p.stop(); err != nil {
		r.t.Errorf("stop: %v", err)
	}
}

// credentials issues one credential per ingest path, from a mount that
// logs passwords in clear, written by an audit device that logs client
// tokens in clear, and returns each path's entries.
func (r *secretsRig) credentials(paths []string) map[string][][]byte {
	lines := map[string][][]byte{}
	for _, path := range paths {
		c, entries, err := r.sim.Issue(r.ctx, "reporting", 2*time.Second)
		if err != nil {
			r.t.Fatal(err)
		}
		pgtest.DropRoleAtCleanup(r.t, r.admin, c.Username)
		token := "hvs." + randomBase62(30)
		// The device also logs the token as the client's display name, as
		// a forged entry could: a field the ledger keeps.
		for _, e := range entries {
			l := strings.ReplaceAll(string(e), r.sim.HMAC("token"), token)
			lines[path] = append(lines[path], []byte(strings.ReplaceAll(l, `"display_name":"token"`, `"display_name":"`+token+`"`)))
		}
		if !strings.Contains(string(lines[path][1]), `"password":"`+c.Password+`"`) {
			r.t.Fatalf("the tuned mount's response does not carry the password in clear: %s", lines[path][1])
		}
		r.users = append(r.users, c.Username)
		r.secrets = append(r.secrets, c.Password, token)
	}
	return lines
}

// badEntries returns, per path, entries that carry a secret and are
// dead-lettered: over the size limit (the direct sources cut it), and cut
// short in the middle of the password's value (no closing quote).
func (r *secretsRig) badEntries(paths []string) map[string][][]byte {
	bad := map[string][][]byte{}
	for _, path := range paths {
		pw1, pw2 := "A1a-"+randomBase62(20), "A1a-"+randomBase62(20)
		r.secrets = append(r.secrets, pw1, pw2)
		oversize := fmt.Sprintf(`{"time":"2026-11-25T20:00:00Z","type":"response","request":{"id":"big-%s"},"response":{"data":{"password":%q}},"pad":%q}`,
			path, pw1, strings.Repeat("x", maxEntry+500))
		cut := fmt.Sprintf(`{"time":"2026-11-25T20:00:00Z","type":"response","request":{"id":"cut-%s"},"response":{"data":{"username":"v-x","password":"%s`, path, pw2)
		bad[path] = [][]byte{[]byte(oversize), []byte(cut)}
	}
	return bad
}

// feed sends each path its entries, the socket's last one cut by a closed
// connection, and a forged message with a password to the revocation
// queue.
func (r *secretsRig) feed(lines, bad map[string][][]byte) {
	for _, l := range append(lines["shipper"], bad["shipper"]...) {
		if _, err := r.p.js.Publish(r.ctx, "vault.audit.shipper", l); err != nil {
			r.t.Fatal(err)
		}
	}
	appendLines(r.t, r.auditLog, append(lines["file"], bad["file"]...))
	writeSocket(r.t, r.sockAddr, append(lines["socket"], bad["socket"][0]), bad["socket"][1])
	forged := "A1a-" + randomBase62(20)
	r.secrets = append(r.secrets, forged)
	if _, err := r.p.js.Publish(r.ctx, r.cfg.RevocationSubject, []byte(`{"type":"io.leaseguard.revocation-command.v1","password":"`+forged+`"}`)); err != nil {
		r.t.Fatal(err)
	}
}

// waitDone waits until every credential reached the ledger and was
// dropped after expiry with its evidence relayed, every bad entry is
// dead-lettered, and ingest has nothing pending.
func (r *secretsRig) waitDone() {
	t, ctx, js := r.t, r.ctx, r.p.js
	for _, u := range r.users {
		waitFor(t, ctx, 45*time.Second, "expired user "+u+" dropped", func() bool { return !roleExists(ctx, r.admin, u) })
	}
	waitFor(t, ctx, 30*time.Second, "revocation evidence relayed", func() bool {
		for _, u := range r.users {
			if !strings.Contains(r.relayed.String(), `"subject":"`+r.cfg.targetName()+"/"+u+`"`) {
				return false
			}
		}
		return true
	})
	const wantDead = 7 // two per ingest path, one forged command
	waitFor(t, ctx, 30*time.Second, "dead letters stored", func() bool { return streamMsgs(t, ctx, js, "LEASEGUARD_DEADLETTER") >= wantDead })
	waitFor(t, ctx, 30*time.Second, "ingest consumer idle", func() bool {
		c, err := js.Consumer(ctx, r.cfg.AuditStream, r.cfg.IngestConsumer)
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
}

// waitAuditStreamClean checks the raw audit stream: what ingest committed
// is erased or was redacted (erasing follows the acknowledgement, so it is
// given a moment).
func (r *secretsRig) waitAuditStreamClean() {
	deadline := time.Now().Add(10 * time.Second)
	for {
		leaked := findSecrets(dumpStream(r.t, r.ctx, r.p.js, r.cfg.AuditStream), r.secrets)
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Errorf("the raw audit stream %s still holds %d plaintext secrets after ingest", r.cfg.AuditStream, len(leaked))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// liveSinks gathers what the running process keeps (metrics, every
// stream, the evidence a subscriber received) and checks the dead-letter
// stream and the secret metrics.
func (r *secretsRig) liveSinks() map[string]string {
	t, ctx := r.t, r.ctx
	var streams []string
	for n := range r.p.js.StreamNames(ctx).Name() {
		streams = append(streams, n)
	}
	if len(streams) < 4 {
		t.Errorf("streams = %v, want the audit, dead-letter, revocation and evidence streams", streams)
	}
	sinks := map[string]string{
		"metrics":                         httpGet(t, "http://"+r.p.opsSrv.Addr()+"/metrics"),
		"evidence as a subscriber got it": r.relayed.String(),
	}
	for _, n := range streams {
		sinks["stream "+n] = dumpStream(t, ctx, r.p.js, n)
	}
	if dl := sinks["stream LEASEGUARD_DEADLETTER"]; !strings.Contains(dl, "Leaseguard-Reason") {
		t.Errorf("dead letters carry no reason: %.500s", dl)
	}
	if s, err := r.p.js.Stream(ctx, "LEASEGUARD_DEADLETTER"); err != nil || s.CachedInfo().Config.MaxAge != 72*time.Hour {
		t.Errorf("the dead-letter stream does not keep dead letters for LEASEGUARD_DEADLETTER_MAX_AGE: %v", err)
	}
	// The shipper's four messages with a secret were erased; every path
	// counted the entries that arrived with one.
	for series, want := range map[string]float64{
		"leaseguard_ingest_secret_messages_erased_total":                       4,
		`leaseguard_ingest_plaintext_secret_entries_total{transport="nats"}`:   4,
		`leaseguard_ingest_plaintext_secret_entries_total{transport="file"}`:   4,
		`leaseguard_ingest_plaintext_secret_entries_total{transport="socket"}`: 4,
	} {
		if got := metricValue(sinks["metrics"], series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	return sinks
}

// dumpFiles concatenates every file under root.
func dumpFiles(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		b.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// metricValue reads one series from a Prometheus text exposition (-1:
// absent).
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// findSecrets returns, for each secret found in hay (as is, in hex or in
// base64 at any alignment), how it was found.
func findSecrets(hay string, secrets []string) []string {
	var out []string
	for i, s := range secrets {
		for form, needle := range secretForms(s) {
			if strings.Contains(hay, needle) {
				out = append(out, fmt.Sprintf("secret #%d (%s)", i, form))
				break
			}
		}
	}
	return out
}

func secretForms(s string) map[string]string {
	forms := map[string]string{"plain": s, "hex": hex.EncodeToString([]byte(s))}
	for pad := 0; pad < 3; pad++ {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\x00", pad) + s))
		// Drop the characters that depend on the bytes around s.
		forms[fmt.Sprintf("base64/%d", pad)] = enc[(pad*4+2)/3+1 : len(enc)-4]
	}
	return forms
}

func randomBase62(n int) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b strings.Builder
	for i := 0; i < n; i++ {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b.WriteByte(alphabet[k.Int64()])
	}
	return b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func appendLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.Write(append(append([]byte(nil), l...), '\n')); err != nil {
			t.Fatal(err)
		}
	}
}

// writeSocket sends lines to a socket audit listener as Vault's socket
// device does, then partial without its newline, and closes.
func writeSocket(t *testing.T, addr string, lines [][]byte, partial []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for _, l := range lines {
		if _, err := conn.Write(append(append([]byte(nil), l...), '\n')); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write(partial); err != nil {
		t.Fatal(err)
	}
}

func streamMsgs(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// dumpStream renders every message a stream stores: subject, headers and
// body.
func dumpStream(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) string {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	var b strings.Builder
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("stream %s message %d: %v", name, seq, err)
		}
		hdr, _ := json.Marshal(m.Header)
		fmt.Fprintf(&b, "%s %s %s\n", m.Subject, hdr, m.Data)
	}
	return b.String()
}

// dumpAllTables renders every row of every table of schema as text, and
// bytea columns also decoded (encode(…, 'escape') shows their text).
func dumpAllTables(t *testing.T, ctx context.Context, pool interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, schema string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(dumpSchema(t, ctx, pool, schema))
	rows, err := pool.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = $1 AND data_type = 'bytea'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	type col struct{ Table, Column string }
	cols, err := pgx.CollectRows(rows, pgx.RowToStructByPos[col])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		rows, err := pool.Query(ctx, "SELECT coalesce(encode("+pgx.Identifier{c.Column}.Sanitize()+", 'escape'), '') FROM "+
			pgx.Identifier{schema, c.Table}.Sanitize())
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.Join(vals, "\n"))
	}
	return b.String()
}
