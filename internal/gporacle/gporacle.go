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
	for _, o := range tcp.Options {
		if o.OptionType <= layers.TCPOptionKindNop {
			continue
		}
		if c, ok := set.Option(uint8(o.OptionType), o.OptionData, tcp.SYN); ok {
			if r.TOACount == 0 {
				r.TOA = c
			}
			r.TOACount++
		}
	}
}
