package correlate

// Stats are the table's counters, as Table.Stats copies them.
type Stats struct {
	Capacity uint64 // the configured capacity

	Entries     uint64 // entries held, open or closing
	EntriesIPv4 uint64 // entries whose client is IPv4
	EntriesIPv6 uint64 // entries whose client is IPv6
	Closing     uint64 // entries closing, answered until their linger ends

	// ConnsWithTOA counts connections whose TOA created an entry (the
	// analogue of syn_recv_sock_toa).
	ConnsWithTOA uint64
	// ConnsWithoutTOA counts connections from trusted peers that ended
	// (FIN or RST) while the table held no entry for them: the analogue of
	// syn_recv_sock_no_toa, counted at the close because a TOA may come
	// after the SYN. It also counts connections whose entry had been
	// evicted or had expired. Repeated FIN and RST segments of a connection
	// count once (each shard remembers the last 256 keys it counted).
	ConnsWithoutTOA uint64
	// SYNsWithoutTOA counts SYN segments from trusted peers that carried no
	// TOA, retransmissions included. Proxies that send the TOA with the
	// handshake's ACK (DPVS 1.9.6 and later) make every connection count
	// here; it is the early sign of a proxy sending no TOA at all.
	SYNsWithoutTOA uint64

	LookupsOK uint64 // lookups answered
	// LookupsNotFound counts lookups that answered ErrNotFound at once for
	// a key the table does not hold: without a wait, once the source had
	// caught up with the call (Config.Barrier), or on a closed table.
	LookupsNotFound uint64
	// LookupsTimedOut counts lookups whose wait ended without an answer:
	// without Config.Barrier, the key never came; with it, the source did
	// not catch up with the call in time (or had none attached, or had
	// stopped).
	LookupsTimedOut uint64
	LookupsCanceled uint64 // lookups whose context ended first
	// LookupsStale counts those of LookupsTimedOut that found a closing
	// entry (Config.Barrier): answered not found, since the key may
	// already be a new connection's.
	LookupsStale uint64

	// Conflicts counts TOAs that differed from their connection's first
	// one and were ignored.
	Conflicts uint64
	// MultipleTOA counts segments from trusted peers carrying more than one
	// TOA (the first is believed; another may be forged).
	MultipleTOA uint64
	// Untrusted counts segments carrying a TOA from peers outside the
	// trusted ranges; none was stored.
	Untrusted uint64
	// Reused counts entries replaced or removed because a SYN started a new
	// connection on their key.
	Reused uint64

	Evictions     uint64 // entries evicted because the table or a shard was full
	EvictionsOpen uint64 // those of Evictions that were still open
	Expired       uint64 // closing entries removed after their linger
	IdleExpired   uint64 // open entries removed by IdleTimeout

	// AllTrusted is true when no trusted ranges were configured, so every
	// peer's TOA is believed.
	AllTrusted bool
}

// Stats returns a copy of the table's counters.
func (t *Table) Stats() Stats {
	st := Stats{
		Capacity:   uint64(t.cap),
		Untrusted:  t.untrusted.Load(),
		AllTrusted: t.trust.All(),
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		st.Entries += uint64(s.n)
		st.EntriesIPv6 += uint64(s.nClient6)
		st.Closing += uint64(s.nClosing)
		c := s.c
		s.mu.RUnlock()
		st.ConnsWithTOA += c.connsWithTOA
		st.ConnsWithoutTOA += c.connsWithoutTOA
		st.SYNsWithoutTOA += c.synsWithoutTOA
		st.Conflicts += c.conflicts
		st.MultipleTOA += c.multipleTOA
		st.Reused += c.reused
		st.Evictions += c.evictions
		st.EvictionsOpen += c.evictionsOpen
		st.Expired += c.expired
		st.IdleExpired += c.idleExpired
		st.LookupsOK += s.look.ok.Load()
		st.LookupsNotFound += s.look.notFound.Load()
		st.LookupsTimedOut += s.look.timedOut.Load()
		st.LookupsCanceled += s.look.canceled.Load()
		st.LookupsStale += s.look.stale.Load()
	}
	st.EntriesIPv4 = st.Entries - st.EntriesIPv6
	return st
}
