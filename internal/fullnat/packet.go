package fullnat

import (
	"encoding/binary"
	"net/netip"

	"github.com/toad-project/toad/internal/inetsum"
)

const (
	protoTCP = 6

	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10

	optEOL = 0
	optNOP = 1
	optMSS = 2

	maxTCPHeader = 60
)

// segment is a parsed TCP/IP packet; its slices point into the packet.
type segment struct {
	src, dst netip.AddrPort
	tos, ttl uint8
	id       uint16 // IPv4 identification
	df       bool   // IPv4 don't-fragment
	flags    uint8
	tcp      []byte // TCP header with options, then payload
	doff     int    // TCP header length
}

func (s *segment) payloadLen() int { return len(s.tcp) - s.doff }

// parse reads an IPv4 or IPv6 packet holding a whole TCP segment. It
// rejects fragments, IPv6 packets with headers it cannot step over, and
// anything malformed.
func parse(p []byte) (segment, bool) {
	var s segment
	if len(p) < 1 {
		return s, false
	}
	var src, dst netip.Addr
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return s, false
		}
		ihl := int(p[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(p[2:]))
		frag := binary.BigEndian.Uint16(p[6:])
		if ihl < 20 || total < ihl || total > len(p) || p[9] != protoTCP || frag&0x3fff != 0 {
			return s, false
		}
		s.tos, s.ttl = p[1], p[8]
		s.id, s.df = binary.BigEndian.Uint16(p[4:]), frag&0x4000 != 0
		src, dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		s.tcp = p[ihl:total]
	case 6:
		if len(p) < 40 {
			return s, false
		}
		end := 40 + int(binary.BigEndian.Uint16(p[4:]))
		if end > len(p) {
			return s, false
		}
		s.tos = p[0]<<4 | p[1]>>4
		s.ttl = p[7]
		src, dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		next, off := p[6], 40
		for next != protoTCP {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
			default: // fragments, AH, ESP, no next header, other protocols
				return s, false
			}
			if off+8 > end {
				return s, false
			}
			next, off = p[off], off+(int(p[off+1])+1)*8
		}
		if off > end {
			return s, false
		}
		s.tcp = p[off:end]
	default:
		return s, false
	}
	if len(s.tcp) < 20 {
		return s, false
	}
	s.doff = int(s.tcp[12]>>4) * 4
	if s.doff < 20 || s.doff > len(s.tcp) {
		return s, false
	}
	s.flags = s.tcp[13]
	s.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(s.tcp[0:]))
	s.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(s.tcp[2:]))
	return s, true
}

// rewrite is what build does to a segment.
type rewrite struct {
	src, dst netip.AddrPort
	// opt is a TOA to insert, nil for none.
	opt []byte
	pos Position
	// mssCut is taken off the segment's MSS option, if it has one.
	mssCut int
	mtu    int
}

// outcome says what build did with the TOA.
type outcome uint8

const (
	noTOA outcome = iota
	inserted
	noRoom
)

// build writes s, rewritten by rw, as a new IP packet of rw.dst's family
// into out, which must hold len(s.tcp)+100 bytes, and returns it. The TCP
// checksum is updated incrementally (RFC 1624), so a segment that arrived
// corrupted stays detectably corrupted; the IP header is rebuilt without
// options or extension headers.
func build(out []byte, s *segment, rw *rewrite) ([]byte, outcome) {
	v4 := rw.dst.Addr().Is4()
	ipLen := 40
	if v4 {
		ipLen = 20
	}
	oldHdr := s.tcp[:s.doff]
	payload := s.tcp[s.doff:]

	var optBuf [maxTCPHeader - 20]byte
	opts, res := oldHdr[20:], noTOA
	if rw.opt != nil {
		res = noRoom
		if o, ok := insertOption(optBuf[:0], oldHdr[20:], rw.opt, rw.pos); ok &&
			ipLen+20+len(o)+len(payload) <= rw.mtu {
			opts, res = o, inserted
		}
	}
	hl := 20 + len(opts)
	tcpLen := hl + len(payload)
	pkt := out[:ipLen+tcpLen]
	tcp := pkt[ipLen:]
	copy(tcp, oldHdr[:20])
	copy(tcp[20:], opts)
	copy(tcp[hl:], payload)
	binary.BigEndian.PutUint16(tcp[0:], rw.src.Port())
	binary.BigEndian.PutUint16(tcp[2:], rw.dst.Port())
	tcp[12] = byte(hl/4)<<4 | tcp[12]&0x0f
	if rw.mssCut > 0 && s.flags&flagSYN != 0 {
		clampMSS(tcp[20:hl], rw.mssCut)
	}

	// The payload keeps its 16-bit alignment (header lengths are multiples
	// of 4), so only the pseudo-header and the TCP header change the sum.
	before := pseudoSum(s.src.Addr(), s.dst.Addr(), len(s.tcp)) + headerSum(oldHdr)
	after := pseudoSum(rw.src.Addr(), rw.dst.Addr(), tcpLen) + headerSum(tcp[:hl])
	binary.BigEndian.PutUint16(tcp[16:], inetsum.Update(binary.BigEndian.Uint16(oldHdr[16:]), before, after))

	ip := pkt[:ipLen]
	src, dst := rw.src.Addr(), rw.dst.Addr()
	if v4 {
		ip[0], ip[1] = 0x45, s.tos
		binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
		id, frag := s.id, uint16(0)
		if s.df || s.src.Addr().Is6() {
			frag = 0x4000
		}
		if s.src.Addr().Is6() {
			id = 0 // an atomic datagram (RFC 6864)
		}
		binary.BigEndian.PutUint16(ip[4:], id)
		binary.BigEndian.PutUint16(ip[6:], frag)
		ip[8], ip[9] = s.ttl, protoTCP
		ip[10], ip[11] = 0, 0
		a, b := src.As4(), dst.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], b[:])
		binary.BigEndian.PutUint16(ip[10:], ^inetsum.Fold(inetsum.Sum(ip, 0)))
	} else {
		ip[0], ip[1], ip[2], ip[3] = 0x60|s.tos>>4, s.tos<<4, 0, 0
		binary.BigEndian.PutUint16(ip[4:], uint16(tcpLen))
		ip[6], ip[7] = protoTCP, s.ttl
		a, b := src.As16(), dst.As16()
		copy(ip[8:], a[:])
		copy(ip[24:], b[:])
	}
	return pkt, res
}

// insertOption appends to dst the option list opts with opt inserted at
// pos, padded to a multiple of 4 bytes. It reports false when the result
// would not fit in a TCP header, or when pos is AfterOptions and opts
// cannot be walked.
func insertOption(dst, opts, opt []byte, pos Position) ([]byte, bool) {
	if pos == AfterHeader {
		n := (len(opt) + 3) &^ 3
		if n+len(opts) > maxTCPHeader-20 {
			return nil, false
		}
		dst = append(dst, opt...)
		for range n - len(opt) {
			dst = append(dst, optNOP)
		}
		return append(dst, opts...), true
	}
	end, ok := optionsEnd(opts)
	if !ok {
		return nil, false
	}
	n := (end + len(opt) + 3) &^ 3
	if n > maxTCPHeader-20 {
		return nil, false
	}
	dst = append(dst, opts[:end]...)
	dst = append(dst, opt...)
	for len(dst) < n {
		dst = append(dst, optEOL)
	}
	return dst, true
}

// optionsEnd returns the length of the option list without its end-of-list
// padding, or false when the list cannot be walked.
func optionsEnd(opts []byte) (int, bool) {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case optEOL:
			return i, true
		case optNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return 0, false
		}
		i += int(opts[i+1])
	}
	return len(opts), true
}

// minMSS is the floor clampMSS keeps: the IPv4 default MSS.
const minMSS = 536

// clampMSS lowers the MSS option in opts by cut, not below minMSS (nor
// raising an MSS already below it).
func clampMSS(opts []byte, cut int) {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case optEOL:
			return
		case optNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return
		}
		if opts[i] == optMSS && opts[i+1] == 4 {
			mss := int(binary.BigEndian.Uint16(opts[i+2:]))
			binary.BigEndian.PutUint16(opts[i+2:], uint16(max(mss-cut, min(mss, minMSS))))
			return
		}
		i += int(opts[i+1])
	}
}

func pseudoSum(src, dst netip.Addr, tcpLen int) uint32 {
	s := uint32(protoTCP) + uint32(tcpLen>>16) + uint32(tcpLen&0xffff)
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		return inetsum.Sum(b[:], inetsum.Sum(a[:], s))
	}
	a, b := src.As16(), dst.As16()
	return inetsum.Sum(b[:], inetsum.Sum(a[:], s))
}

// headerSum sums a TCP header, leaving out its checksum field.
func headerSum(h []byte) uint32 {
	return inetsum.Sum(h[18:], inetsum.Sum(h[:16], 0))
}
