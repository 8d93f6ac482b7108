package preload

import (
	"sync/atomic"

	"github.com/toad-project/toad/internal/counter"
)

// Stats are a Server's counters: its own, and the outcomes the libraries
// reported. Counters describes each one for the views that export them.
type Stats struct {
	ConnsAccepted uint64 // library connections accepted
	ConnsRefused  uint64 // connections answered BUSY because MaxConns were open
	ConnsOpen     uint64 // library connections open now (a gauge)

	Hellos     uint64 // HELLO frames answered
	Lookups    uint64 // LOOKUP frames answered, whatever the answer
	Found      uint64 // lookups answered with a client
	NotFound   uint64 // lookups answered NOT_FOUND
	NotServing uint64 // lookups answered NOT_SERVING because toad was stopping
	Untrusted  uint64 // of NotFound, lookups of peers outside the trusted ranges (the library's ranges were stale)
	Reports    uint64 // REPORT frames received

	BadFrames    uint64 // messages that were not frames (wrong size or magic); the connection was closed
	BadVersion   uint64 // frames of another protocol version; answered BAD_VERSION and closed
	BadRequests  uint64 // frames of an unknown type or with invalid addresses; answered BAD_REQUEST
	LookupErrors uint64 // lookups the Lookuper failed for another reason than not found or closed
	WriteErrors  uint64 // answers that could not be sent: the library had gone or stopped reading

	// The libraries' outcomes, reported by the processes that load it.
	GetnameOK       uint64 // calls answered with the real client (toa_stats getname_toa_ok)
	GetnameEmpty    uint64 // calls on a trusted peer's connection toad knew no client of (getname_toa_empty)
	GetnameMismatch uint64 // calls whose client the caller's family or buffer could not hold (getname_toa_mismatch)
	GetnameBypass   uint64 // accepted connections from peers outside the trusted ranges, passed through (getname_toa_bypass)
	Fallbacks       uint64 // calls answered with the kernel's address because toad could not answer in time

	// The shared table's, when there is one.
	SharedEntries uint64 // connections published in the shared table now
	SharedFull    uint64 // connections not published because their bucket was full (asked over the socket instead)
}

// counters are a Server's live Stats.
type counters struct {
	connsAccepted, connsRefused                             atomic.Uint64
	hellos, lookups, found, notFound, notServing, untrusted atomic.Uint64
	reports                                                 atomic.Uint64
	badFrames, badVersion, badRequests, lookupErrors        atomic.Uint64
	writeErrors                                             atomic.Uint64
	report                                                  [ReportFallback + 1]atomic.Uint64
}

// add counts a library's report.
func (c *counters) add(r *Report) {
	for i := range c.report {
		if r[i] != 0 {
			c.report[i].Add(uint64(r[i]))
		}
	}
}

// Stats returns a copy of the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	open := uint64(len(s.conns))
	s.mu.Unlock()
	c := &s.c
	out := Stats{
		ConnsAccepted:   c.connsAccepted.Load(),
		ConnsRefused:    c.connsRefused.Load(),
		ConnsOpen:       open,
		Hellos:          c.hellos.Load(),
		Lookups:         c.lookups.Load(),
		Found:           c.found.Load(),
		NotFound:        c.notFound.Load(),
		NotServing:      c.notServing.Load(),
		Untrusted:       c.untrusted.Load(),
		Reports:         c.reports.Load(),
		BadFrames:       c.badFrames.Load(),
		BadVersion:      c.badVersion.Load(),
		BadRequests:     c.badRequests.Load(),
		LookupErrors:    c.lookupErrors.Load(),
		WriteErrors:     c.writeErrors.Load(),
		GetnameOK:       c.report[ReportOK].Load(),
		GetnameEmpty:    c.report[ReportEmpty].Load(),
		GetnameMismatch: c.report[ReportMismatch].Load(),
		GetnameBypass:   c.report[ReportBypass].Load(),
		Fallbacks:       c.report[ReportFallback].Load(),
	}
	if sh := s.cfg.Shared; sh != nil {
		st := sh.Stats()
		out.SharedEntries, out.SharedFull = st.Entries, st.Full
	}
	return out
}

// Counter describes one of Stats' fields for the views that export it
// (metrics, GetStats, toactl), so that each is declared once.
type Counter = counter.Desc[Stats]

// Counters lists every field of Stats, in the order of the struct.
var Counters = []Counter{
	{Name: "preload_connections_accepted", Help: "Connections from preload libraries accepted.", Value: func(s *Stats) uint64 { return s.ConnsAccepted }},
	{Name: "preload_connections_refused", Help: "Connections from preload libraries refused (BUSY) because the most were open; those libraries fell back to the kernel's addresses.", Value: func(s *Stats) uint64 { return s.ConnsRefused }},
	{Name: "preload_connections_open", Help: "Connections from preload libraries open now.", Gauge: true, Value: func(s *Stats) uint64 { return s.ConnsOpen }},
	{Name: "preload_hellos", Help: "HELLO frames answered with the trusted ranges.", Value: func(s *Stats) uint64 { return s.Hellos }},
	{Name: "preload_lookups", Help: "Lookups from preload libraries answered, whatever the answer.", Value: func(s *Stats) uint64 { return s.Lookups }},
	{Name: "preload_lookups_found", Help: "Lookups from preload libraries answered with a client.", Value: func(s *Stats) uint64 { return s.Found }},
	{Name: "preload_lookups_not_found", Help: "Lookups from preload libraries answered NOT_FOUND.", Value: func(s *Stats) uint64 { return s.NotFound }},
	{Name: "preload_lookups_not_serving", Help: "Lookups from preload libraries answered NOT_SERVING because toad was stopping.", Value: func(s *Stats) uint64 { return s.NotServing }},
	{Name: "preload_lookups_untrusted", Help: "Lookups of peers outside the trusted ranges, answered NOT_FOUND at once (the library's copy of the ranges was stale).", Value: func(s *Stats) uint64 { return s.Untrusted }},
	{Name: "preload_reports", Help: "REPORT frames of library counters received.", Value: func(s *Stats) uint64 { return s.Reports }},
	{Name: "preload_bad_frames", Help: "Messages on the preload socket that were not frames of the protocol; their connections were closed.", Value: func(s *Stats) uint64 { return s.BadFrames }},
	{Name: "preload_bad_version", Help: "Frames of another protocol version, from a library that does not match this toad; answered BAD_VERSION.", Value: func(s *Stats) uint64 { return s.BadVersion }},
	{Name: "preload_bad_requests", Help: "Frames of an unknown type or with invalid addresses; answered BAD_REQUEST.", Value: func(s *Stats) uint64 { return s.BadRequests }},
	{Name: "preload_lookup_errors", Help: "Lookups that failed for another reason than not found or toad stopping.", Value: func(s *Stats) uint64 { return s.LookupErrors }},
	{Name: "preload_write_errors", Help: "Answers that could not be sent because the library had gone or stopped reading.", Value: func(s *Stats) uint64 { return s.WriteErrors }},
	{Name: "preload_getname_toa_ok", ToaStats: "getname_toa_ok", Help: "accept, getpeername and getsockopt calls the preload libraries answered with the real client.", Value: func(s *Stats) uint64 { return s.GetnameOK }},
	{Name: "preload_getname_toa_empty", ToaStats: "getname_toa_empty", Help: "Calls on connections from trusted peers that toad knew no client of; the kernel's address was returned.", Value: func(s *Stats) uint64 { return s.GetnameEmpty }},
	{Name: "preload_getname_toa_mismatch", ToaStats: "getname_toa_mismatch", Help: "Calls whose real client the caller could not hold (an IPv6 client for a buffer of an IPv4 address); the kernel's address was returned.", Value: func(s *Stats) uint64 { return s.GetnameMismatch }},
	{Name: "preload_getname_toa_bypass", ToaStats: "getname_toa_bypass", Help: "Accepted connections from peers outside the trusted ranges, passed through without asking toad.", Value: func(s *Stats) uint64 { return s.GetnameBypass }},
	{Name: "preload_fallbacks", Help: "Calls answered with the kernel's address because toad could not answer (absent, slow, busy or stopping).", Value: func(s *Stats) uint64 { return s.Fallbacks }},
	{Name: "preload_shared_entries", Help: "Connections published in the shared table the preload libraries read without asking.", Gauge: true, Value: func(s *Stats) uint64 { return s.SharedEntries }},
	{Name: "preload_shared_full", Help: "Connections left out of the shared table because their bucket was full; the libraries asked about them over the socket.", Value: func(s *Stats) uint64 { return s.SharedFull }},
}
