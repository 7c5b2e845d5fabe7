package ops

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/ops/progress"
)

// workerCollector exports the workers' progress, read when scraped.
type workerCollector struct {
	tracker                         *progress.Tracker
	last, since, stalled, processed *prometheus.Desc
}

// WorkerCollector is the collector of the workers' progress metrics; the
// caller registers it where /metrics gathers.
func (s *Server) WorkerCollector() prometheus.Collector {
	return NewWorkerCollector(s.cfg.Workers)
}

// NewWorkerCollector exports t's workers: when each last made progress,
// since when it has had work, how long it has gone without progress while
// it had work, and how much progress it reported.
func NewWorkerCollector(t *progress.Tracker) prometheus.Collector {
	label := []string{"worker"}
	return &workerCollector{
		tracker: t,
		last: prometheus.NewDesc("leaseguard_worker_last_progress_timestamp_seconds",
			"When the worker last made progress (finished a unit of work, or part of one); its start before the first.", label, nil),
		since: prometheus.NewDesc("leaseguard_worker_busy_since_timestamp_seconds",
			"Since when the worker has had work (in hand, or owed after a failure); 0 while it has none.", label, nil),
		stalled: prometheus.NewDesc("leaseguard_worker_stalled_seconds",
			"How long the worker has had work without progress; 0 while it has none. /readyz fails past LEASEGUARD_STALL_TIMEOUT.", label, nil),
		processed: prometheus.NewDesc("leaseguard_worker_progress_total",
			"Units of work (or parts of one) the worker finished.", label, nil),
	}
}

func (c *workerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.last
	ch <- c.since
	ch <- c.stalled
	ch <- c.processed
}

func (c *workerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.tracker.Status() {
		since := 0.0
		if st.Busy {
			since = seconds(st.BusySince.UnixNano())
		}
		ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, seconds(st.LastProgress.UnixNano()), st.Worker)
		ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue, since, st.Worker)
		ch <- prometheus.MustNewConstMetric(c.stalled, prometheus.GaugeValue, st.Stalled.Seconds(), st.Worker)
		ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(st.Units), st.Worker)
	}
}

func seconds(unixNano int64) float64 { return float64(unixNano) / 1e9 }
