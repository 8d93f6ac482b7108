package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/toad-project/toad/journal"
)

// JournalFunc returns the counters of the journal that keeps the table on
// disk, and false while there is none. It is called at every scrape and
// must be safe for concurrent use.
type JournalFunc func() (journal.Stats, bool)

// JournalCollector is a prometheus.Collector of the journal's counters,
// read at scrape time; it exports nothing while there is no journal.
type JournalCollector struct {
	stats JournalFunc
	descs descs[journal.Stats]
}

// NewJournalCollector returns a JournalCollector of what stats reports.
func NewJournalCollector(stats JournalFunc) *JournalCollector {
	return &JournalCollector{stats: stats, descs: newDescs(journal.Counters)}
}

// Describe implements prometheus.Collector.
func (c *JournalCollector) Describe(ch chan<- *prometheus.Desc) {
	c.descs.describe(ch)
}

// Collect implements prometheus.Collector.
func (c *JournalCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.stats()
	if !ok {
		return
	}
	c.descs.collect(ch, &st)
}
