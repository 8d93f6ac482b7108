// Package metrics exposes toad's counters to Prometheus.
//
// Collector reads the connection table's and the capture's own counters
// when Prometheus scrapes, so nothing is counted twice and the hot paths
// pay nothing for metrics. The table's counters carry the names that users
// of the kernel modules' /proc/net/toa_stats know (syn_recv_sock_toa,
// getname_toa_ok...), prefixed with toad_. Latency is a histogram of lookup
// handling time, filled by a gRPC interceptor on the API server.
// JournalCollector reads the counters of the journal that keeps the table
// on disk (toad_journal_*). BuildInfo is the usual constant
// toad_build_info series.
//
// Every type here is safe for concurrent use. Their zero values are not
// usable: build them with NewCollector, NewJournalCollector, NewLatency and
// BuildInfo.
package metrics
