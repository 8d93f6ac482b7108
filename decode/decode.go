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

// New returns a Decoder that recognises the dialects enabled in set, or the
// default dialects when set is nil. The Decoder reads set on every frame, so
// set must not change afterwards.
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
	ip6DestOpts   = 60
)

// Decode decodes one frame of link type link, captured at ts, into r. It
// returns OK with r filled in, or the Reason the frame yields no record, in
// which case r is reset to the zero Record: a rejected frame never leaves a
// previous frame's addresses or TOA behind.
func (d *Decoder) Decode(link LinkType, frame []byte, ts time.Time, r *Record) Reason {
	if reason := d.frame(link, frame, r); reason != OK {
		*r = Record{}
		return reason
	}
	r.Time = ts
	return OK
}

// frame strips the link layer.
func (d *Decoder) frame(link LinkType, frame []byte, r *Record) Reason {
	var ether uint16
	switch link {
	case LinkEthernet:
		if len(frame) < 14 {
			return Truncated
		}
		ether, frame = binary.BigEndian.Uint16(frame[12:]), frame[14:]
	case LinkLinuxSLL:
		if len(frame) < 16 {
			return Truncated
		}
		ether, frame = binary.BigEndian.Uint16(frame[14:]), frame[16:]
	case LinkLinuxSLL2:
		if len(frame) < 20 {
			return Truncated
		}
		ether, frame = binary.BigEndian.Uint16(frame[0:]), frame[20:]
	case LinkRaw:
		if len(frame) < 1 {
			return Truncated
		}
		switch frame[0] >> 4 {
		case 4:
			return d.ipv4(frame, r)
		case 6:
			return d.ipv6(frame, r)
		}
		return BadIPHeader
	case LinkIPv4:
		return d.ipv4(frame, r)
	case LinkIPv6:
		return d.ipv6(frame, r)
	default:
		return UnsupportedLink
	}
	// VLAN tags: on Ethernet, and in SLL where libpcap reinserts the tag
	// the kernel stripped, in front of the protocol field.
	for ether == etherVLAN || ether == etherQinQ || ether == etherQinQ1 {
		if len(frame) < 4 {
			return Truncated
		}
		ether, frame = binary.BigEndian.Uint16(frame[2:]), frame[4:]
	}
	switch ether {
	case etherIPv4:
		return d.ipv4(frame, r)
	case etherIPv6:
		return d.ipv6(frame, r)
	}
	return NotIP
}

func (d *Decoder) ipv4(p []byte, r *Record) Reason {
	if len(p) < 20 {
		return Truncated
	}
	if p[0]>>4 != 4 {
		return BadIPHeader
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 {
		return BadIPHeader
	}
	total := int(binary.BigEndian.Uint16(p[2:]))
	if total != 0 && total < ihl {
		return BadIPHeader
	}
	if len(p) < ihl {
		return Truncated
	}
	if total == 0 {
		// Segmentation offload hands the capture oversized packets whose
		// total length is left 0; the captured bytes are all there is.
		total = len(p)
	}
	if p[9] != protoTCP {
		return NotTCP
	}
	frag := binary.BigEndian.Uint16(p[6:])
	if frag&0x1fff != 0 {
		return Fragment
	}
	seg := p[ihl:min(total, len(p))] // without link-layer padding
	src := netip.AddrFrom4([4]byte(p[12:16]))
	dst := netip.AddrFrom4([4]byte(p[16:20]))
	return d.tcp(seg, total-ihl, frag&0x2000 != 0, src, dst, r)
}

func (d *Decoder) ipv6(p []byte, r *Record) Reason {
	if len(p) < 40 {
		return Truncated
	}
	if p[0]>>4 != 6 {
		return BadIPHeader
	}
	seg := p[40:]
	// left is what the header says remains of the packet; seg is the part
	// of it that was captured, so len(seg) <= left throughout.
	left := int(binary.BigEndian.Uint16(p[4:]))
	if left == 0 {
		left = len(seg) // jumbogram or offloaded: trust the capture
	}
	if len(seg) > left {
		seg = seg[:left]
	}
	next := p[6]
	first := false // a first fragment: the packet may end inside a header
	for next != protoTCP {
		switch next {
		case ip6HopByHop, ip6Routing, ip6DestOpts, ip6AuthHeader, ip6Fragment:
		default:
			return NotTCP
		}
		if left < 8 {
			return cut(first, BadIPHeader)
		}
		if len(seg) < 8 {
			return Truncated
		}
		var n int
		switch next {
		case ip6Fragment:
			if binary.BigEndian.Uint16(seg[2:])&0xfff8 != 0 {
				return Fragment
			}
			first = seg[3]&1 != 0
			n = 8
		case ip6AuthHeader:
			n = (int(seg[1]) + 2) * 4
			if n < 12 { // RFC 4302: fixed fields and sequence number
				return BadIPHeader
			}
		default:
			n = (int(seg[1]) + 1) * 8
		}
		if n > left {
			return cut(first, BadIPHeader)
		}
		if n > len(seg) {
			return Truncated
		}
		next, seg, left = seg[0], seg[n:], left-n
	}
	src := netip.AddrFrom16([16]byte(p[8:24]))
	dst := netip.AddrFrom16([16]byte(p[24:40]))
	return d.tcp(seg, left, first, src, dst, r)
}

// cut is the reason for a header that runs past the end of the IP packet:
// Fragment in a first fragment, where the rest is in the next one, and bad
// otherwise.
func cut(first bool, bad Reason) Reason {
	if first {
		return Fragment
	}
	return bad
}

// tcp decodes the TCP segment in seg, the captured part of an IP payload
// whose length the IP header gives as segLen (len(seg) <= segLen). first
// says the IP packet is the first fragment of a larger one.
func (d *Decoder) tcp(seg []byte, segLen int, first bool, src, dst netip.Addr, r *Record) Reason {
	if segLen < 20 {
		return cut(first, BadTCPHeader)
	}
	if len(seg) < 20 {
		return Truncated
	}
	doff := int(seg[12]>>4) * 4
	if doff < 20 {
		return BadTCPHeader
	}
	if doff > segLen {
		return cut(first, BadTCPHeader)
	}
	if len(seg) < doff {
		return Truncated
	}
	flags := Flags(seg[13])
	count, err := d.dialects.Scan(seg[20:doff], toa.SegmentOf(flags&SYN != 0, flags&ACK != 0, segLen-doff), &r.TOA)
	if err != nil {
		return BadOptions
	}
	// Field by field, in place: a Record built on the stack and copied
	// costs as much as the rest of the decoding.
	r.TOACount = count
	r.Peer = netip.AddrPortFrom(src, binary.BigEndian.Uint16(seg[0:]))
	r.Local = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(seg[2:]))
	r.Flags = flags
	r.Seq = binary.BigEndian.Uint32(seg[4:])
	r.Ack = binary.BigEndian.Uint32(seg[8:])
	r.PayloadLen = uint32(segLen - doff)
	return OK
}
