package alert

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
)

// pdConfig is fastConfig with a PagerDuty sink at rc.
func pdConfig(rc *receiver) Config {
	cfg := fastConfig()
	cfg.PagerDutyURL = rc.srv.URL + "/v2/enqueue"
	cfg.PagerDutyRoutingKey = testRoutingKey
	return cfg
}

// events counts rc's documents with the given event_action and dedup key.
func events(rc *receiver, action, key string) int {
	n := 0
	for _, d := range rc.docs() {
		if str(d, "event_action") == action && str(d, "dedup_key") == key {
			n++
		}
	}
	return n
}

func TestIdenticalFindingsRaiseOneAlert(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	x := r.start(pdConfig(pd))

	user := "v-token-app-" + pgtest.Suffix()
	first := r.finding("orphan-role", schemas.SeverityHigh, "appdb", user)
	second := r.finding("orphan-role", schemas.SeverityHigh, "appdb", user) // another id, same rule and user
	other := r.finding("orphan-role", schemas.SeverityHigh, "appdb", user+"-b")
	low := r.finding("orphan-role", schemas.SeverityMedium, "appdb", user+"-c")
	r.insert(first)
	r.insert(second)
	r.insert(other)
	r.insert(low)

	key := dedupKey(first)
	waitFor(t, 5*time.Second, "both alerts triggered", func() bool {
		return events(pd, "trigger", key) >= 1 && events(pd, "trigger", dedupKey(other)) >= 1
	})
	r.quiet() // every finding taken in, everything due sent
	if n := events(pd, "trigger", key); n != 1 {
		t.Errorf("%d triggers for two identical findings, want 1", n)
	}
	if n := len(pd.docs()); n != 2 {
		t.Errorf("%d events, want 2 (the medium finding is below the threshold)", n)
	}
	as := r.alerts(key)
	if len(as) != 1 || as[0].findings != 2 || as[0].resolved {
		t.Fatalf("alerts %+v, want one open alert of two findings", as)
	}
	if n := len(r.alerts(dedupKey(low))); n != 0 {
		t.Errorf("%d alerts for a finding below the threshold", n)
	}
	var unseen int
	if err := r.st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM findings WHERE alert_seen_at IS NULL`).Scan(&unseen); err != nil || unseen != 0 {
		t.Errorf("%d findings not taken in (%v)", unseen, err)
	}
	if v := metricValue(t, x.m.deduplicated.WithLabelValues("orphan-role")); v != 1 {
		t.Errorf("deduplicated %v, want 1", v)
	}

	// The user is dropped; an echo of the finding within the window joins
	// the resolved alert, a finding after the window raises a new one.
	r.revoked("appdb", user, schemas.OutcomeDropped)
	waitFor(t, 5*time.Second, "the resolve", func() bool { return events(pd, "resolve", key) == 1 })
	echo := r.finding("orphan-role", schemas.SeverityHigh, "appdb", user)
	r.insert(echo)
	waitFor(t, 5*time.Second, "the echo taken in", func() bool { return r.alerts(key)[0].findings == 3 })
	r.quiet()
	if n := events(pd, "trigger", key); n != 1 {
		t.Errorf("%d triggers after an echo within the window, want 1", n)
	}
	later := r.finding("orphan-role", schemas.SeverityHigh, "appdb", user)
	later.DetectedAt = later.DetectedAt.Add(DefaultDedupWindow + time.Minute)
	r.insert(later)
	waitFor(t, 5*time.Second, "a new alert after the window", func() bool { return events(pd, "trigger", key) == 2 })
	if as := r.alerts(key); len(as) != 2 || as[1].resolved {
		t.Errorf("alerts %+v, want a second, open alert", as)
	}
}

func TestSinkDownIsRetriedAndLosesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	var up atomic.Bool
	pd.setStatus(func(int) int {
		if up.Load() {
			return http.StatusAccepted
		}
		return http.StatusServiceUnavailable
	})
	x := r.start(pdConfig(pd))

	var keys []string
	for i := range 3 {
		f := r.finding("lease-expired-not-revoked", schemas.SeverityHigh, "appdb", "v-token-down-"+pgtest.Suffix())
		if i == 2 {
			f.Severity = schemas.SeverityCritical
		}
		r.insert(f)
		keys = append(keys, dedupKey(f))
	}
	pending := x.m.pending.WithLabelValues(sinkPagerDuty)
	failed := x.m.failed.WithLabelValues(sinkPagerDuty)
	waitFor(t, 5*time.Second, "three pending deliveries and retries", func() bool {
		return metricValue(t, pending) == 3 && metricValue(t, failed) >= 3
	})
	var lastErr string
	if err := r.st.Pool().QueryRow(context.Background(),
		`SELECT max(last_error) FROM alert_deliveries WHERE attempts > 0`).Scan(&lastErr); err != nil || !strings.Contains(lastErr, "http 503") {
		t.Errorf("last_error %q (%v), want the 503", lastErr, err)
	}
	if len(pd.docs()) != 0 {
		t.Fatalf("a sink answering 503 accepted something")
	}
	// Two deliveries sit in a long backoff, as after hours of an outage.
	// Once the sink takes the third, they are due again at once.
	// Under the sink's lock row, which a delivery pass holds from its read
	// to its record: taking it waits for a pass under way, and no pass
	// runs until the change is committed.
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, r.st.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT sink FROM alert_sinks WHERE sink = $1 FOR NO KEY UPDATE`, sinkPagerDuty); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			UPDATE alert_deliveries SET next_attempt_at = $2, attempts = 20
			WHERE alert_id IN (SELECT id FROM alerts WHERE dedup_key = ANY($1))`, keys[:2], r.now().Add(time.Hour))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var held int
	if err := r.st.Pool().QueryRow(ctx, `SELECT count(*) FROM alert_deliveries WHERE next_attempt_at > $1`,
		r.now().Add(30*time.Minute)).Scan(&held); err != nil || held != 2 {
		t.Fatalf("%d deliveries held back (%v), want 2", held, err)
	}

	up.Store(true)
	waitFor(t, 5*time.Second, "the backlog delivered", func() bool {
		for _, k := range keys {
			if events(pd, "trigger", k) != 1 {
				return false
			}
		}
		return true
	})
	waitFor(t, 2*time.Second, "pending back to 0", func() bool { return metricValue(t, pending) == 0 })
	if v := metricValue(t, x.m.sent.WithLabelValues(sinkPagerDuty, "trigger")); v != 3 {
		t.Errorf("sent %v, want 3", v)
	}
	var attempts int
	if err := r.st.Pool().QueryRow(context.Background(),
		`SELECT coalesce(sum(attempts), -1) FROM alert_deliveries WHERE last_error IS NULL`).Scan(&attempts); err != nil || attempts != 0 {
		t.Errorf("attempts after success %d (%v), want 0", attempts, err)
	}
}

func TestSinkAnswering503ThenAcceptedIsDeliveredOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	pd.setStatus(func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	})
	x := r.start(pdConfig(pd))
	f := r.finding("credential-reuse-after-revoke", schemas.SeverityCritical, "appdb", "v-token-"+pgtest.Suffix())
	r.insert(f)
	waitFor(t, 5*time.Second, "the trigger after two 503s", func() bool { return events(pd, "trigger", dedupKey(f)) == 1 })
	if v := metricValue(t, x.m.failed.WithLabelValues(sinkPagerDuty)); v != 2 {
		t.Errorf("failed %v, want 2", v)
	}
	r.quiet()
	if n := len(pd.docs()); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}

func TestSlowSinkDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	slow := newReceiver(t)
	release := make(chan struct{})
	slow.setBlock(release)
	t.Cleanup(func() { close(release) }) // runs before the servers close
	cfg := pdConfig(pd)
	cfg.SlackWebhookURL = slow.srv.URL + "/services/T/B/slow"
	cfg.Timeout = 10 * time.Second
	x := r.start(cfg)

	start := time.Now()
	f := r.finding("orphan-role", schemas.SeverityHigh, "appdb", "v-token-"+pgtest.Suffix())
	r.insert(f)
	waitFor(t, 3*time.Second, "PagerDuty while Slack hangs", func() bool { return events(pd, "trigger", dedupKey(f)) == 1 })
	// Intake goes on too: a second alert reaches PagerDuty, Slack still hangs.
	g := r.finding("orphan-role", schemas.SeverityHigh, "appdb", "v-token-"+pgtest.Suffix())
	r.insert(g)
	waitFor(t, 3*time.Second, "a second alert while Slack hangs", func() bool { return events(pd, "trigger", dedupKey(g)) == 1 })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	if len(slow.docs()) != 0 {
		t.Fatalf("the hanging sink answered")
	}
	if v := metricValue(t, x.m.pending.WithLabelValues(sinkSlack)); v < 1 {
		t.Errorf("slack pending %v, want its deliveries waiting", v)
	}
}

func TestAutoResolve(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	cfg := pdConfig(pd)
	cfg.AutoResolve = time.Hour
	x := r.start(cfg)

	ghost := r.finding("ghost-session", schemas.SeverityCritical, "appdb", "")
	orphan := r.finding("orphan-role", schemas.SeverityHigh, "appdb", "v-token-"+pgtest.Suffix())
	r.insert(ghost)
	r.insert(orphan)
	gk, ok := dedupKey(ghost), dedupKey(orphan)
	if !strings.HasSuffix(gk, "/finding:"+ghost.ID) {
		t.Errorf("dedup key %q of a finding with no user", gk)
	}
	waitFor(t, 5*time.Second, "both triggers", func() bool { return events(pd, "trigger", gk) == 1 && events(pd, "trigger", ok) == 1 })

	r.advance(59 * time.Minute)
	r.quiet() // an intake pass at the new time, and its deliveries
	if events(pd, "resolve", gk) != 0 || r.alerts(gk)[0].resolved {
		t.Fatalf("resolved before the auto-resolve time")
	}
	r.advance(2 * time.Minute)
	waitFor(t, 5*time.Second, "the ghost-session alert auto-resolved", func() bool { return events(pd, "resolve", gk) == 1 })
	if as := r.alerts(gk); len(as) != 1 || !strings.HasPrefix(as[0].reason, "no finding for 1h") {
		t.Errorf("alerts %+v", as)
	}
	// An orphan role is resolved by its drop, not by time.
	if as := r.alerts(ok); len(as) != 1 || as[0].resolved {
		t.Errorf("orphan alert %+v, want still open", as)
	}
	if v := metricValue(t, x.m.resolved.WithLabelValues("ghost-session", resolveByTimeout)); v != 1 {
		t.Errorf("resolved metric %v", v)
	}
}

func TestRevocationBeforeTheWindowDoesNotResolve(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	r.start(pdConfig(pd))
	user := "v-token-" + pgtest.Suffix()
	// A drop long before the finding, and one that failed after it: neither
	// ends the condition.
	r.revoked("appdb", user, schemas.OutcomeDropped)
	r.advance(DefaultDedupWindow + time.Minute)
	r.revoked("appdb", user, schemas.OutcomeRefused)
	f := r.finding("lease-expired-not-revoked", schemas.SeverityHigh, "appdb", user)
	r.insert(f)
	waitFor(t, 5*time.Second, "the trigger", func() bool { return events(pd, "trigger", dedupKey(f)) == 1 })
	r.intakePassed() // one that could have resolved it
	if as := r.alerts(dedupKey(f)); len(as) != 1 || as[0].resolved {
		t.Fatalf("alerts %+v, want one open", as)
	}
	r.revoked("appdb", user, schemas.OutcomeDropped)
	waitFor(t, 5*time.Second, "the resolve", func() bool { return events(pd, "resolve", dedupKey(f)) == 1 })
}

func TestTwoDispatchersDeliverOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	r.start(pdConfig(pd))
	r.start(pdConfig(pd))
	var keys []string
	for range 5 {
		f := r.finding("orphan-role", schemas.SeverityHigh, "appdb", "v-token-"+pgtest.Suffix())
		r.insert(f)
		keys = append(keys, dedupKey(f))
	}
	waitFor(t, 5*time.Second, "five triggers", func() bool { return len(pd.docs()) >= 5 })
	r.quiet()
	for _, k := range keys {
		if n := events(pd, "trigger", k); n != 1 {
			t.Errorf("%s: %d triggers, want 1", k, n)
		}
		if as := r.alerts(k); len(as) != 1 {
			t.Errorf("%s: %d alerts, want 1", k, len(as))
		}
	}
}

func TestSinkAddedLaterGetsOpenAlerts(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	ctx, cancel := context.WithCancel(context.Background())
	first, err := New(fastConfig(), Deps{Pool: r.st.Pool(), Clock: r.now})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	f := r.finding("orphan-role", schemas.SeverityHigh, "appdb", "v-token-"+pgtest.Suffix())
	r.insert(f)
	waitFor(t, 5*time.Second, "the alert raised with no sink", func() bool { return len(r.alerts(dedupKey(f))) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r.start(pdConfig(pd))
	waitFor(t, 5*time.Second, "the open alert sent to the new sink", func() bool { return events(pd, "trigger", dedupKey(f)) == 1 })
}

func TestSecretsStayOutOfLogsAndState(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	// Slack answers 500 with an error that echoes the request path; PagerDuty
	// refuses the event (400) naming the routing key; both are retried.
	sl := newReceiver(t)
	sl.setStatus(func(int) int { return http.StatusInternalServerError })
	sl.setBody(func(req *http.Request) string { return "no_service for " + req.URL.Path })
	pd := newReceiver(t)
	pd.setStatus(func(int) int { return http.StatusBadRequest })
	pd.setBody(func(*http.Request) string {
		return `{"status":"invalid event","message":"bad key ` + testRoutingKey + `"}`
	})
	dead := freePort(t) // nothing listens there
	cfg := pdConfig(pd)
	cfg.SlackWebhookURL = sl.srv.URL + "/services/T0/B0/webhookTOKENs3cr3t"
	cfg.AlertmanagerURLs = []string{"http://lg:amPa55word@127.0.0.1:" + strconv.Itoa(dead)}
	x := r.start(cfg)
	f := r.finding("orphan-role", schemas.SeverityHigh, "appdb", "v-token-"+pgtest.Suffix())
	r.insert(f)
	for _, s := range x.Sinks() {
		waitFor(t, 5*time.Second, "failures of "+s, func() bool { return metricValue(t, x.m.failed.WithLabelValues(s)) >= 2 })
	}
	rows, err := r.st.Pool().Query(context.Background(), `SELECT sink, coalesce(last_error, '') FROM alert_deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	var state strings.Builder
	for rows.Next() {
		var s, e string
		if err := rows.Scan(&s, &e); err != nil {
			t.Fatal(err)
		}
		state.WriteString(s + ": " + e + "\n")
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	logs := r.logs.String()
	for where, text := range map[string]string{"logs": logs, "alert_deliveries": state.String(), "config": cfg.String()} {
		for _, secret := range []string{"webhookTOKENs3cr3t", testRoutingKey, "amPa55word"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain a secret (%s…):\n%s", where, secret[:4], text)
			}
		}
	}
	for _, want := range []string{"http 500: no_service for REDACTED", "http 400", "bad key REDACTED", "connect"} {
		if !strings.Contains(state.String(), want) {
			t.Errorf("delivery errors lack %q:\n%s", want, state.String())
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	base, ceiling := 100*time.Millisecond, 2*time.Second
	for failures, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: ceiling, 60: ceiling} {
		for range 50 {
			got := retryWait(base, ceiling, failures)
			if got < want/2 || got > want {
				t.Fatalf("backoff after %d failures %s, want within [%s, %s]", failures, got, want/2, want)
			}
		}
	}
}

func TestNewRefusesWhatItCannotRun(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Error("no state store: accepted")
	}
	r := newRig(t)
	reg := prometheus.NewRegistry()
	if _, err := New(Config{}, Deps{Pool: r.st.Pool(), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{}, Deps{Pool: r.st.Pool(), Registerer: reg}); err == nil {
		t.Error("second dispatcher on one registry: accepted")
	}
	x, err := New(Config{}, Deps{Pool: r.st.Pool(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	waitFor(t, 5*time.Second, "Run started", x.running.Load)
	if err := x.Run(ctx); err == nil {
		t.Error("Run twice at once: accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Each notification a sink accepts is progress, even while the pass goes
// on: a slow sink that answers is not reported stalled.
func TestSinkDeliveriesReportProgress(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pd := newReceiver(t)
	gate := make(chan struct{})
	pd.setBlock(gate)
	t.Cleanup(func() { close(gate) }) // runs before the server closes
	for range 2 {
		r.insert(r.finding("orphan-role", schemas.SeverityHigh, "appdb", "v-token-"+pgtest.Suffix()))
	}
	tracker := progress.NewTracker(nil)
	x, err := New(pdConfig(pd), Deps{Pool: r.st.Pool(), Registerer: prometheus.NewRegistry(), Clock: r.now,
		Progress: tracker.Worker("alerts")})
	if err != nil {
		t.Fatal(err)
	}
	r.run(x)
	sink := func() progress.Status {
		for _, s := range tracker.Status() {
			if s.Worker == "alerts."+sinkPagerDuty {
				return s
			}
		}
		t.Fatalf("no worker for the sink in %+v", tracker.Status())
		return progress.Status{}
	}
	waitFor(t, 10*time.Second, "a delivery pass waiting on the sink", func() bool { return sink().Held > 100*time.Millisecond })
	before := time.Now()
	gate <- struct{}{} // the first of the pass's two notifications
	waitFor(t, 10*time.Second, "progress for the notification accepted, within the pass", func() bool {
		s := sink()
		return !s.LastProgress.Before(before) && s.Held > 0
	})
	gate <- struct{}{}
	waitFor(t, 10*time.Second, "the pass over", func() bool { return !sink().Busy })
}
