package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
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
// counters, read at scrape time.
type Collector struct {
	table   *correlate.Table
	capture CaptureFunc

	connsTOA, connsNoTOA, synsNoTOA                        *prometheus.Desc
	lookupsOK, lookupsEmpty, lookupsTimeout, stale, cancel *prometheus.Desc
	conflicts, multiple, untrusted, reused                 *prometheus.Desc
	evictions, expirations                                 *prometheus.Desc
	entries, closing, capacity, allTrusted                 *prometheus.Desc

	packets, records, failures         *prometheus.Desc
	kernelPackets, drops, filter, rdrs *prometheus.Desc
}

// NewCollector returns a Collector of t's counters and, when capture is
// not nil, of the capture's.
func NewCollector(t *correlate.Table, capture CaptureFunc) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("toad_"+name, help, labels, nil)
	}
	return &Collector{
		table:   t,
		capture: capture,

		connsTOA:       d("syn_recv_sock_toa_total", "Connections whose TOA, from a trusted peer, created a table entry (toa_stats syn_recv_sock_toa)."),
		connsNoTOA:     d("syn_recv_sock_no_toa_total", "Connections from trusted peers that ended (FIN or RST) while the table held no entry for them: no TOA was seen, or the entry was evicted or expired (toa_stats syn_recv_sock_no_toa)."),
		synsNoTOA:      d("syns_without_toa_total", "SYN segments from trusted peers without a TOA, retransmissions included; every connection counts here with proxies that send the TOA with the handshake's ACK."),
		lookupsOK:      d("getname_toa_ok_total", "Lookups answered with a real client (toa_stats getname_toa_ok)."),
		lookupsEmpty:   d("getname_toa_empty_total", "Lookups of a connection the table does not hold, answered at once with NOT_FOUND (toa_stats getname_toa_empty)."),
		lookupsTimeout: d("lookup_timeouts_total", "Lookups whose wait ended before the capture could confirm it had delivered every segment received before the call (NOT_FOUND)."),
		stale:          d("lookup_stale_total", "Lookups among the timeouts that found a closing connection the capture could not confirm in time, since a proxy may have reused its 4-tuple."),
		cancel:         d("lookup_canceled_total", "Lookups whose caller gave up first."),
		conflicts:      d("conflicts_total", "TOAs that differed from their connection's first one and were ignored."),
		multiple:       d("multiple_toa_total", "Segments from trusted peers carrying more than one TOA; the first was believed."),
		untrusted:      d("untrusted_toa_total", "Segments carrying a TOA from a peer outside the trusted proxy ranges; none was believed."),
		reused:         d("port_reuses_total", "Entries replaced or removed because a new SYN reused their 4-tuple."),
		evictions:      d("evictions_total", "Entries evicted because the table was full, by the state they were in.", "state"),
		expirations:    d("expirations_total", "Entries removed by age: closing ones after the linger, open ones after the idle timeout.", "reason"),
		entries:        d("entries", "Entries held, open or closing, by the family of their real client (toa_stats ip6_address_alloc - ip6_address_free for ipv6).", "family"),
		closing:        d("entries_closing", "Entries of closed connections, still answered until their linger ends."),
		capacity:       d("table_capacity", "The most entries the table holds before it evicts."),
		allTrusted:     d("all_peers_trusted", "1 when no trusted proxy ranges are configured, so a TOA from any peer is believed."),

		packets:       d("capture_packets_total", "Packets read from the capture rings or files."),
		records:       d("capture_records_total", "TCP segments decoded and passed to the table."),
		failures:      d("capture_decode_failures_total", "Packets the decoder rejected, by reason.", "reason"),
		kernelPackets: d("capture_kernel_packets_total", "Packets the kernel filter passed to the capture sockets, dropped ones included."),
		drops:         d("capture_kernel_drops_total", "Packets the kernel dropped because a capture ring was full."),
		filter:        d("capture_filter_attached", "1 for the kernel filter attached to the capture sockets (the weakest, if they differ), 0 for the others.", "filter"),
		rdrs:          d("capture_readers", "Capture sockets sharing the traffic."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.connsTOA, c.connsNoTOA, c.synsNoTOA,
		c.lookupsOK, c.lookupsEmpty, c.lookupsTimeout, c.stale, c.cancel,
		c.conflicts, c.multiple, c.untrusted, c.reused,
		c.evictions, c.expirations,
		c.entries, c.closing, c.capacity, c.allTrusted,
		c.packets, c.records, c.failures,
		c.kernelPackets, c.drops, c.filter, c.rdrs,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.table.Stats()
	counter(c.connsTOA, st.ConnsWithTOA)
	counter(c.connsNoTOA, st.ConnsWithoutTOA)
	counter(c.synsNoTOA, st.SYNsWithoutTOA)
	counter(c.lookupsOK, st.LookupsOK)
	counter(c.lookupsEmpty, st.LookupsNotFound)
	counter(c.lookupsTimeout, st.LookupsTimedOut)
	counter(c.stale, st.LookupsStale)
	counter(c.cancel, st.LookupsCanceled)
	counter(c.conflicts, st.Conflicts)
	counter(c.multiple, st.MultipleTOA)
	counter(c.untrusted, st.Untrusted)
	counter(c.reused, st.Reused)
	counter(c.evictions, st.EvictionsOpen, "open")
	counter(c.evictions, st.Evictions-st.EvictionsOpen, "closing")
	counter(c.expirations, st.Expired, "linger")
	counter(c.expirations, st.IdleExpired, "idle")
	gauge(c.entries, float64(st.EntriesIPv4), "ipv4")
	gauge(c.entries, float64(st.EntriesIPv6), "ipv6")
	gauge(c.closing, float64(st.Closing))
	gauge(c.capacity, float64(st.Capacity))
	gauge(c.allTrusted, b2f(st.AllTrusted))

	if c.capture == nil {
		return
	}
	cs, src := c.capture()
	if src == NoSource {
		return
	}
	counter(c.packets, cs.Packets)
	counter(c.records, cs.Records)
	for r, n := range cs.Failures {
		if decode.Reason(r) != decode.OK {
			counter(c.failures, n, decode.Reason(r).String())
		}
	}
	if src != Live {
		return
	}
	counter(c.kernelPackets, cs.KernelPackets)
	counter(c.drops, cs.Drops)
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
