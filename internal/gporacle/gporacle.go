// Package gporacle turns what gopacket's layers decoded into a decode.Record,
// so that gopacket can stand as an independent oracle beside toad's decoder
// (in differential tests) and as the baseline it is measured against (in the
// benchmarks). Its function is pure and safe for concurrent use.
package gporacle

import (
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// Fill sets r from the addresses and TCP layer gopacket decoded, walking the
// TCP options gopacket split for TOAs of set. PayloadLen is the payload
// gopacket kept, which a cut capture may make shorter than the IP header says.
func Fill(r *decode.Record, set *toa.Set, ts time.Time, src, dst []byte, tcp *layers.TCP) {
	s, _ := netip.AddrFromSlice(src)
	d, _ := netip.AddrFromSlice(dst)
	*r = decode.Record{
		Time:       ts,
		Peer:       netip.AddrPortFrom(s, uint16(tcp.SrcPort)),
		Local:      netip.AddrPortFrom(d, uint16(tcp.DstPort)),
		Seq:        tcp.Seq,
		Ack:        tcp.Ack,
		PayloadLen: uint32(len(tcp.Payload)),
	}
	for _, f := range [...]struct {
		on bool
		f  decode.Flags
	}{{tcp.FIN, decode.FIN}, {tcp.SYN, decode.SYN}, {tcp.RST, decode.RST}, {tcp.PSH, decode.PSH}, {tcp.ACK, decode.ACK}, {tcp.URG, decode.URG}, {tcp.ECE, decode.ECE}, {tcp.CWR, decode.CWR}} {
		if f.on {
			r.Flags |= f.f
		}
	}
	// In a SYN with data, a Fast Open look-alike is a cookie unless the
	// list holds another Fast Open option: then the first that can be a
	// TOA is one, as toa.Set.Parse reads it.
	seg := toa.SegmentOf(tcp.SYN, tcp.ACK, len(tcp.Payload))
	fastOpens := 0
	for _, o := range tcp.Options {
		if o.OptionType == tcpOptionFastOpen || fastOpenShape(o) {
			fastOpens++
		}
	}
	aside := fastOpens < 2 // no look-alike to take for a TOA
	for _, o := range tcp.Options {
		if o.OptionType <= layers.TCPOptionKindNop {
			continue
		}
		c, ok := set.Option(uint8(o.OptionType), o.OptionData, seg)
		if !ok && !aside && fastOpenShape(o) {
			c, ok = set.Option(uint8(o.OptionType), o.OptionData, seg&^toa.Data)
			aside = ok
		}
		if ok {
			if r.TOACount == 0 {
				r.TOA = c
			}
			r.TOACount++
		}
	}
}

// tcpOptionFastOpen is the kind of Fast Open's standard form (RFC 7413).
const tcpOptionFastOpen = 34

// fastOpenShape reports whether o has the shape of Fast Open's
// experimental form (RFC 7413): kind 253 or 254, identifier 0xF989, no
// cookie or one of 4 to 16 bytes.
func fastOpenShape(o layers.TCPOption) bool {
	n := len(o.OptionData) - 2
	return (o.OptionType == 253 || o.OptionType == 254) && n >= 0 && o.OptionData[0] == 0xF9 && o.OptionData[1] == 0x89 &&
		(n == 0 || n >= 4 && n <= 16)
}
