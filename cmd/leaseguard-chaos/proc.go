package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the suite started: a leaseguard, a nats-server,
// a Kafka broker or an Alertmanager. Its output goes to a log file; a line
// containing ready, if given, marks it started.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	started time.Time

	mu   sync.Mutex
	tail []string
}

// startProc runs bin with args and env (added to this process's
// environment without its LEASEGUARD_* variables) and, if ready is not
// empty, waits up to timeout for a log line containing it.
func startProc(name, bin string, args, env []string, logPath, ready string, timeout time.Duration) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, logPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(cleanEnv(), env...)
	// If the suite dies, its children die with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	p.cmd.Stdout = p.cmd.Stderr
	seen := make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.started = time.Now()
	go p.read(out, logf, ready, seen)
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	if ready == "" {
		return p, nil
	}
	select {
	case <-seen:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited at start (%v): %s", name, p.cmd.ProcessState, p.lastLines())
	case <-time.After(timeout):
		p.kill()
		return nil, fmt.Errorf("%s not started after %s: %s", name, timeout, p.lastLines())
	}
}

// read copies the output to the log file, keeps its last lines and closes
// seen at the first line containing ready.
func (p *proc) read(r io.Reader, logf *os.File, ready string, seen chan struct{}) {
	defer logf.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	once := sync.Once{}
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(logf, line)
		if ready != "" && strings.Contains(line, ready) {
			once.Do(func() { close(seen) })
		}
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > 15 {
			p.tail = p.tail[len(p.tail)-15:]
		}
		p.mu.Unlock()
	}
}

func (p *proc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// term sends SIGTERM and waits up to timeout, then kills. It reports a
// shutdown that needed the kill, or a non-zero exit.
func (p *proc) term(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, timeout)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with %d after SIGTERM: %s", p.name, code, p.lastLines())
	}
	return nil
}

// cleanEnv is this process's environment without LEASEGUARD_ settings, so
// a child sees only what the suite sets.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEASEGUARD_") {
			out = append(out, kv)
		}
	}
	return out
}

// freePort returns a loopback port free at the time of the call.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
