package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
)

// Source says where the capture counters come from.
type Source uint8

const (
	// NoSource: nothing feeds the table yet; no capture series are
	// exported.
	NoSource Source = iota
	// Replay: capture files were replayed; the kernel series are not
	// exported.
	Replay
	// Live: an AF_PACKET capture; every capture series is exported.
	Live
)

// CaptureFunc returns the capture's counters and where they come from.
// It is called at every scrape and must be safe for concurrent use.
type CaptureFunc func() (capture.Stats, Source)

// Collector is a prometheus.Collector of the table's and the capture's
// counters, read at scrape time. Which counters, and their names and help,
// come from correlate.Counters, capture.Counters and capture.LiveCounters.
type Collector struct {
	table   *correlate.Table
	capture CaptureFunc

	tableDescs               descs[correlate.Stats]
	captureDescs, liveDescs  descs[capture.Stats]
	allTrusted, filter, rdrs *prometheus.Desc
}

// NewCollector returns a Collector of t's counters and, when capture is
// not nil, of the capture's.
func NewCollector(t *correlate.Table, captureStats CaptureFunc) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("toad_"+name, help, labels, nil)
	}
	return &Collector{
		table:        t,
		capture:      captureStats,
		tableDescs:   newDescs(correlate.Counters),
		captureDescs: newDescs(capture.Counters),
		liveDescs:    newDescs(capture.LiveCounters),
		allTrusted:   d("all_peers_trusted", "1 when no trusted proxy ranges are configured, so a TOA from any peer is believed."),
		filter:       d("capture_filter_attached", "1 for the kernel filter attached to the capture sockets (the weakest, if they differ), 0 for the others.", "filter"),
		rdrs:         d("capture_readers", "Capture sockets sharing the traffic."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.tableDescs.describe(ch)
	c.captureDescs.describe(ch)
	c.liveDescs.describe(ch)
	ch <- c.allTrusted
	ch <- c.filter
	ch <- c.rdrs
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.table.Stats()
	c.tableDescs.collect(ch, &st)
	gauge(c.allTrusted, b2f(st.AllTrusted))

	if c.capture == nil {
		return
	}
	cs, src := c.capture()
	if src == NoSource {
		return
	}
	c.captureDescs.collect(ch, &cs)
	if src != Live {
		return
	}
	c.liveDescs.collect(ch, &cs)
	for f := capture.FilterTOA; f <= capture.FilterNone; f++ {
		gauge(c.filter, b2f(f == cs.Filter), f.String())
	}
	gauge(c.rdrs, float64(cs.Readers))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
