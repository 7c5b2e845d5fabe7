package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// reportBench is a Bench that measured one figure and writes results.json
// into a test directory.
func reportBench(t *testing.T) (*Bench, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "results.json")
	b := &Bench{opt: options{out: out}, stdout: &bytes.Buffer{}, stderr: io.Discard, results: newResults(), started: time.Now()}
	b.results.set("revocations_per_sec", 1234)
	return b, out
}

func readResults(t *testing.T, path string) map[string]float64 {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("results.json: %v", err)
	}
	var got map[string]float64
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	return got
}

// A run stopped by -timeout (or Ctrl-C) writes what it measured, marked
// incomplete, and fails: a full run on a slow machine measured for half an
// hour and wrote nothing when Vault's last run was cut off.
func TestStoppedRunWritesWhatItMeasured(t *testing.T) {
	b, out := reportBench(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if code := b.report(ctx, false); code != exitFailed {
		t.Errorf("exit code %d for a stopped run, want %d", code, exitFailed)
	}
	got := readResults(t, out)
	if got["revocations_per_sec"] != 1234 || got["bench_incomplete"] != 1 {
		t.Errorf("results.json of a stopped run: %v; want the figure measured and bench_incomplete 1", got)
	}
}

func TestFinishedRunIsNotMarkedIncomplete(t *testing.T) {
	b, out := reportBench(t)
	if code := b.report(context.Background(), false); code != exitOK {
		t.Errorf("exit code %d, want %d", code, exitOK)
	}
	if got := readResults(t, out); len(got) != 1 || got["revocations_per_sec"] != 1234 {
		t.Errorf("results.json: %v", got)
	}
}

// The vault scenario starts another run only if -timeout leaves room for
// one as long as the longest so far, and a quarter more.
func TestRoomForAnotherRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, c := range []struct {
		longest time.Duration
		want    bool
	}{{7 * time.Minute, true}, {9 * time.Minute, false}, {11 * time.Minute, false}, {0, true}} {
		if got := roomFor(ctx, c.longest); got != c.want {
			t.Errorf("10 min left, a run of %s: room for another %v, want %v", c.longest, got, c.want)
		}
	}
	if !roomFor(context.Background(), time.Hour) {
		t.Error("no deadline: no room for another run")
	}
}
