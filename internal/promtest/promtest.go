// Package promtest reads histograms back from a Prometheus registry, for
// the tests and the bench that check what a part observed.
package promtest

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Histograms returns the series of the histogram name, keyed by their
// value of label, for a histogram whose series differ in label alone; a
// series without label is left out.
func Histograms(g prometheus.Gatherer, name, label string) (map[string]*dto.Histogram, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] = m.GetHistogram()
				}
			}
		}
	}
	return out, nil
}
