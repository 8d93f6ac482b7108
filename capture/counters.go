package capture

import (
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/counter"
)

// Counters describes the counters of Stats that every source has, a live
// capture or replayed files, for the views that show them: metrics,
// GetStats's counters, the daemon's warnings.
var Counters = []counter.Desc[Stats]{
	{Name: "capture_packets", Help: "Packets read from the capture rings or files.",
		Value: func(s *Stats) uint64 { return s.Packets }},
	{Name: "capture_records", Help: "TCP segments decoded and passed to the table.",
		Value: func(s *Stats) uint64 { return s.Records }},
	{Name: "capture_rejected", Metric: "capture_decode_failures_total", Help: "Packets the decoder rejected, by reason.",
		Value: (*Stats).Rejected, Label: "reason", Series: failureSeries()},
}

// LiveCounters describes the counters of Stats only a live capture has.
var LiveCounters = []counter.Desc[Stats]{
	{Name: "capture_kernel_packets", Help: "Packets the kernel filter passed to the capture sockets, dropped ones included.",
		Value: func(s *Stats) uint64 { return s.KernelPackets }},
	{Name: "capture_drops", Metric: "capture_kernel_drops_total", Help: "Packets the kernel dropped because a capture ring was full.",
		Value: func(s *Stats) uint64 { return s.Drops },
		Warn:  "the kernel dropped packets because a capture ring was full: raise --ring-size or --readers", WarnAttr: "dropped"},
}

// failureSeries is a series for each reason the decoder rejects a packet.
func failureSeries() []counter.Series[Stats] {
	var ss []counter.Series[Stats]
	for r := range decode.Reason(decode.NumReasons) {
		if r == decode.OK {
			continue
		}
		ss = append(ss, counter.Series[Stats]{Value: r.String(), Read: func(s *Stats) uint64 { return s.Failures[r] }})
	}
	return ss
}
