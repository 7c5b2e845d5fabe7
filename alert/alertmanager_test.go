package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/schemas"
)

const alertmanagerBin = "prometheus-alertmanager"

// alertmanagerConfig routes everything to a receiver that notifies no one:
// the test reads the alerts back through the API.
const alertmanagerConfig = `route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
`

// startAlertmanager runs a real Alertmanager on a loopback port, without
// clustering, until the test ends, and returns its base URL. It installs
// the Debian package first when the binary is missing (as make test does);
// it never skips.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath(alertmanagerBin)
	if err != nil {
		out, ierr := exec.Command("bash", "../scripts/ensure-alertmanager.sh").CombinedOutput()
		if ierr != nil {
			t.Fatalf("%s is missing and installing it failed: %v\n%s", alertmanagerBin, ierr, out)
		}
		if bin, err = exec.LookPath(alertmanagerBin); err != nil {
			t.Fatalf("%s is still missing after installing it: %v", alertmanagerBin, err)
		}
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "am.yml")
	if err := os.WriteFile(cfgFile, []byte(alertmanagerConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	// The port is picked free and then handed over, so another process
	// may take it in between: try a few.
	var lastOut string
	for range 3 {
		port := freePort(t)
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		out := &syncBuffer{}
		cmd := exec.Command(bin,
			"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
			"--cluster.listen-address=",
			"--storage.path="+dir,
			"--config.file="+cfgFile)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", alertmanagerBin, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		if waitReady(base+"/-/ready", exited, 15*time.Second) {
			t.Cleanup(stop)
			return base
		}
		stop()
		lastOut = out.String()
	}
	t.Fatalf("%s did not become ready; its output:\n%s", alertmanagerBin, lastOut)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitReady polls url until it answers 200, the process exits, or the time
// is up.
func waitReady(url string, exited <-chan struct{}, timeout time.Duration) bool {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// gettableAlert is what Alertmanager's GET /api/v2/alerts returns.
type gettableAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

// activeAlerts lists the alerts Alertmanager holds as active for role.
func activeAlerts(t *testing.T, base, role string) []gettableAlert {
	t.Helper()
	q := url.Values{"filter": {fmt.Sprintf("role=%q", role)}, "active": {"true"}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/api/v2/alerts?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("get alerts: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get alerts: http %d", resp.StatusCode)
	}
	var out []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode alerts: %v", err)
	}
	return out
}

func TestAlertmanagerFiresAndResolves(t *testing.T) {
	t.Parallel()
	am := startAlertmanager(t)
	r := newRig(t)
	cfg := fastConfig()
	cfg.AlertmanagerURLs = []string{am}
	cfg.GeneratorURL = "https://leaseguard.example/findings"
	x := r.start(cfg)
	if got := x.Sinks(); len(got) != 1 || got[0] != "alertmanager:"+am[len("http://"):] {
		t.Fatalf("sinks %v", got)
	}

	user := "v-token-app-" + pgtest.Suffix()
	f := r.finding("lease-expired-not-revoked", schemas.SeverityHigh, "appdb", user)
	r.insert(f)

	var got []gettableAlert
	waitFor(t, 10*time.Second, "the alert in Alertmanager", func() bool {
		got = activeAlerts(t, am, user)
		return len(got) == 1
	})
	a := got[0]
	for k, want := range map[string]string{
		"alertname": AlertName, "rule": "lease-expired-not-revoked", "database": "appdb", "role": user,
		// The Prometheus rules' convention (deploy/prometheus): severity
		// warning or critical, service leaseguard; the finding's own
		// severity rides along.
		"severity": "critical", "service": "leaseguard", "finding_severity": "high",
	} {
		if a.Labels[k] != want {
			t.Errorf("label %s = %q, want %q (labels %v)", k, a.Labels[k], want, a.Labels)
		}
	}
	if a.Annotations["summary"] != f.Summary || a.Annotations["description"] == "" {
		t.Errorf("annotations %v", a.Annotations)
	}
	if a.Status.State != "active" {
		t.Errorf("state %q, want active", a.Status.State)
	}
	if !a.EndsAt.After(time.Now()) {
		t.Errorf("a firing alert ends at %s, not ahead", a.EndsAt)
	}
	if d := a.StartsAt.Sub(f.DetectedAt); d < -time.Second || d > time.Second {
		t.Errorf("startsAt %s, want the detection time %s", a.StartsAt, f.DetectedAt)
	}

	// The user is dropped: the alert resolves and leaves the active list.
	r.revoked("appdb", user, schemas.OutcomeDropped)
	waitFor(t, 10*time.Second, "the alert to resolve in Alertmanager", func() bool {
		return len(activeAlerts(t, am, user)) == 0
	})
	as := r.alerts(dedupKey(f))
	if len(as) != 1 || !as[0].resolved {
		t.Fatalf("alerts %+v, want one resolved", as)
	}
	// Alertmanager has the resolve as soon as it answers; the sink records
	// the delivery after reading that answer.
	var delivered string
	waitFor(t, 10*time.Second, "the resolve recorded as delivered", func() bool {
		err := r.st.Pool().QueryRow(context.Background(),
			`SELECT delivered FROM alert_deliveries WHERE alert_id = $1`, as[0].id).Scan(&delivered)
		if err != nil {
			t.Fatalf("read delivery state: %v", err)
		}
		return delivered == "resolve"
	})
}

func TestAlertmanagerDocument(t *testing.T) {
	t.Parallel()
	s, err := newAlertmanagerSink("http://am.example:9093/", Config{AlertmanagerResend: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.url != "http://am.example:9093/api/v2/alerts" || s.Name() != "alertmanager:am.example:9093" {
		t.Errorf("url %q name %q", s.url, s.Name())
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := Alert{Rule: "ghost-session", Severity: schemas.SeverityCritical, Database: "appdb",
		Finding: schemas.Finding{ID: "f1", Summary: "ghost"}, FirstDetectedAt: at.Add(time.Minute), OpenedAt: at}
	doc := s.document(notification{Action: ActionTrigger, Alert: a, At: at})
	if !doc.StartsAt.Equal(at) {
		t.Errorf("startsAt %s: a detection time ahead of the dispatcher's is clamped to it", doc.StartsAt)
	}
	if !doc.EndsAt.Equal(at.Add(4 * time.Minute)) {
		t.Errorf("firing endsAt %s, want four resend intervals ahead", doc.EndsAt)
	}
	if doc.Labels["finding"] != "f1" || doc.Labels["role"] != "" {
		t.Errorf("labels %v: an alert with no user is told apart by its finding", doc.Labels)
	}
	early := at.Add(-time.Hour)
	a.ResolvedAt = &early
	doc = s.document(notification{Action: ActionResolve, Alert: a, At: at})
	if !doc.EndsAt.Equal(doc.StartsAt) {
		t.Errorf("resolved endsAt %s before startsAt %s: Alertmanager would refuse it", doc.EndsAt, doc.StartsAt)
	}
	for _, raw := range []string{"http://am:9093/api/v2/alerts", "http://am:9093"} {
		s, err := newAlertmanagerSink(raw, Config{}, nil)
		if err != nil || s.url != "http://am:9093/api/v2/alerts" {
			t.Errorf("%s: url %q, %v", raw, s.url, err)
		}
	}
}

// TestAlertmanagerSeverityLabels: every finding severity maps onto the
// two of the Prometheus rules (critical pages, warning does not), with
// service=leaseguard, as the routes written for the rules expect.
func TestAlertmanagerSeverityLabels(t *testing.T) {
	t.Parallel()
	s, err := newAlertmanagerSink("http://am.example:9093/", Config{AlertmanagerResend: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for sev, want := range map[schemas.Severity]string{
		schemas.SeverityCritical: "critical", schemas.SeverityHigh: "critical",
		schemas.SeverityMedium: "warning", schemas.SeverityLow: "warning", schemas.SeverityInfo: "warning",
	} {
		a := Alert{Rule: "r", Severity: sev, Finding: schemas.Finding{ID: "f1"}, OpenedAt: at}
		l := s.document(notification{Action: ActionTrigger, Alert: a, At: at}).Labels
		if l["severity"] != want || l["service"] != "leaseguard" || l["finding_severity"] != string(sev) {
			t.Errorf("finding severity %s: labels %v, want severity=%s service=leaseguard finding_severity=%s", sev, l, want, sev)
		}
	}
}
