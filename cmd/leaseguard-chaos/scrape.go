package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dropsMetric is the revoker's outcome counter; its dropped samples count
// the users a process dropped.
const dropsMetric = "leaseguard_revocations_total"

// scrapeTimeout bounds one scrape of a /metrics page: a process busy on
// two loaded cores can take seconds to answer, and one that never answers
// must not hold a case's wait.
const scrapeTimeout = 5 * time.Second

// droppedIn sums the samples of leaseguard_revocations_total with
// outcome="dropped" in a Prometheus text exposition.
func droppedIn(r io.Reader) (int, error) {
	sum := 0.0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, dropsMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !hasLabel(labels, "outcome", "dropped") {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", line, err)
		}
		sum += v
	}
	return int(sum), sc.Err()
}

// hasLabel says whether a label set (a="x",b="y") has name="value".
func hasLabel(labels, name, value string) bool {
	for _, l := range strings.Split(labels, ",") {
		if strings.TrimSpace(l) == name+`="`+value+`"` {
			return true
		}
	}
	return false
}

// dropsScraper reads every leaseguard's /metrics every 250 ms and keeps the
// last count of users each one dropped: a killed process keeps the count
// of its last scrape.
type dropsScraper struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	last map[int]int
}

func (e *caseEnv) scrapeDrops(indexes []int) *dropsScraper {
	ctx, cancel := context.WithCancel(context.Background())
	s := &dropsScraper{cancel: cancel, done: make(chan struct{}), last: map[int]int{}}
	client := &http.Client{Timeout: scrapeTimeout}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, i := range indexes {
				if n, err := scrapeDropped(ctx, client, e.metricsURL(i)); err == nil {
					s.mu.Lock()
					s.last[i] = n
					s.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// scrapeDropped reads one process's dropped count.
func scrapeDropped(ctx context.Context, client *http.Client, base string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s/metrics: %s", base, resp.Status)
	}
	return droppedIn(resp.Body)
}

// counts is a copy of the last count of each process.
func (s *dropsScraper) counts() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int, len(s.last))
	for k, v := range s.last {
		out[k] = v
	}
	return out
}

func (s *dropsScraper) stop() {
	s.cancel()
	<-s.done
}
