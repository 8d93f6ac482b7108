package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/toad-project/toad/journal"
)

// JournalFunc returns the counters of the journal that keeps the table on
// disk, and false while there is none. It is called at every scrape and
// must be safe for concurrent use.
type JournalFunc func() (journal.Stats, bool)

// journalSeries declares each toad_journal_* series once: its name, help,
// type and the counter it reads.
var journalSeries = []struct {
	name, help string
	typ        prometheus.ValueType
	value      func(*journal.Stats) float64
}{
	{"journal_records_total", "Change records of the table written to the journal.", prometheus.CounterValue,
		func(s *journal.Stats) float64 { return float64(s.Records) }},
	{"journal_groups_total", "Group writes to the journal, each holding the changes of up to 10ms.", prometheus.CounterValue,
		func(s *journal.Stats) float64 { return float64(s.Groups) }},
	{"journal_written_bytes_total", "Bytes written to the state directory, journal segments and snapshots.", prometheus.CounterValue,
		func(s *journal.Stats) float64 { return float64(s.Bytes) }},
	{"journal_compactions_total", "Compactions completed: the table written whole as a snapshot, the journal started anew.", prometheus.CounterValue,
		func(s *journal.Stats) float64 { return float64(s.Compactions) }},
	{"journal_overflows_total", "Times the journal's writer fell behind the table and changes were dropped from memory; each is followed by a compaction.", prometheus.CounterValue,
		func(s *journal.Stats) float64 { return float64(s.Overflows) }},
	{"journal_lost_total", "Changes dropped from memory because the writer fell behind; the compaction that follows writes what they changed.", prometheus.CounterValue,
		func(s *journal.Stats) float64 { return float64(s.Lost) }},
	{"journal_dropped_total", "Change records not written because the disk failed; the compaction that ends the failure writes what they changed.", prometheus.CounterValue,
		func(s *journal.Stats) float64 { return float64(s.Dropped) }},
	{"journal_write_errors_total", "Writes, syncs and compactions of the state directory that failed.", prometheus.CounterValue,
		func(s *journal.Stats) float64 { return float64(s.WriteErrors) }},
	{"journal_failing", "1 while the state directory cannot be written (serving from memory; a crash loses what changed since the failure), 0 otherwise.", prometheus.GaugeValue,
		func(s *journal.Stats) float64 { return b2f(s.Failing) }},
	{"journal_size_bytes", "Bytes the state directory's current snapshot and journal hold.", prometheus.GaugeValue,
		func(s *journal.Stats) float64 { return float64(s.Size) }},
}

// JournalCollector is a prometheus.Collector of the journal's counters,
// read at scrape time; it exports nothing while there is no journal.
type JournalCollector struct {
	stats JournalFunc
	descs []*prometheus.Desc
}

// NewJournalCollector returns a JournalCollector of what stats reports.
func NewJournalCollector(stats JournalFunc) *JournalCollector {
	c := &JournalCollector{stats: stats}
	for _, s := range journalSeries {
		c.descs = append(c.descs, prometheus.NewDesc("toad_"+s.name, s.help, nil, nil))
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *JournalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *JournalCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.stats()
	if !ok {
		return
	}
	for i, s := range journalSeries {
		ch <- prometheus.MustNewConstMetric(c.descs[i], s.typ, s.value(&st))
	}
}
