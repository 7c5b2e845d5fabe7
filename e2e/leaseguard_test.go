//go:build e2e

package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// leaseguardProc is a `leaseguard run` process.
type leaseguardProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startLeaseguard(t *testing.T, bin string, env []string, logPath string) *leaseguardProc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p := &leaseguardProc{log: logPath, done: make(chan struct{})}
	started := countInLog(logPath, "leaseguard running")
	p.cmd = exec.Command(bin, "run")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start leaseguard: %v", err)
	}
	go func() { _ = p.cmd.Wait(); _ = logf.Close(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	poll(t, "leaseguard to start", 60*time.Second, func() (bool, string) {
		select {
		case <-p.done:
			dumpTail(t, "leaseguard", p.log)
			t.Fatalf("leaseguard exited: %v", p.cmd.ProcessState)
		default:
		}
		return countInLog(p.log, "leaseguard running") > started, "not running yet"
	})
	return p
}

// stop ends the process with SIGTERM (a graceful shutdown) and waits.
func (p *leaseguardProc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("leaseguard did not stop within 30s of SIGTERM; killing it")
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 && !t.Failed() {
		t.Errorf("leaseguard exited with %d", code)
	}
}

// cleanEnv is this process's environment without LEASEGUARD_ settings, so
// the child sees only what the test sets.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEASEGUARD_") {
			out = append(out, kv)
		}
	}
	return out
}

// countInLog counts lines of the log containing s.
func countInLog(path, s string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// dumpTail logs the last lines of a process log.
func dumpTail(t *testing.T, name, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("last lines of the %s log:\n%s", name, strings.Join(lines, "\n"))
}

// poll checks cond until it holds or timeout passes; cond says why not.
func poll(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 50 * time.Millisecond
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(delay)
		delay = min(2*delay, 500*time.Millisecond)
	}
}
