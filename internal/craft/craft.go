package craft

import (
	"encoding/binary"
	"net/netip"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/inetsum"
	"github.com/toad-project/toad/toa"
)

// Segment describes one TCP segment and the IP packet around it.
type Segment struct {
	Src, Dst netip.AddrPort
	Flags    decode.Flags
	Seq, Ack uint32
	Window   uint16 // 0 means 65535
	// Options are the raw TCP option bytes; the builder pads them to a
	// multiple of 4 with EOL.
	Options []byte
	Payload []byte

	// IPv4 only.
	IPOptions     []byte // raw IPv4 options, padded to a multiple of 4 with EOL
	FragOffset    uint16 // in 8-byte units
	MoreFragments bool
	// IPv6 only: extension headers between the fixed header and TCP.
	Ext []Ext
	// ID is the IPv4 identification or, with an IPv6 fragment header, its
	// identification.
	ID uint16
}

// Ext is an IPv6 extension header. Len is the header's total length in bytes
// (a multiple of 8, at least 8; for an authentication header a multiple of 4,
// at least 12); its body is zero-filled. For a fragment header Len is ignored
// and FragOffset/MoreFragments apply.
type Ext struct {
	Type          uint8 // 0 hop-by-hop, 43 routing, 44 fragment, 51 authentication, 60 destination options
	Len           int
	FragOffset    uint16
	MoreFragments bool
}

// IP returns the IP packet (version from Src) holding the segment.
func (s *Segment) IP() []byte {
	tcp := s.tcp()
	if s.Src.Addr().Is4() {
		return s.ipv4(tcp)
	}
	return s.ipv6(tcp)
}

func (s *Segment) tcp() []byte {
	opts := pad4(s.Options)
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(s.Payload))
	binary.BigEndian.PutUint16(b[0:], s.Src.Port())
	binary.BigEndian.PutUint16(b[2:], s.Dst.Port())
	binary.BigEndian.PutUint32(b[4:], s.Seq)
	binary.BigEndian.PutUint32(b[8:], s.Ack)
	b[12] = byte(hl/4) << 4
	b[13] = byte(s.Flags)
	w := s.Window
	if w == 0 {
		w = 65535
	}
	binary.BigEndian.PutUint16(b[14:], w)
	copy(b[20:], opts)
	return append(b, s.Payload...)
}

func (s *Segment) ipv4(tcp []byte) []byte {
	opts := pad4(s.IPOptions)
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(tcp))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(tcp)))
	binary.BigEndian.PutUint16(b[4:], s.ID)
	frag := s.FragOffset & 0x1fff
	if s.MoreFragments {
		frag |= 0x2000
	} else if s.FragOffset == 0 {
		frag |= 0x4000 // DF
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = 6
	src, dst := s.Src.Addr().As4(), s.Dst.Addr().As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	copy(b[20:], opts)
	binary.BigEndian.PutUint16(b[10:], ^inetsum.Fold(inetsum.Sum(b[:hl], 0)))
	ph := inetsum.Sum(src[:], 0)
	ph = inetsum.Sum(dst[:], ph)
	ph += 6 + uint32(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:], ^inetsum.Fold(inetsum.Sum(tcp, ph)))
	return append(b, tcp...)
}

func (s *Segment) ipv6(tcp []byte) []byte {
	var ext []byte
	next := byte(6)
	for i := len(s.Ext) - 1; i >= 0; i-- {
		e := s.Ext[i]
		n := e.Len
		switch e.Type {
		case 44:
			n = 8
		case 51:
			n = max(12, (n+3)&^3)
		default:
			n = max(8, (n+7)&^7)
		}
		h := make([]byte, n)
		h[0] = next
		switch e.Type {
		case 51:
			h[1] = byte(n/4 - 2)
			binary.BigEndian.PutUint32(h[4:], 0x100) // SPI
		case 44:
			off := e.FragOffset << 3
			if e.MoreFragments {
				off |= 1
			}
			binary.BigEndian.PutUint16(h[2:], off)
			binary.BigEndian.PutUint32(h[4:], uint32(s.ID))
		default:
			h[1] = byte(n/8 - 1)
			if e.Type == 0 || e.Type == 60 {
				h[2], h[3] = 1, byte(n-4) // one PadN option filling the header
			}
		}
		ext = append(h, ext...)
		next = e.Type
	}
	b := make([]byte, 40, 40+len(ext)+len(tcp))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(ext)+len(tcp)))
	b[6] = next
	b[7] = 64
	src, dst := s.Src.Addr().As16(), s.Dst.Addr().As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	ph := inetsum.Sum(src[:], 0)
	ph = inetsum.Sum(dst[:], ph)
	ph += 6 + uint32(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:], ^inetsum.Fold(inetsum.Sum(tcp, ph)))
	b = append(b, ext...)
	return append(b, tcp...)
}

// Framing is the link layer around an IP packet.
type Framing struct {
	Link decode.LinkType
	// Tags are the TPIDs of VLAN tags, outermost first (0x88A8, 0x8100,
	// 0x9100), with VLAN ids 100, 101... Ethernet, and Linux cooked capture
	// v1, where libpcap reinserts the tag the kernel stripped in front of
	// the protocol field.
	Tags []uint16
	// PacketType is the Linux cooked capture packet type (0 to us, 4
	// outgoing).
	PacketType uint8
	// Pad pads Ethernet frames to the 60-byte minimum with zeros, as a
	// capture from the wire shows short frames.
	Pad bool
}

func appendTags(b []byte, tags []uint16) []byte {
	for i, tpid := range tags {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // VLAN id
	}
	return b
}

// Frame wraps an IP packet in f's link layer.
func (f Framing) Frame(ip []byte) []byte {
	ether := uint16(0x0800)
	if len(ip) > 0 && ip[0]>>4 == 6 {
		ether = 0x86DD
	}
	var b []byte
	switch f.Link {
	case decode.LinkEthernet:
		b = append(b, 0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02)
		b = appendTags(b, f.Tags)
		b = binary.BigEndian.AppendUint16(b, ether)
	case decode.LinkLinuxSLL:
		b = binary.BigEndian.AppendUint16(b, uint16(f.PacketType))
		b = binary.BigEndian.AppendUint16(b, 1) // ARPHRD_ETHER
		b = binary.BigEndian.AppendUint16(b, 6)
		b = append(b, 0x02, 0, 0, 0, 0, 0x02, 0, 0)
		b = appendTags(b, f.Tags)
		b = binary.BigEndian.AppendUint16(b, ether)
	case decode.LinkLinuxSLL2:
		b = binary.BigEndian.AppendUint16(b, ether)
		b = append(b, 0, 0)                     // reserved
		b = binary.BigEndian.AppendUint32(b, 2) // ifindex
		b = binary.BigEndian.AppendUint16(b, 1) // ARPHRD_ETHER
		b = append(b, f.PacketType, 6)          // packet type, address length
		b = append(b, 0x02, 0, 0, 0, 0, 0x02, 0, 0)
	}
	b = append(b, ip...)
	if f.Pad && f.Link == decode.LinkEthernet && len(b) < 60 {
		b = append(b, make([]byte, 60-len(b))...)
	}
	return b
}

// Cut returns the first n bytes of the IP packet ip as a packet of its own:
// its length field says so and an IPv4 header checksum is recomputed. With
// Segment.MoreFragments or an IPv6 fragment header, that is how a first
// fragment ending at byte n looks. The TCP checksum is left as it was.
func Cut(ip []byte, n int) []byte {
	b := append([]byte(nil), ip[:n]...)
	if b[0]>>4 == 4 {
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		hl := int(b[0]&0x0f) * 4
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], ^inetsum.Fold(inetsum.Sum(b[:hl], 0)))
	} else {
		binary.BigEndian.PutUint16(b[4:], uint16(n-40))
	}
	return b
}

// Frame builds s inside f's link layer.
func Frame(f Framing, s *Segment) []byte { return f.Frame(s.IP()) }

// Opts concatenates option encodings.
func Opts(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// Common TCP options.
var (
	NOP      = []byte{1}
	SACKPerm = []byte{4, 2}
)

// MSS returns a maximum segment size option.
func MSS(v uint16) []byte { return binary.BigEndian.AppendUint16([]byte{2, 4}, v) }

// WScale returns a window scale option.
func WScale(v uint8) []byte { return []byte{3, 3, v} }

// Timestamps returns a timestamps option.
func Timestamps(val, echo uint32) []byte {
	b := binary.BigEndian.AppendUint32([]byte{8, 10}, val)
	return binary.BigEndian.AppendUint32(b, echo)
}

// FastOpen returns a TCP Fast Open cookie option in its experimental form
// (kind 254, ExID 0xF989), a TOA look-alike.
func FastOpen(cookie []byte) []byte {
	return append([]byte{254, byte(4 + len(cookie)), 0xF9, 0x89}, cookie...)
}

// TOA returns a TOA option in dialect d naming client. It panics when the
// client does not fit the dialect, which is a mistake in the caller's test.
func TOA(d toa.Dialect, client netip.AddrPort) []byte {
	b, err := toa.AppendDialect(nil, d, client)
	if err != nil {
		panic(err)
	}
	return b
}

func pad4(b []byte) []byte {
	if len(b)%4 == 0 {
		return b
	}
	p := make([]byte, (len(b)+3)&^3)
	copy(p, b)
	return p
}
