//go:build e2e

package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// socketProxy stands between Vault's socket audit device and leaseguard,
// so the test can make the socket unavailable (connections cut, new ones
// refused) while leaseguard keeps running. Open, it forwards bytes both
// ways and nothing else.
type socketProxy struct {
	addr, upstream string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startSocketProxy(t *testing.T, upstream string) *socketProxy {
	t.Helper()
	p := &socketProxy{addr: freePort(t), upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.open(t)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

// open listens on the proxy's address (again).
func (p *socketProxy) open(t *testing.T) {
	t.Helper()
	var ln net.Listener
	poll(t, "the socket proxy to listen on "+p.addr, 10*time.Second, func() (bool, string) {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.forward(c) }()
		}
	}()
}

func (p *socketProxy) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) { _, _ = io.Copy(dst, src); done <- struct{}{} }
	go pipe(up, c)
	go pipe(c, up)
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// track registers a proxied pair; false (both closed) when the proxy was
// cut meanwhile.
func (p *socketProxy) track(c, up net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		_ = c.Close()
		_ = up.Close()
		return false
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	return true
}

// cut closes the listener and every proxied connection: Vault's writes
// fail and its reconnections are refused, and leaseguard sees its peer
// go away.
func (p *socketProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
}

var metricsAddrRE = regexp.MustCompile(`"?leaseguard running"?.*\bmetrics=([0-9.:\[\]a-f]+)`)

// metricsURL is the /metrics address of the leaseguard that started last.
func metricsURL(t *testing.T, logPath string) string {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	addr := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := metricsAddrRE.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("no metrics address in the leaseguard log")
	}
	return "http://" + addr + "/metrics"
}

// metric sums the samples of name whose labels contain every one of
// labels (e.g. `reason="closed"`); ok is false when there is none.
func metric(t *testing.T, url, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
sample:
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series, value := line[:i], line[i+1:]
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(series, l) {
				continue sample
			}
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		v += f
		ok = true
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return v, ok
}

// waitMetric polls until name{labels} has the value want.
func waitMetric(t *testing.T, url, what string, want float64, name string, labels ...string) {
	t.Helper()
	poll(t, what, 30*time.Second, func() (bool, string) {
		v, ok := metric(t, url, name, labels...)
		return ok && v == want, name + " is " + strconv.FormatFloat(v, 'g', -1, 64) + " (present: " + strconv.FormatBool(ok) + ")"
	})
}
