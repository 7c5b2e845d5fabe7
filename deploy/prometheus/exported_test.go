package rules_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/internal/vaulttest"
)

// TestQueriesNameExportedMetrics starts a real `leaseguard run` (embedded
// JetStream, the test PostgreSQL, every role, an Alertmanager sink and a
// Vault), scrapes its /metrics and checks that every metric name the rules
// and the dashboard use is among those it exports.
func TestQueriesNameExportedMetrics(t *testing.T) {
	used := map[string][]string{}
	for _, q := range allQueries(t) {
		for _, n := range metricNames(q.expr) {
			used[n] = append(used[n], q.from)
		}
	}
	if len(used) < 25 {
		t.Fatalf("only %d metric names used: %v", len(used), used)
	}
	lg := startLeaseguard(t)
	// The series that come with an event must come with this test's
	// entries, not with another test's work on the shared PostgreSQL.
	events := []string{
		`leaseguard_findings_total{action="none",mode="observe",rule="root-token-use",severity="high"}`,
		`leaseguard_ingest_audit_source_entries_total{transport="file"}`,
		`leaseguard_ingest_dead_letters_total{transport="file"}`,
	}
	var missing, absent []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		text := scrapeText(lg.metricsURL)
		exported := exportedNames(strings.NewReader(text))
		missing, absent = missing[:0], absent[:0]
		for n := range used {
			if !exported[n] {
				missing = append(missing, n)
			}
		}
		for _, series := range events {
			if !strings.Contains(text, series+" ") {
				absent = append(absent, series)
			}
		}
		if len(missing)+len(absent) == 0 || time.Now().After(deadline) || lg.exited() {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, series := range absent {
		t.Errorf("no series %s after this test's audit entries", series)
	}
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("%s is not exported by a running leaseguard; used by %v", n, used[n])
	}
	if len(missing)+len(absent) > 0 {
		t.Logf("leaseguard's log:\n%s", lg.log())
	}
}

// exportedNames are the sample names of a text exposition.
func exportedNames(r io.Reader) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			out[l[:i]] = true
		}
	}
	return out
}

func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	return exportedNames(strings.NewReader(scrapeText(url)))
}

// scrapeText is the exposition at url, or "" when it does not answer.
func scrapeText(url string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// process is a running leaseguard.
type process struct {
	metricsURL string
	out        *lockedBuffer
	done       chan struct{}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) log() string { return p.out.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLeaseguard builds the binary and runs it until the test ends, with
// every part that has metrics turned on, and waits until /metrics answers.
func startLeaseguard(t *testing.T) *process {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "leaseguard")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/leaseguard")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	vault := vaulttest.New(t, nil)
	vault.AddToken("hvs.metrics", vaulttest.Token{TTL: time.Hour, CreationTTL: time.Hour, Renewable: true, Sudo: true})
	vault.AddAuditDevice("file", []byte("salt"))
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(am.Close)
	addr := freeAddr(t)
	env := map[string]string{
		// Set explicitly: nothing is inherited from the environment but
		// PATH and HOME.
		"LEASEGUARD_DATABASE_URL":    pgtest.URL(),
		"LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_metrics"),
		"LEASEGUARD_DATA_DIR":        filepath.Join(dir, "data"),
		"LEASEGUARD_METRICS_ADDR":    addr,
		"LEASEGUARD_ROLES":           "ingest,detectors,revoker,relay,observer,alerts",
		// The observer's rules touch no role of the shared server.
		"LEASEGUARD_MANAGED_ROLE_PATTERN": "^v-metrics-" + pgtest.Suffix() + "-",
		"LEASEGUARD_ENFORCE_SCOPE":        "",
		"LEASEGUARD_ALERTMANAGER_URLS":    am.URL,
		"LEASEGUARD_VAULT_ADDR":           vault.URL, "LEASEGUARD_VAULT_TOKEN": "hvs.metrics", "LEASEGUARD_VAULT_AUDIT_DEVICE": "file",
		"LEASEGUARD_AUDIT_FILE":      filepath.Join(dir, "audit.log"),
		"LEASEGUARD_DETECT_INTERVAL": "200ms", "LEASEGUARD_OBSERVE_INTERVAL": "200ms", "LEASEGUARD_AUDIT_RULES_INTERVAL": "200ms",
		"LEASEGUARD_LOG_FORMAT": "json",
	}
	if err := os.WriteFile(env["LEASEGUARD_AUDIT_FILE"], auditEntries(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{metricsURL: "http://" + addr + "/metrics", out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for len(scrape(t, p.metricsURL)) == 0 {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("leaseguard did not serve /metrics on %s:\n%s", addr, p.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

// auditEntries are what Vault's file audit device would have written: a
// request on a database mount made with a root token (a root-token-use
// finding, observe only: the series of ingest, the audit source and the
// findings appear with it) and a line that is not JSON (a dead letter).
func auditEntries() []byte {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	root := `{"type":"request","time":"` + now + `","auth":{"accessor":"hmac-sha256:metrics","display_name":"token",` +
		`"policies":["root"],"token_policies":["root"],"token_type":"service"},` +
		`"request":{"id":"metrics-root-use","operation":"read","path":"database/config/app","mount_point":"database/",` +
		`"mount_type":"database","remote_address":"127.0.0.1"}}`
	return []byte(root + "\n{\"type\": truncated\n")
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("127.0.0.1:%d", l.Addr().(*net.TCPAddr).Port)
}
