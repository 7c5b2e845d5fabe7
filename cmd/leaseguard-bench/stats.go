package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// median of xs; NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted; NaN when empty.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// dist is a latency distribution in milliseconds.
type dist struct {
	n                       int
	p50, p95, p99, max, min float64
}

func distOf(ms []float64) dist {
	s := slices.Clone(ms)
	slices.Sort(s)
	d := dist{n: len(s), p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99)}
	if len(s) > 0 {
		d.min, d.max = s[0], s[len(s)-1]
	} else {
		d.min, d.max = math.NaN(), math.NaN()
	}
	return d
}

func (d dist) String() string {
	return fmt.Sprintf("p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms (n=%d)", d.p50, d.p95, d.p99, d.max, d.n)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// procField reads the first number after prefix in a /proc file of the
// "Key:   value kB" kind.
func procField(path, prefix string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s line", path, prefix)
}

// cleanups run in reverse order of registration, once, each with its own
// timeout and never cancelled by the harness's context.
type cleanups struct {
	mu  sync.Mutex
	fns []cleanup
}

type cleanup struct {
	what string
	fn   func(context.Context) error
}

func (c *cleanups) add(what string, fn func(context.Context) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, cleanup{what, fn})
}

func (c *cleanups) run(log io.Writer) {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := fns[i].fn(ctx); err != nil {
			fmt.Fprintf(log, "cleanup: %s: %v\n", fns[i].what, err)
		}
		cancel()
	}
}

// cpuSample is a reading of the machine's and this process's CPU time, to
// tell how busy the machine was while a run was measured (other work on
// the machine makes the figures noisy).
type cpuSample struct {
	at time.Time
	// Seconds of CPU: all CPUs, this process.
	busy, self float64
	// pg: CPU seconds of each postgres process (ours and anyone else's).
	pg map[int]float64
	// child: CPU seconds of the child process, if any (pid > 0).
	child    float64
	childPID int
}

// sampleCPU reads the CPU counters; childPID, when not 0, is a child
// process (leaseguard) counted on its own.
func sampleCPU(childPID ...int) cpuSample {
	s := cpuSample{at: time.Now()}
	if len(childPID) > 0 && childPID[0] > 0 {
		s.childPID = childPID[0]
		s.child, _ = procCPU(fmt.Sprintf("/proc/%d/stat", s.childPID))
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		var total, idle float64
		for i, v := range f[1:] {
			x, _ := strconv.ParseFloat(v, 64)
			total += x
			if i == 3 || i == 4 { // idle, iowait
				idle += x
			}
		}
		s.busy = (total - idle) / 100
	}
	s.self, _ = procCPU("/proc/self/stat")
	s.pg = map[int]float64{}
	if dirs, err := os.ReadDir("/proc"); err == nil {
		for _, d := range dirs {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			if cpu, comm := procCPU("/proc/" + d.Name() + "/stat"); comm == "postgres" {
				s.pg[pid] = cpu
			}
		}
	}
	return s
}

// procCPU reads a process's user+system CPU seconds and its command name
// from /proc/<pid>/stat.
func procCPU(path string) (float64, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, ""
	}
	open, end := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
	if open < 0 || end < open {
		return 0, ""
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b)[end+1:])
	if len(f) <= 12 {
		return 0, ""
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100, string(b)[open+1 : end]
}

// cpuSince describes the CPU used between s and now, in cores: the
// machine, this harness, the leaseguard child if any, PostgreSQL for our
// connections and for other clients (backends alive at both ends), and
// other processes.
func (b *Bench) cpuSince(s cpuSample) string {
	e := sampleCPU(s.childPID)
	ours := b.ourBackends()
	wall := e.at.Sub(s.at).Seconds()
	if wall <= 0 {
		return ""
	}
	var pgOurs, pgOthers float64
	for pid, cpu := range e.pg {
		if ours[pid] {
			pgOurs += cpu - s.pg[pid]
		} else {
			pgOthers += cpu - s.pg[pid]
		}
	}
	busy, self, child := (e.busy-s.busy)/wall, (e.self-s.self)/wall, (e.child-s.child)/wall
	pgOurs, pgOthers = pgOurs/wall, pgOthers/wall
	other := max(0, busy-self-child-pgOurs-pgOthers)
	lg := ""
	if s.childPID > 0 {
		lg = fmt.Sprintf("leaseguard %.2f, ", child)
	}
	return fmt.Sprintf("cores busy %.2f of %d: %sthis harness %.2f, postgres for us %.2f, postgres for other clients %.2f, other processes %.2f",
		busy, runtime.NumCPU(), lg, self, pgOurs, pgOthers, other)
}
