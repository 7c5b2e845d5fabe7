package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/schemas"
)

// decodeScenario measures Decode + Normalize on one core against
// encoding/json into map[string]any over the same lines, runs interleaved.
func (b *Bench) decodeScenario(ctx context.Context) error {
	c := generateCorpus(b.opt.decodeEntries, 1)
	lo, med, hi := c.sizes()
	kinds, err := classify(c)
	if err != nil {
		return err
	}
	b.logf("decode: corpus of %d entries, %.1f MB, sizes %d/%d/%d bytes (p1/p50/p99); kinds %s",
		len(c.lines), float64(c.bytes())/1e6, lo, med, hi, kinds)

	stop, err := b.startProfile("decode")
	if err != nil {
		return err
	}
	defer stop()
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)

	var ours, base []float64
	for r := range b.opt.runsFor("decode") {
		if err := ctx.Err(); err != nil {
			return err
		}
		cs := sampleCPU()
		o, err := decodeRate(c, b.opt.decodeRunTime)
		if err != nil {
			return err
		}
		m, err := mapRate(c, b.opt.decodeRunTime)
		if err != nil {
			return err
		}
		ours, base = append(ours, o), append(base, m)
		b.logf("decode: run %d: %s/s, baseline %s/s (%s)", r+1, thousands(int64(o)), thousands(int64(m)), b.cpuSince(cs))
	}
	v, bl := median(ours), median(base)
	b.results.add(row{figure: "decode+normalise, 1 core", value: v, baseline: bl, unit: "/s",
		target: "≥100,000/s, > baseline", verdict: verdict(v >= 100000 && v > bl)})
	b.results.set("decode_entries_per_sec", v)
	b.results.set("decode_baseline_entries_per_sec", bl)
	b.results.set("decode_mb_per_sec", v*float64(c.bytes())/float64(len(c.lines))/1e6)
	b.results.note("decode corpus: %d entries of %d–%d bytes (p1–p99, median %d); by kind: %s", len(c.lines), lo, hi, med, kinds)
	return nil
}

// decodeRate runs Decode + Normalize over the corpus, in passes, for at
// least d, and returns entries per second.
func decodeRate(c *corpus, d time.Duration) (float64, error) {
	var dec ingest.Decoder
	src := schemas.SourceRef{Transport: "nats", Stream: "VAULT_AUDIT", Subject: "vault.audit.bench"}
	runtime.GC()
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for _, line := range c.lines {
			e, err := dec.Decode(line)
			if err != nil {
				return 0, fmt.Errorf("decode: %w", err)
			}
			if _, err := ingest.Normalize(&e, src); err != nil {
				return 0, fmt.Errorf("normalize: %w", err)
			}
		}
		n += len(c.lines)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// mapRate is the baseline: json.Unmarshal of each line into map[string]any.
func mapRate(c *corpus, d time.Duration) (float64, error) {
	runtime.GC()
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for _, line := range c.lines {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				return 0, err
			}
		}
		n += len(c.lines)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// classify returns the share of each normaliser kind in the corpus, as
// "other_response 40.1%, …": proof of the traffic mix.
func classify(c *corpus) (string, error) {
	var dec ingest.Decoder
	counts := map[ingest.Kind]int{}
	for _, line := range c.lines {
		e, err := dec.Decode(line)
		if err != nil {
			return "", fmt.Errorf("generated entry does not decode: %w", err)
		}
		n, err := ingest.Normalize(&e, schemas.SourceRef{})
		if err != nil {
			return "", fmt.Errorf("generated entry does not normalise: %w", err)
		}
		counts[n.Kind]++
	}
	type kv struct {
		k ingest.Kind
		n int
	}
	var all []kv
	for k, n := range counts {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	parts := make([]string, len(all))
	for i, e := range all {
		parts[i] = fmt.Sprintf("%s %.1f%%", e.k, math.Round(1000*float64(e.n)/float64(len(c.lines)))/10)
	}
	return strings.Join(parts, ", "), nil
}
