package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
)

// alertmanagerConfig routes everything to a receiver that notifies no one.
const alertmanagerConfig = `route:
  receiver: "null"
receivers:
  - name: "null"
`

// alertSink is the pager endpoint of the alerts case: the real
// Alertmanager when installed, else a local receiver that counts what it
// is sent. received reads the count of alerts it took.
type alertSink struct {
	base     string
	received func(ctx context.Context) (int, error)
}

// startAlertSink starts Alertmanager (or the local receiver) on a loopback
// port until the case ends.
func (e *caseEnv) startAlertSink() (*alertSink, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	base := "http://" + loopback(port)
	if e.h.opt.alertmanager == "" {
		return e.startLocalReceiver(port)
	}
	cfg := filepath.Join(e.dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(alertmanagerConfig), 0o600); err != nil {
		return nil, err
	}
	args := []string{"--web.listen-address=" + loopback(port), "--cluster.listen-address=",
		"--storage.path=" + filepath.Join(e.dir, "alertmanager"), "--config.file=" + cfg}
	p, err := startProc("alertmanager", e.h.opt.alertmanager, args, nil, filepath.Join(e.dir, "alertmanager.log"), "Listening on", 30*time.Second)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, p.kill)
	return &alertSink{base: base, received: func(ctx context.Context) (int, error) {
		return scrapeSum(ctx, base+"/metrics", "alertmanager_alerts_received_total", "")
	}}, nil
}

// startLocalReceiver stands in for Alertmanager: it accepts the v2 alerts
// API and counts the alerts posted.
func (e *caseEnv) startLocalReceiver(port int) (*alertSink, error) {
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/alerts", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n.Add(int64(strings.Count(string(body), `"labels"`)))
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Addr: loopback(port), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ListenAndServe() }()
	e.closers = append(e.closers, func() { _ = srv.Close() })
	e.note = "alert sink: a local receiver (no Alertmanager installed)"
	return &alertSink{base: "http://" + loopback(port), received: func(context.Context) (int, error) { return int(n.Load()), nil }}, nil
}

// runAlerts: every due user raises a high finding (lease-expired-not-
// revoked), so an alert, resolved once the user is dropped. Alertmanager
// is blackholed (behind a proxy) from the first drop for 20 s in both
// forms. After the restore, every alert must reach it, in its final
// state, within 10 s; drops go on meanwhile, so their figures are checked
// as everywhere.
//
// The fault is 20 s also in the short form: a request sent into the
// blackhole waits out LEASEGUARD_ALERT_TIMEOUT (10 s) even if the sink
// comes back meanwhile, so a fault ending while the second attempt is in
// flight (about 11 to 21 s in) costs up to that timeout after the restore
// (a 12 s fault measured 11.1 s); see docs/reliability.md.
func runAlerts(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
	goal := Goal{NotReady: true}
	e.fault = max(e.fault, 20*time.Second)
	sink, err := e.startAlertSink()
	if err != nil {
		return Observation{}, goal, err
	}
	proxy, err := faultproxy.Start("127.0.0.1:0", strings.TrimPrefix(sink.base, "http://"))
	if err != nil {
		return Observation{}, goal, err
	}
	e.closers = append(e.closers, func() { _ = proxy.Close() })
	e.extraEnv["LEASEGUARD_ROLES"] = "ingest,detectors,revoker,relay,alerts"
	e.extraEnv["LEASEGUARD_ALERTMANAGER_URLS"] = "http://" + proxy.Addr()
	if err := e.start(); err != nil {
		return Observation{}, goal, err
	}
	n, d := max(1, e.h.opt.users/4), e.fault
	first := time.Now().Add(2 * time.Second)
	if err := e.issueAndPublish(ctx, n, first, first.Add(d/2)); err != nil {
		return Observation{}, goal, err
	}
	if err := e.waitFirstDrop(ctx, time.Minute); err != nil {
		return Observation{}, goal, err
	}
	obs, goal, err := e.holdAndObserve(ctx, proxyFault(proxy, faultproxy.Blackhole), nil, goal)
	if err != nil {
		return obs, goal, err
	}
	obs.Extra = append(obs.Extra, e.alertsDelivered(ctx, sink, obs.Restore)...)
	return obs, goal, nil
}

// alertsDelivered waits until every alert's delivery caught up with its
// state and the sink counted at least as many, and reports what failed.
func (e *caseEnv) alertsDelivered(ctx context.Context, sink *alertSink, restored time.Time) []string {
	var alerts, lagging int
	var last time.Time
	err := poll(ctx, "every alert delivered", settleTimeout, func(ctx context.Context) (bool, string, error) {
		var err error
		if alerts, lagging, last, err = e.alertDeliveries(ctx); err != nil {
			return false, "", err
		}
		got, err := sink.received(ctx)
		if err != nil {
			return false, "", err
		}
		return alerts > 0 && lagging == 0 && got >= alerts,
			fmt.Sprintf("%d alerts, %d deliveries behind, the sink took %d", alerts, lagging, got), nil
	})
	took := last.Sub(restored)
	e.note = strings.TrimSpace(e.note + fmt.Sprintf(" %d alerts; restore to last delivery %s", alerts, dur(took)))
	var out []string
	if err != nil {
		out = append(out, err.Error())
	}
	if !last.After(restored) {
		out = append(out, "no alert delivery was held back by the fault")
	}
	if took > 10*time.Second {
		out = append(out, fmt.Sprintf("alerts delivered %s after the restore, goal 10s", dur(took)))
	}
	return out
}

// alertDeliveries counts the alerts, the deliveries not yet in the
// alert's state (trigger while open, resolve once resolved), and the last
// successful send.
func (e *caseEnv) alertDeliveries(ctx context.Context) (alerts, lagging int, last time.Time, err error) {
	a, d := pgx.Identifier{e.schema, "alerts"}.Sanitize(), pgx.Identifier{e.schema, "alert_deliveries"}.Sanitize()
	q := `SELECT count(DISTINCT a.id),
	             count(*) FILTER (WHERE d.delivered IS DISTINCT FROM CASE WHEN a.resolved_at IS NULL THEN 'trigger' ELSE 'resolve' END),
	             coalesce(max(d.last_sent_at), 'epoch')
	      FROM ` + a + ` a LEFT JOIN ` + d + ` d ON d.alert_id = a.id`
	err = e.h.admin.QueryRow(ctx, q).Scan(&alerts, &lagging, &last)
	return alerts, lagging, last, err
}

// scrapeSum sums the samples of a metric in a Prometheus text page whose
// line contains filter (e.g. a label pair).
func scrapeSum(ctx context.Context, url, name, filter string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') || !strings.Contains(line, filter) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return int(sum), sc.Err()
}
