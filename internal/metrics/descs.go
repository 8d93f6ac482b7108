package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/toad-project/toad/internal/counter"
)

// descs are the metrics of a list of counter descriptions.
type descs[S any] struct {
	list []counter.Desc[S]
	pd   []*prometheus.Desc // nil for a counter exported by no series of its own
}

func newDescs[S any](list []counter.Desc[S]) descs[S] {
	d := descs[S]{list: list, pd: make([]*prometheus.Desc, len(list))}
	for i, c := range list {
		name := c.MetricName()
		if name == "" {
			continue
		}
		var labels []string
		if c.Label != "" {
			labels = []string{c.Label}
		}
		d.pd[i] = prometheus.NewDesc("toad_"+name, c.Help, labels, nil)
	}
	return d
}

func (d descs[S]) describe(ch chan<- *prometheus.Desc) {
	for _, pd := range d.pd {
		if pd != nil {
			ch <- pd
		}
	}
}

// collect sends the metrics of st.
func (d descs[S]) collect(ch chan<- prometheus.Metric, st *S) {
	for i, c := range d.list {
		pd := d.pd[i]
		if pd == nil {
			continue
		}
		typ := prometheus.CounterValue
		if c.Gauge {
			typ = prometheus.GaugeValue
		}
		if c.Series == nil {
			ch <- prometheus.MustNewConstMetric(pd, typ, float64(c.Value(st)))
		}
		for _, s := range c.Series {
			ch <- prometheus.MustNewConstMetric(pd, typ, float64(s.Read(st)), s.Value)
		}
	}
}
