package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is `leaseguard run` started by the harness.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set when done closes
	// metrics is the address of its /metrics, from its start-up log line.
	metrics string

	mu   sync.Mutex
	tail []string // last log lines, for errors
}

// startLeaseguard runs `<bin> run` with the given LEASEGUARD_* settings
// (the harness's own LEASEGUARD_* variables are not passed on) and waits
// until it logs that it is running.
func (b *Bench) startLeaseguard(ctx context.Context, env map[string]string) (*child, error) {
	if _, err := os.Stat(b.opt.bin); err != nil {
		return nil, fmt.Errorf("leaseguard binary %s: %w (run make build, or pass -leaseguard)", b.opt.bin, err)
	}
	cmd := exec.Command(b.opt.bin, "run")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEASEGUARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	base := map[string]string{
		"LEASEGUARD_DATABASE_URL":  b.appURL("leaseguard-bench-child"),
		"LEASEGUARD_METRICS_ADDR":  "127.0.0.1:0",
		"LEASEGUARD_LOG_FORMAT":    "json",
		"LEASEGUARD_LOG_LEVEL":     "info",
		"LEASEGUARD_INSTANCE":      "bench",
		"LEASEGUARD_ROLES":         "ingest,detectors,revoker,relay",
		"LEASEGUARD_ROUTES":        "",
		"LEASEGUARD_TARGETS":       "",
		"LEASEGUARD_KAFKA_BROKERS": "",
	}
	for k, v := range env {
		base[k] = v
	}
	for k, v := range base {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// If the harness dies, so does the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s run: %w", b.opt.bin, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go c.readLog(stderr, ready)
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	select {
	case addr := <-ready:
		c.metrics = addr
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("leaseguard run exited at start (%v): %s", c.err, c.lastLines())
	case <-time.After(60 * time.Second):
		c.stop()
		return nil, fmt.Errorf("leaseguard run not running after 60s: %s", c.lastLines())
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

// readLog keeps the last lines of the child's JSON log and reports the
// metrics address from "leaseguard running".
func (c *child) readLog(r io.Reader, ready chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec struct {
			Msg     string `json:"msg"`
			Metrics string `json:"metrics"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "leaseguard running" {
			select {
			case ready <- rec.Metrics:
			default:
			}
		}
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > 20 {
			c.tail = c.tail[len(c.tail)-20:]
		}
		c.mu.Unlock()
	}
}

func (c *child) lastLines() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM and waits (SIGKILL after 20 s). Safe to call twice.
func (c *child) stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return errors.New("leaseguard did not stop within 20s of SIGTERM; killed")
	}
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) {
		return c.err
	}
	if ee != nil && ee.ExitCode() != 0 {
		return fmt.Errorf("leaseguard exited with %d: %s", ee.ExitCode(), c.lastLines())
	}
	return nil
}

// rss returns VmRSS and VmHWM of the child in MB.
func (c *child) rss() (rss, hwm float64, err error) {
	path := fmt.Sprintf("/proc/%d/status", c.pid())
	r, err := procField(path, "VmRSS:")
	if err != nil {
		return 0, 0, err
	}
	h, err := procField(path, "VmHWM:")
	if err != nil {
		return 0, 0, err
	}
	return float64(r) / 1024, float64(h) / 1024, nil
}

// metric sums the samples of a counter, or the counts of a histogram, in
// the child's /metrics (text format, no labels parsed).
func (c *child) metric(ctx context.Context, name string) (float64, error) {
	if c.metrics == "" {
		return 0, errors.New("no metrics address")
	}
	addr := c.metrics
	if strings.HasPrefix(addr, "[::]:") || strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr[strings.LastIndex(addr, ":"):]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
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
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest != "" && rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}
