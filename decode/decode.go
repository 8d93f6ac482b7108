package decode

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/toad-project/toad/toa"
)

// Decoder decodes frames, reading the TOA dialects of its Set.
type Decoder struct {
	dialects *toa.Set
}

// New returns a Decoder that recognises the dialects enabled in set. The
// Decoder reads set on every frame, so set must not change afterwards.
func New(set *toa.Set) *Decoder {
	if set == nil {
		set = toa.DefaultSet()
	}
	return &Decoder{dialects: set}
}

// Dialects returns the Decoder's dialect set.
func (d *Decoder) Dialects() *toa.Set { return d.dialects }

const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86DD
	etherVLAN  = 0x8100
	etherQinQ  = 0x88A8
	etherQinQ1 = 0x9100

	protoTCP      = 6
	ip6HopByHop   = 0
	ip6Routing    = 43
	ip6Fragment   = 44
	ip6AuthHeader = 51
	ip6NoNext     = 59
	ip6DestOpts   = 60
)

// Decode decodes one frame of link type link, captured at ts, into r. It
// returns OK with r filled in, or the Reason the frame yields no record, in
// which case r's contents are unspecified.
func (d *Decoder) Decode(link LinkType, frame []byte, ts time.Time, r *Record) Reason {
	var ether uint16
	switch link {
	case LinkEthernet:
		if len(frame) < 14 {
			return Truncated
		}
		ether = binary.BigEndian.Uint16(frame[12:])
		frame = frame[14:]
		for ether == etherVLAN || ether == etherQinQ || ether == etherQinQ1 {
			if len(frame) < 4 {
				return Truncated
			}
			ether = binary.BigEndian.Uint16(frame[2:])
			frame = frame[4:]
		}
	case LinkLinuxSLL:
		if len(frame) < 16 {
			return Truncated
		}
		ether = binary.BigEndian.Uint16(frame[14:])
		frame = frame[16:]
	case LinkLinuxSLL2:
		if len(frame) < 20 {
			return Truncated
		}
		ether = binary.BigEndian.Uint16(frame[0:])
		frame = frame[20:]
	case LinkRaw, LinkIPv4, LinkIPv6:
		if len(frame) < 1 {
			return Truncated
		}
		switch frame[0] >> 4 {
		case 4:
			ether = etherIPv4
		case 6:
			ether = etherIPv6
		default:
			return BadIPHeader
		}
	default:
		return UnsupportedLink
	}
	switch ether {
	case etherIPv4:
		return d.ipv4(frame, ts, r)
	case etherIPv6:
		return d.ipv6(frame, ts, r)
	}
	return NotIP
}

func (d *Decoder) ipv4(p []byte, ts time.Time, r *Record) Reason {
	if len(p) < 20 {
		return Truncated
	}
	if p[0]>>4 != 4 {
		return BadIPHeader
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 {
		return BadIPHeader
	}
	if total == 0 {
		// Segmentation offload hands the capture oversized packets whose
		// total length is left 0; the captured bytes are all there is.
		total = len(p)
	}
	if total < ihl {
		return BadIPHeader
	}
	if len(p) < ihl {
		return Truncated
	}
	if p[9] != protoTCP {
		return NotTCP
	}
	frag := binary.BigEndian.Uint16(p[6:])
	if frag&0x1fff != 0 {
		return Fragment
	}
	seg := p[ihl:]
	if total < len(p) {
		seg = p[ihl:total] // drop link-layer padding
	}
	src := netip.AddrFrom4([4]byte(p[12:16]))
	dst := netip.AddrFrom4([4]byte(p[16:20]))
	return d.tcp(seg, total-ihl, frag&0x2000 != 0, src, dst, ts, r)
}

func (d *Decoder) ipv6(p []byte, ts time.Time, r *Record) Reason {
	if len(p) < 40 {
		return Truncated
	}
	if p[0]>>4 != 6 {
		return BadIPHeader
	}
	payload := int(binary.BigEndian.Uint16(p[4:]))
	if payload == 0 {
		payload = len(p) - 40 // jumbogram or offloaded: trust the capture
	}
	next := p[6]
	src := netip.AddrFrom16([16]byte(p[8:24]))
	dst := netip.AddrFrom16([16]byte(p[24:40]))
	seg := p[40:]
	if payload < len(seg) {
		seg = seg[:payload]
	}
	firstFragment := false
	for next != protoTCP {
		var n int
		switch next {
		case ip6HopByHop, ip6Routing, ip6DestOpts:
			if len(seg) < 8 {
				return Truncated
			}
			n = (int(seg[1]) + 1) * 8
		case ip6AuthHeader:
			if len(seg) < 8 {
				return Truncated
			}
			n = (int(seg[1]) + 2) * 4
		case ip6Fragment:
			if len(seg) < 8 {
				return Truncated
			}
			if binary.BigEndian.Uint16(seg[2:])&0xfff8 != 0 {
				return Fragment
			}
			firstFragment = seg[3]&1 != 0
			n = 8
		case ip6NoNext:
			return NotTCP
		default:
			return NotTCP
		}
		if len(seg) < n {
			return Truncated
		}
		next = seg[0]
		seg = seg[n:]
		payload -= n
	}
	if payload < 0 {
		return BadIPHeader
	}
	return d.tcp(seg, payload, firstFragment, src, dst, ts, r)
}

// tcp decodes the TCP header in seg; segLen is the segment's length as the IP
// header announces it, which may exceed len(seg) when the capture was cut.
func (d *Decoder) tcp(seg []byte, segLen int, fragment bool, src, dst netip.Addr, ts time.Time, r *Record) Reason {
	if len(seg) < 20 {
		if fragment {
			return Fragment
		}
		return Truncated
	}
	doff := int(seg[12]>>4) * 4
	if doff < 20 || doff > segLen {
		return BadTCPHeader
	}
	if len(seg) < doff {
		if fragment {
			return Fragment
		}
		return Truncated
	}
	flags := Flags(seg[13])
	found, err := d.dialects.Parse(seg[20:doff], flags&SYN != 0)
	if err != nil {
		return BadOptions
	}
	*r = Record{
		Time:       ts,
		Peer:       netip.AddrPortFrom(src, binary.BigEndian.Uint16(seg[0:])),
		Local:      netip.AddrPortFrom(dst, binary.BigEndian.Uint16(seg[2:])),
		Flags:      flags,
		Seq:        binary.BigEndian.Uint32(seg[4:]),
		Ack:        binary.BigEndian.Uint32(seg[8:]),
		PayloadLen: uint32(segLen - doff),
		TOA:        found.First,
		TOACount:   found.Count,
	}
	return OK
}
