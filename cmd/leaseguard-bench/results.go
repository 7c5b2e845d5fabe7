package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one line of the table.
type row struct {
	figure   string
	value    float64
	baseline float64 // NaN: no baseline
	unit     string
	target   string
	verdict  string // PASS, FAIL, or "" (no target)
	// inverse: lower is better, the ratio is baseline ÷ value.
	inverse bool
}

// results collects the table rows, the JSON figures and notes.
type results struct {
	rows  []row
	json  map[string]float64
	notes []string
}

func newResults() *results { return &results{json: map[string]float64{}} }

func (r *results) any() bool { return len(r.json) > 0 }

func (r *results) add(rw row) { r.rows = append(r.rows, rw) }

// set records a figure for results.json.
func (r *results) set(key string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	r.json[key] = math.Round(v*1000) / 1000
}

func (r *results) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func (r *results) print(w io.Writer, b *Bench) {
	fmt.Fprintf(w, "\nleaseguard-bench  %s  %d CPUs, %.0f GiB RAM, %s%s\n", time.Now().Format("2006-01-02 15:04"),
		runtime.NumCPU(), memTotalGiB(), runtime.Version(), map[bool]string{true: "  (-quick: small sizes, not the figures)"}[b.opt.quick])
	if len(r.rows) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "figure\tvalue\tbaseline\tratio\ttarget\tverdict\t")
		for _, rw := range r.rows {
			base, ratio := "—", "—"
			if !math.IsNaN(rw.baseline) {
				base = formatValue(rw.baseline, rw.unit)
				switch {
				case rw.inverse && rw.value != 0:
					ratio = fmt.Sprintf("%.2f×", rw.baseline/rw.value)
				case !rw.inverse && rw.baseline != 0:
					ratio = fmt.Sprintf("%.2f×", rw.value/rw.baseline)
				}
			}
			v := rw.verdict
			if v == "" {
				v = "—"
			}
			t := rw.target
			if t == "" {
				t = "—"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", rw.figure, formatValue(rw.value, rw.unit), base, ratio, t, v)
		}
		_ = tw.Flush()
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

// formatValue prints a figure with its unit: rates with thousands
// separators, milliseconds and megabytes with sensible precision.
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	switch unit {
	case "/s":
		if math.Abs(v) < 10 {
			return fmt.Sprintf("%.1f/s", v)
		}
		return thousands(int64(math.Round(v))) + "/s"
	case "ms":
		if math.Abs(v) < 10 {
			return fmt.Sprintf("%.1f ms", v)
		}
		return thousands(int64(math.Round(v))) + " ms"
	case "MB":
		return fmt.Sprintf("%.1f MB", v)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// writeJSON writes the figures (numbers only), creating the directory.
func (r *results) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// encoding/json writes map keys sorted.
	body, err := json.MarshalIndent(r.json, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(body, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// memTotalGiB reads MemTotal from /proc/meminfo (0 if unreadable).
func memTotalGiB() float64 {
	kb, _ := procField("/proc/meminfo", "MemTotal:")
	return float64(kb) / (1 << 20)
}
