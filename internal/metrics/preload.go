package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/toad-project/toad/api/preload"
)

// PreloadFunc returns the preload server's counters, and false when toad
// serves no preload socket (then no preload series are exported). It is
// called at every scrape and must be safe for concurrent use.
type PreloadFunc func() (preload.Stats, bool)

// PreloadCollector is a prometheus.Collector of the preload server's
// counters, one series per entry of preload.Counters: toad_<name>_total
// for counters, toad_<name> for gauges.
type PreloadCollector struct {
	stats PreloadFunc
	descs []*prometheus.Desc
}

// NewPreloadCollector returns a PreloadCollector reading stats.
func NewPreloadCollector(stats PreloadFunc) *PreloadCollector {
	c := &PreloadCollector{stats: stats}
	for _, k := range preload.Counters {
		c.descs = append(c.descs, prometheus.NewDesc(PreloadMetricName(k), k.Help, nil, nil))
	}
	return c
}

// PreloadMetricName is the metric name of one of preload.Counters.
func PreloadMetricName(k preload.Counter) string {
	if k.Gauge {
		return "toad_" + k.Name
	}
	return "toad_" + k.Name + "_total"
}

// Describe implements prometheus.Collector.
func (c *PreloadCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PreloadCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.stats()
	if !ok {
		return
	}
	for i, k := range preload.Counters {
		t := prometheus.CounterValue
		if k.Gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], t, float64(k.Value(&st)))
	}
}

// PreloadCounters are the preload server's counters as GetStats reports
// them, by preload.Counters' names.
func PreloadCounters(st *preload.Stats) map[string]uint64 {
	m := make(map[string]uint64, len(preload.Counters))
	for _, k := range preload.Counters {
		m[k.Name] = k.Value(st)
	}
	return m
}
