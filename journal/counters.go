package journal

import "github.com/toad-project/toad/internal/counter"

// Counters describes every field of Stats for the views that show them:
// metrics (toad_journal_*), GetStats (whose JournalStats has a field of
// each Name; failing is its one bool) and toactl, in this order.
var Counters = []counter.Desc[Stats]{
	{Name: "records", Metric: "journal_records_total", Help: "Change records of the table written to the journal.",
		Value: func(s *Stats) uint64 { return s.Records }},
	{Name: "groups", Metric: "journal_groups_total", Help: "Group writes to the journal, each holding the changes of up to 10ms.",
		Value: func(s *Stats) uint64 { return s.Groups }},
	{Name: "bytes", Metric: "journal_written_bytes_total", Help: "Bytes written to the state directory, journal segments and snapshots.",
		Value: func(s *Stats) uint64 { return s.Bytes }},
	{Name: "compactions", Metric: "journal_compactions_total", Help: "Compactions completed: the table written whole as a snapshot, the journal started anew.",
		Value: func(s *Stats) uint64 { return s.Compactions }},
	{Name: "overflows", Metric: "journal_overflows_total", Help: "Times the journal's writer fell behind the table and changes were dropped from memory; each is followed by a compaction.",
		Value: func(s *Stats) uint64 { return s.Overflows }},
	{Name: "lost", Metric: "journal_lost_total", Help: "Changes dropped from memory because the writer fell behind; the compaction that follows writes what they changed.",
		Value: func(s *Stats) uint64 { return s.Lost }},
	{Name: "dropped", Metric: "journal_dropped_total", Help: "Change records not written because the disk failed; the compaction that ends the failure writes what they changed.",
		Value: func(s *Stats) uint64 { return s.Dropped }},
	{Name: "write_errors", Metric: "journal_write_errors_total", Help: "Writes, syncs and compactions of the state directory that failed.",
		Value: func(s *Stats) uint64 { return s.WriteErrors }},
	{Name: "failing", Gauge: true, Metric: "journal_failing", Help: "1 while the state directory cannot be written (serving from memory; a crash loses what changed since the failure), 0 otherwise.",
		Value: func(s *Stats) uint64 {
			if s.Failing {
				return 1
			}
			return 0
		}},
	{Name: "size_bytes", Gauge: true, Metric: "journal_size_bytes", Help: "Bytes the state directory's current snapshot and journal hold.",
		Value: func(s *Stats) uint64 { return uint64(max(s.Size, 0)) }},
}
