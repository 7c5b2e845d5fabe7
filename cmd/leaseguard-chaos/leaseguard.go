package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// leaseguard is one `leaseguard run` process of a case.
type leaseguard struct {
	*proc
	index int
}

// startLeaseguard starts leaseguard number i of the case (again, after a
// stop: same data directory and metrics port) and waits until it runs.
func (e *caseEnv) startLeaseguard(i int) (*leaseguard, error) {
	env, err := e.leaseguardEnv(i)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(e.dir, fmt.Sprintf("leaseguard%d.log", i))
	p, err := startProc(fmt.Sprintf("leaseguard %d", i), e.h.opt.bin, []string{"run"}, env, logPath, `"leaseguard running"`, 90*time.Second)
	if err != nil {
		return nil, err
	}
	lg := &leaseguard{proc: p, index: i}
	for len(e.procs) <= i {
		e.procs = append(e.procs, nil)
	}
	e.procs[i] = lg
	return lg, nil
}

// verifyChain runs `leaseguard evidence verify` on the case's outbox,
// straight to PostgreSQL (not through a proxy).
func (e *caseEnv) verifyChain(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.h.opt.bin, "evidence", "verify")
	cmd.Env = append(cleanEnv(), "LEASEGUARD_DATABASE_URL="+e.h.opt.dbURL, "LEASEGUARD_DATABASE_SCHEMA="+e.schema,
		"LEASEGUARD_DATA_DIR="+filepath.Join(e.dir, "verify"), "LEASEGUARD_LOG_FORMAT=json")
	out, err := cmd.CombinedOutput()
	return err == nil, strings.TrimSpace(string(out))
}

// readyWatcher polls /readyz of one leaseguard, keeping every answer.
type readyWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples []Sample
}

// watchReady polls url/readyz every 200 ms until stopped. A refused
// request counts as not ready; the client waits longer than the 3 s that
// /readyz gives its checks, so that a slow answer is not mistaken for a
// failing one.
func watchReady(url string) *readyWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &readyWatcher{cancel: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			w.poll(ctx, client, url+"/readyz")
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *readyWatcher) poll(ctx context.Context, client *http.Client, url string) {
	ready := false
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err == nil {
		if resp, err := client.Do(req); err == nil {
			ready = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
	}
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	w.samples = append(w.samples, Sample{At: time.Now(), Ready: ready})
	w.mu.Unlock()
}

func (w *readyWatcher) stop() {
	w.cancel()
	<-w.done
}

// notReadyBetween says whether /readyz was seen not ready in [from, to].
func (w *readyWatcher) notReadyBetween(from, to time.Time) *bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := notReadyBetween(w.samples, from, to)
	return &v
}
