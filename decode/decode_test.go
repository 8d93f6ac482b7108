package decode_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

var (
	ts      = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)
	proxy4  = netip.MustParseAddrPort("198.51.100.10:40001")
	server4 = netip.MustParseAddrPort("192.0.2.20:8080")
	proxy6  = netip.MustParseAddrPort("[2001:db8::10]:40001")
	server6 = netip.MustParseAddrPort("[2001:db8::20]:443")
	client4 = netip.MustParseAddrPort("203.0.113.7:51234")
	client6 = netip.MustParseAddrPort("[2001:db8:1::7]:5000")

	// The TOAs the records expect, one per dialect.
	toa200  = toa.Client{Dialect: toa.Dialect{Kind: 200, Len: 8}, Addr: netip.MustParseAddr("203.0.113.7"), Port: 51234, HasPort: true}
	toa201  = toa.Client{Dialect: toa.Dialect{Kind: 201, Len: 20}, Addr: netip.MustParseAddr("2001:db8:1::7"), Port: 5000, HasPort: true}
	toa253  = toa.Client{Dialect: toa.Dialect{Kind: 253, Len: 20}, Addr: netip.MustParseAddr("2001:db8:1::7"), Port: 5000, HasPort: true}
	toa2538 = toa.Client{Dialect: toa.Dialect{Kind: 253, Len: 8}, Addr: netip.MustParseAddr("203.0.113.7"), Port: 51234, HasPort: true}
	toa254  = toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: netip.MustParseAddr("203.0.113.7"), Port: 51234, HasPort: true}
	toaTTG  = toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 16}, Addr: netip.MustParseAddr("203.0.113.7"), Port: 51234, HasPort: true}
	toa2546 = toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 20}, Addr: netip.MustParseAddr("2001:db8:1::7"), Port: 5000, HasPort: true}
	toa28   = toa.Client{Dialect: toa.Dialect{Kind: 28, Len: 7}, Addr: netip.MustParseAddr("203.0.113.7")}
	toa286  = toa.Client{Dialect: toa.Dialect{Kind: 28, Len: 19}, Addr: netip.MustParseAddr("2001:db8:1::7")}
)

// Options that ride next to TOAs.
var (
	linuxSYN = craft.Opts(craft.MSS(1460), craft.SACKPerm, craft.Timestamps(11, 0), craft.NOP, craft.WScale(7)) // 20 bytes
	mss      = craft.MSS(1460)
	stamps   = craft.Opts(craft.NOP, craft.NOP, craft.Timestamps(11, 22)) // 12 bytes
)

func syn4(opts ...[]byte) *craft.Segment {
	return &craft.Segment{Src: proxy4, Dst: server4, Flags: decode.SYN, Seq: 1000, Options: craft.Opts(opts...)}
}

func ack4(payload int, opts ...[]byte) *craft.Segment {
	return &craft.Segment{Src: proxy4, Dst: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, Options: craft.Opts(opts...), Payload: make([]byte, payload)}
}

func syn6(opts ...[]byte) *craft.Segment {
	return &craft.Segment{Src: proxy6, Dst: server6, Flags: decode.SYN, Seq: 1000, Options: craft.Opts(opts...)}
}

func ack6(payload int, opts ...[]byte) *craft.Segment {
	return &craft.Segment{Src: proxy6, Dst: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, Options: craft.Opts(opts...), Payload: make([]byte, payload)}
}

func with(s *craft.Segment, f func(*craft.Segment)) *craft.Segment { f(s); return s }

func eth(ip []byte, tags ...uint16) []byte {
	return craft.Framing{Link: decode.LinkEthernet, Tags: tags}.Frame(ip)
}

// edit returns a copy of b changed by f.
func edit(b []byte, f func([]byte)) []byte {
	b = append([]byte(nil), b...)
	f(b)
	return b
}

type decodeCase struct {
	name   string
	set    string // ParseSet spec; "" is the default
	link   decode.LinkType
	frame  []byte
	reason decode.Reason
	want   decode.Record // the zero Record unless reason is OK
}

// decodeCases is the table of TestDecode; the fuzz corpus and the
// differential test use its frames too.
func decodeCases() []decodeCase {
	E := decode.LinkEthernet
	fo := craft.FastOpen([]byte{1, 2, 3, 4})
	toa63881 := toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: netip.MustParseAddr("1.2.3.4"), Port: 63881, HasPort: true}
	twoTOAs := craft.Opts(craft.TOA(toa.Kind254V4, client4), craft.TOA(toa.Kind200V4, netip.MustParseAddrPort("198.51.100.99:80")))
	return []decodeCase{
		// Every dialect.
		{name: "200/8 SYN", link: E, frame: eth(syn4(craft.TOA(toa.Kind200V4, client4), mss).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa200, TOACount: 1}},
		{name: "201/20 ACK in IPv6", link: E, frame: eth(ack6(10, craft.TOA(toa.Kind201V6, client6)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 10, TOA: toa201, TOACount: 1}},
		{name: "253/20 SYN in IPv6", link: E, frame: eth(syn6(craft.TOA(toa.Kind253V6, client6), linuxSYN).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa253, TOACount: 1}},
		{name: "253/8 is off by default", link: E, frame: eth(syn4(craft.TOA(toa.Kind253V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000}},
		{name: "253/8 enabled", set: "+253/8", link: E, frame: eth(syn4(craft.TOA(toa.Kind253V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa2538, TOACount: 1}},
		{name: "254/8 SYN", link: E, frame: eth(syn4(craft.TOA(toa.Kind254V4, client4), linuxSYN).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa254, TOACount: 1}},
		{name: "254/16 ACK", link: E, frame: eth(ack4(0, craft.TOA(toa.Kind254TTG, client4), stamps).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toaTTG, TOACount: 1}},
		{name: "254/20 in IPv6", link: E, frame: eth(ack6(0, craft.TOA(toa.Kind254V6, client6)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa2546, TOACount: 1}},
		{name: "28/7 SYN", link: E, frame: eth(syn4(linuxSYN, craft.TOA(toa.Kind28V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa28, TOACount: 1}},
		{name: "28/19 SYN in IPv6", link: E, frame: eth(syn6(craft.TOA(toa.Kind28V6, client6)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa286, TOACount: 1}},
		{name: "no TOA", link: E, frame: eth(ack4(100, stamps).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 100}},
		{name: "no options", link: E, frame: eth(ack6(1).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 1}},

		// Hazards.
		{name: "Fast Open cookie in a SYN with data", link: E, frame: eth(with(syn4(mss, fo), func(s *craft.Segment) { s.Payload = []byte("GET") }).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, PayloadLen: 3}},
		{name: "Fast Open bytes in a SYN without data are a TOA", link: E, frame: eth(syn4(mss, fo).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa63881, TOACount: 1}},
		{name: "254/20 TOA for port 63881 in a SYN without data", link: E,
			frame: eth(syn6(craft.TOA(toa.Kind254V6, netip.AddrPortFrom(client6.Addr(), 63881)), linuxSYN).IP()),
			want:  decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa.Client{Dialect: toa.Kind254V6, Addr: client6.Addr(), Port: 63881, HasPort: true}, TOACount: 1}},
		{name: "Fast Open bytes in a SYN with data beside a kind 34 cookie are a TOA", link: E,
			frame: eth(with(syn4(fo, mss, []byte{34, 10, 8, 7, 6, 5, 4, 3, 2, 1}), func(s *craft.Segment) { s.Payload = []byte("GET") }).IP()),
			want:  decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, PayloadLen: 3, TOA: toa63881, TOACount: 1}},
		{name: "Fast Open cookie in a SYN-ACK", link: E, frame: eth(with(syn4(mss, fo), func(s *craft.Segment) { s.Flags |= decode.ACK }).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN | decode.ACK, Seq: 1000}},
		{name: "Fast Open bytes in an ACK are a TOA", link: E, frame: eth(ack4(0, mss, fo).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa63881, TOACount: 1}},
		{name: "SMC-R in a SYN", link: E, frame: eth(syn4(mss, []byte{254, 6, 0xE2, 0xD4, 0xC3, 0xD9}, craft.TOA(toa.Kind254V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa254, TOACount: 1}},
		{name: "AccECN is not a declared 254/7", set: "default,254=version+ipv4", link: E, frame: eth(ack4(0, []byte{254, 7, 0xAC, 0xCE, 0, 0, 1}).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001}},
		{name: "User Timeout 28/4", link: E, frame: eth(syn4(mss, []byte{28, 4, 0x80, 0x3c}).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000}},
		{name: "254/20 inside IPv4 (DPVS FNAT64)", link: E, frame: eth(ack4(0, craft.TOA(toa.Kind254V6, client6)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa2546, TOACount: 1}},
		{name: "254/8 inside IPv6", link: E, frame: eth(ack6(0, craft.TOA(toa.Kind254V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa254, TOACount: 1}},
		{name: "TOA first", link: E, frame: eth(syn4(craft.TOA(toa.Kind254V4, client4), linuxSYN).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa254, TOACount: 1}},
		{name: "TOA last", link: E, frame: eth(ack4(0, stamps, craft.TOA(toa.Kind200V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa200, TOACount: 1}},
		{name: "TOA in the middle", link: E, frame: eth(syn6(mss, craft.TOA(toa.Kind253V6, client6), craft.SACKPerm, craft.WScale(7)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa253, TOACount: 1}},
		{name: "two TOAs: the first wins", link: E, frame: eth(ack4(0, twoTOAs).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa254, TOACount: 2}},
		{name: "EOL ends the walk", link: E, frame: eth(ack4(0, mss, []byte{0}, craft.TOA(toa.Kind200V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001}},
		{name: "NOPs are skipped", link: E, frame: eth(ack4(0, craft.NOP, craft.NOP, craft.NOP, craft.TOA(toa.Kind200V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa200, TOACount: 1}},
		{name: "option length below 2", link: E, frame: eth(ack4(0, craft.TOA(toa.Kind200V4, client4), []byte{2, 1}).IP()), reason: decode.BadOptions},
		{name: "option length past the header", link: E, frame: eth(ack4(0, craft.TOA(toa.Kind200V4, client4), []byte{8, 10, 0, 0}).IP()), reason: decode.BadOptions},
		{name: "custom kind 240", set: "default,240=port+ipv4", link: E, frame: eth(ack4(0, stamps, []byte{240, 8, 0xC8, 0x22, 203, 0, 113, 7}).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001,
				TOA: toa.Client{Dialect: toa.Dialect{Kind: 240, Len: 8}, Addr: netip.MustParseAddr("203.0.113.7"), Port: 51234, HasPort: true}, TOACount: 1}},
		{name: "kind 240 is not a TOA by default", link: E, frame: eth(ack4(0, stamps, []byte{240, 8, 0xC8, 0x22, 203, 0, 113, 7}).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001}},
		{name: "dialects turned off", set: "none", link: E, frame: eth(ack4(0, twoTOAs).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001}},

		// Link types.
		{name: "802.1Q", link: E, frame: eth(syn4(craft.TOA(toa.Kind200V4, client4)).IP(), 0x8100),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa200, TOACount: 1}},
		{name: "QinQ 802.1ad+802.1Q", link: E, frame: eth(syn6(craft.TOA(toa.Kind254V6, client6)).IP(), 0x88A8, 0x8100),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa2546, TOACount: 1}},
		{name: "three tags, 0x9100 outermost", link: E, frame: eth(syn4(craft.TOA(toa.Kind200V4, client4)).IP(), 0x9100, 0x88A8, 0x8100),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa200, TOACount: 1}},
		{name: "Linux SLL", link: decode.LinkLinuxSLL, frame: craft.Framing{Link: decode.LinkLinuxSLL}.Frame(syn4(craft.TOA(toa.Kind200V4, client4)).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa200, TOACount: 1}},
		{name: "Linux SLL with a VLAN tag", link: decode.LinkLinuxSLL, frame: craft.Framing{Link: decode.LinkLinuxSLL, Tags: []uint16{0x8100}}.Frame(ack6(0, craft.TOA(toa.Kind201V6, client6)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa201, TOACount: 1}},
		{name: "Linux SLL2 outgoing", link: decode.LinkLinuxSLL2, frame: craft.Framing{Link: decode.LinkLinuxSLL2, PacketType: 4}.Frame(ack6(3, craft.TOA(toa.Kind253V6, client6)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 3, TOA: toa253, TOACount: 1}},
		{name: "raw IPv4", link: decode.LinkRaw, frame: syn4(craft.TOA(toa.Kind28V4, client4)).IP(),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa28, TOACount: 1}},
		{name: "raw IPv6", link: decode.LinkRaw, frame: syn6(craft.TOA(toa.Kind28V6, client6)).IP(),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa286, TOACount: 1}},
		{name: "LINKTYPE_IPV4", link: decode.LinkIPv4, frame: syn4(craft.TOA(toa.Kind200V4, client4)).IP(),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa200, TOACount: 1}},
		{name: "LINKTYPE_IPV6", link: decode.LinkIPv6, frame: syn6(craft.TOA(toa.Kind254V6, client6)).IP(),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa2546, TOACount: 1}},
		{name: "IPv6 in LINKTYPE_IPV4", link: decode.LinkIPv4, frame: syn6().IP(), reason: decode.BadIPHeader},
		{name: "IPv4 in LINKTYPE_IPV6", link: decode.LinkIPv6, frame: append(syn4().IP(), make([]byte, 20)...), reason: decode.BadIPHeader},
		{name: "raw IP of version 5", link: decode.LinkRaw, frame: edit(syn4().IP(), func(b []byte) { b[0] = 0x55 }), reason: decode.BadIPHeader},
		{name: "802.11 is not supported", link: 105, frame: syn4().IP(), reason: decode.UnsupportedLink},
		{name: "ARP", link: E, frame: edit(eth(syn4().IP()), func(b []byte) { b[12], b[13] = 0x08, 0x06 }), reason: decode.NotIP},
		{name: "EtherType 0xFFFF (reserved)", link: E, frame: edit(eth(syn4().IP()), func(b []byte) { b[12], b[13] = 0xff, 0xff }), reason: decode.NotIP},
		{name: "802.3 length field", link: E, frame: edit(eth(syn4().IP()), func(b []byte) { b[12], b[13] = 0, 60 }), reason: decode.NotIP},
		{name: "IPv6 ethertype, IPv4 packet", link: E, frame: edit(eth(syn4().IP()), func(b []byte) { b[12], b[13] = 0x86, 0xDD }), reason: decode.BadIPHeader},
		{name: "IPv4 ethertype, IPv6 packet", link: E, frame: edit(eth(syn6().IP()), func(b []byte) { b[12], b[13] = 0x08, 0x00 }), reason: decode.BadIPHeader},

		// IPv4.
		{name: "IPv4 options", link: E, frame: eth(with(syn4(craft.TOA(toa.Kind200V4, client4)), func(s *craft.Segment) {
			s.IPOptions = []byte{1, 7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0} // NOP, record route
		}).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000, TOA: toa200, TOACount: 1}},
		{name: "IPv4 header of 60 bytes", link: E, frame: eth(with(ack4(5, craft.TOA(toa.Kind254V4, client4)), func(s *craft.Segment) {
			s.IPOptions = make([]byte, 40)
			s.IPOptions[0] = 1
		}).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 5, TOA: toa254, TOACount: 1}},
		{name: "IPv4 header length below 20", link: E, frame: eth(edit(syn4().IP(), func(b []byte) { b[0] = 0x44 })), reason: decode.BadIPHeader},
		{name: "IPv4 total length below the header", link: E, frame: eth(edit(ack4(0).IP(), func(b []byte) { b[0], b[3] = 0x46, 20 })), reason: decode.BadIPHeader},
		{name: "IPv4 total length 0 (segmentation offload)", link: E, frame: eth(edit(ack4(3000, stamps).IP(), func(b []byte) { b[2], b[3] = 0, 0 })),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 3000}},
		{name: "UDP", link: E, frame: eth(edit(syn4().IP(), func(b []byte) { b[9] = 17 })), reason: decode.NotTCP},
		{name: "IPv4 non-first fragment", link: E, frame: eth(with(ack4(100), func(s *craft.Segment) { s.FragOffset = 185 }).IP()), reason: decode.Fragment},
		{name: "IPv4 last fragment", link: E, frame: eth(with(ack4(100), func(s *craft.Segment) { s.FragOffset = 1 }).IP()), reason: decode.Fragment},
		{name: "IPv4 first fragment with the TCP header", link: E,
			frame: eth(craft.Cut(with(ack4(100, craft.TOA(toa.Kind254V4, client4), stamps), func(s *craft.Segment) { s.MoreFragments = true }).IP(), 20+40+16)),
			want:  decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 16, TOA: toa254, TOACount: 1}},
		{name: "IPv4 first fragment ending in the TCP options", link: E,
			frame:  eth(craft.Cut(with(ack4(100, craft.TOA(toa.Kind254V4, client4), stamps), func(s *craft.Segment) { s.MoreFragments = true }).IP(), 20+24)),
			reason: decode.Fragment},
		{name: "IPv4 first fragment of 8 bytes", link: E,
			frame: eth(craft.Cut(with(ack4(100), func(s *craft.Segment) { s.MoreFragments = true }).IP(), 20+8)), reason: decode.Fragment},
		{name: "Ethernet padding", link: E, frame: craft.Framing{Link: E, Pad: true}.Frame(ack4(0).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001}},
		{name: "Ethernet padding that is not zero", link: E, frame: append(eth(ack4(2).IP()), 0xde, 0xad, 0xbe, 0xef),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 2}},
		{name: "IPv6 padding", link: E, frame: append(eth(ack6(2).IP()), 0xde, 0xad, 0xbe, 0xef),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 2}},
		{name: "snap length cut the payload", link: E, frame: eth(ack4(1000, craft.TOA(toa.Kind200V4, client4)).IP())[:14+20+28+10],
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 1000, TOA: toa200, TOACount: 1}},

		// IPv6 extension headers.
		{name: "IPv6 hop-by-hop", link: E, frame: eth(with(syn6(craft.TOA(toa.Kind254V6, client6)), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 0, Len: 8}} }).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa2546, TOACount: 1}},
		{name: "IPv6 routing", link: E, frame: eth(with(syn6(craft.TOA(toa.Kind254V6, client6)), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 43, Len: 24}} }).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa2546, TOACount: 1}},
		{name: "IPv6 destination options", link: E, frame: eth(with(ack6(7, craft.TOA(toa.Kind254V6, client6)), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 60, Len: 16}} }).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 7, TOA: toa2546, TOACount: 1}},
		{name: "IPv6 atomic fragment", link: E, frame: eth(with(ack6(7, craft.TOA(toa.Kind254V6, client6)), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 44}} }).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 7, TOA: toa2546, TOACount: 1}},
		{name: "IPv6 authentication header", link: E, frame: eth(with(ack6(7, craft.TOA(toa.Kind254V6, client6)), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 51, Len: 24}} }).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 7, TOA: toa2546, TOACount: 1}},
		{name: "IPv6 authentication header below 12 bytes", link: E,
			frame:  eth(edit(with(ack6(0), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 51, Len: 12}} }).IP(), func(b []byte) { b[41] = 0 })),
			reason: decode.BadIPHeader},
		{name: "IPv6 chain of five headers", link: E, frame: eth(with(syn6(craft.TOA(toa.Kind201V6, client6), linuxSYN), func(s *craft.Segment) {
			s.Ext = []craft.Ext{{Type: 0, Len: 16}, {Type: 60, Len: 8}, {Type: 43, Len: 40}, {Type: 44}, {Type: 60, Len: 2048}}
		}).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.SYN, Seq: 1000, TOA: toa201, TOACount: 1}},
		{name: "IPv6 non-first fragment", link: E, frame: eth(with(ack6(7), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 44, FragOffset: 100}} }).IP()), reason: decode.Fragment},
		{name: "IPv6 first fragment with the TCP header", link: E,
			frame: eth(craft.Cut(with(ack6(100, craft.TOA(toa.Kind254V6, client6)), func(s *craft.Segment) {
				s.Ext = []craft.Ext{{Type: 60, Len: 8}, {Type: 44, MoreFragments: true}}
			}).IP(), 40+16+40+24)),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 24, TOA: toa2546, TOACount: 1}},
		{name: "IPv6 first fragment ending in the TCP header", link: E,
			frame:  eth(craft.Cut(with(ack6(100, craft.TOA(toa.Kind254V6, client6)), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 44, MoreFragments: true}} }).IP(), 40+8+32)),
			reason: decode.Fragment},
		{name: "IPv6 first fragment ending in an extension header", link: E,
			frame:  eth(craft.Cut(with(ack6(100), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 44, MoreFragments: true}, {Type: 60, Len: 64}} }).IP(), 40+8+32)),
			reason: decode.Fragment},
		{name: "IPv6 extension header past the payload length", link: E,
			frame:  eth(edit(with(ack6(0), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 60, Len: 64}} }).IP(), func(b []byte) { b[4], b[5] = 0, 32 })),
			reason: decode.BadIPHeader},
		{name: "IPv6 payload length below 8 with a header to come", link: E,
			frame:  eth(edit(with(ack6(0), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 0, Len: 8}} }).IP(), func(b []byte) { b[4], b[5] = 0, 4 })),
			reason: decode.BadIPHeader},
		{name: "IPv6 payload length 0 (jumbogram or offload)", link: E, frame: eth(edit(ack6(2000, stamps).IP(), func(b []byte) { b[4], b[5] = 0, 0 })),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, PayloadLen: 2000}},
		{name: "IPv6 no next header", link: E, frame: eth(edit(ack6(0).IP(), func(b []byte) { b[6] = 59 })), reason: decode.NotTCP},
		{name: "IPv6 UDP after a header", link: E,
			frame: eth(edit(with(ack6(0), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 60, Len: 8}} }).IP(), func(b []byte) { b[40] = 17 })), reason: decode.NotTCP},
		{name: "IPv6 ESP", link: E, frame: eth(edit(ack6(0).IP(), func(b []byte) { b[6] = 50 })), reason: decode.NotTCP},

		// TCP.
		{name: "TCP data offset below 5", link: E, frame: eth(edit(ack4(10).IP(), func(b []byte) { b[20+12] = 4 << 4 })), reason: decode.BadTCPHeader},
		{name: "TCP data offset past the IP payload", link: E, frame: eth(edit(ack4(8).IP(), func(b []byte) { b[20+12] = 8 << 4 })), reason: decode.BadTCPHeader},
		{name: "TCP header shorter than 20 bytes by the IP length", link: E, frame: eth(craft.Cut(ack4(0).IP(), 20+12)), reason: decode.BadTCPHeader},
		{name: "every flag", link: E, frame: eth(with(ack4(0), func(s *craft.Segment) { s.Flags = 0xff; s.Seq, s.Ack = 0xffffffff, 0x80000000 }).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: 0xff, Seq: 0xffffffff, Ack: 0x80000000}},
		{name: "no flags", link: E, frame: eth(with(ack4(0), func(s *craft.Segment) { s.Flags = 0 }).IP()),
			want: decode.Record{Time: ts, Peer: proxy4, Local: server4, Seq: 1001, Ack: 5001}},
		{name: "largest TCP header ending in a TOA", link: E, frame: eth(ack6(0, bytes.Repeat(craft.NOP, 20), craft.TOA(toa.Kind254V6, client6)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001, TOA: toa2546, TOACount: 1}},
		{name: "largest TCP header, EOL before the TOA", link: E, frame: eth(ack6(0, make([]byte, 20), craft.TOA(toa.Kind254V6, client6)).IP()),
			want: decode.Record{Time: ts, Peer: proxy6, Local: server6, Flags: decode.ACK | decode.PSH, Seq: 1001, Ack: 5001}},

		// Truncation at every layer.
		{name: "empty Ethernet frame", link: E, frame: nil, reason: decode.Truncated},
		{name: "Ethernet header cut", link: E, frame: eth(syn4().IP())[:13], reason: decode.Truncated},
		{name: "VLAN tag cut", link: E, frame: eth(syn4().IP(), 0x88A8, 0x8100)[:20], reason: decode.Truncated},
		{name: "SLL header cut", link: decode.LinkLinuxSLL, frame: craft.Framing{Link: decode.LinkLinuxSLL}.Frame(syn4().IP())[:15], reason: decode.Truncated},
		{name: "SLL2 header cut", link: decode.LinkLinuxSLL2, frame: craft.Framing{Link: decode.LinkLinuxSLL2}.Frame(syn4().IP())[:19], reason: decode.Truncated},
		{name: "empty raw packet", link: decode.LinkRaw, frame: []byte{}, reason: decode.Truncated},
		{name: "IPv4 header cut", link: E, frame: eth(syn4().IP())[:14+19], reason: decode.Truncated},
		{name: "IPv4 options cut", link: E, frame: eth(with(syn4(), func(s *craft.Segment) { s.IPOptions = make([]byte, 8) }).IP())[:14+24], reason: decode.Truncated},
		{name: "IPv6 header cut", link: decode.LinkIPv6, frame: syn6().IP()[:39], reason: decode.Truncated},
		{name: "IPv6 extension header cut", link: decode.LinkRaw, frame: with(syn6(), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 60, Len: 16}} }).IP()[:40+12], reason: decode.Truncated},
		{name: "IPv6 extension header cut early", link: decode.LinkRaw, frame: with(syn6(), func(s *craft.Segment) { s.Ext = []craft.Ext{{Type: 60, Len: 16}} }).IP()[:40+4], reason: decode.Truncated},
		{name: "TCP header cut", link: E, frame: eth(syn4().IP())[:14+20+19], reason: decode.Truncated},
		{name: "TCP options cut", link: E, frame: eth(syn4(craft.TOA(toa.Kind200V4, client4)).IP())[:14+20+27], reason: decode.Truncated},
	}
}

// decoderFor returns a Decoder for a case's dialect spec.
func decoderFor(t testing.TB, spec string) *decode.Decoder {
	t.Helper()
	if spec == "" {
		return decode.New(nil)
	}
	s, err := toa.ParseSet(spec)
	if err != nil {
		t.Fatalf("ParseSet(%q): %v", spec, err)
	}
	return decode.New(s)
}

var cmpRecord = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			d := decoderFor(t, tc.set)
			// Start from a filled record: a rejected frame must clear it.
			r := decode.Record{Peer: proxy4, Local: server4, TOA: toa200, TOACount: 1}
			reason := d.Decode(tc.link, tc.frame, ts, &r)
			if reason != tc.reason {
				t.Fatalf("Decode(%v, % x) = %v, want %v", tc.link, tc.frame, reason, tc.reason)
			}
			if diff := cmp.Diff(tc.want, r, cmpRecord); diff != "" {
				t.Errorf("Decode(%v, % x) record mismatch (-want +got):\n%s", tc.link, tc.frame, diff)
			}
		})
	}
}

// TestTruncatedAnywhere cuts frames at every length: a cut inside the
// headers is Truncated, one after them yields the full frame's record.
func TestTruncatedAnywhere(t *testing.T) {
	d := decode.New(nil)
	for _, tc := range decodeCases() {
		if tc.reason != decode.OK || tc.set != "" {
			continue
		}
		if strings.Contains(tc.name, "offload") {
			continue // the lengths come from the capture: a cut changes them
		}
		var full decode.Record
		if reason := d.Decode(tc.link, tc.frame, ts, &full); reason != decode.OK {
			t.Fatalf("%s: Decode = %v", tc.name, reason)
		}
		headers := headerLen(d, tc.link, tc.frame)
		for n := range len(tc.frame) {
			var r decode.Record
			reason := d.Decode(tc.link, tc.frame[:n], ts, &r)
			switch {
			case n < headers && reason != decode.Truncated:
				t.Errorf("%s cut to %d of %d bytes (headers end at %d): got %v, want truncated", tc.name, n, len(tc.frame), headers, reason)
			case n >= headers && (reason != decode.OK || r != full):
				t.Errorf("%s cut to %d of %d bytes (headers end at %d): got %v %+v, want %+v", tc.name, n, len(tc.frame), headers, reason, r, full)
			}
		}
	}
}

// headerLen is where the headers of a frame that decodes end: the length
// of its shortest prefix that still decodes.
func headerLen(d *decode.Decoder, link decode.LinkType, frame []byte) int {
	var r decode.Record
	for n := range len(frame) {
		if d.Decode(link, frame[:n], ts, &r) == decode.OK {
			return n
		}
	}
	return len(frame)
}

func TestZeroDecoder(t *testing.T) {
	var d decode.Decoder
	var r decode.Record
	frame := eth(syn4(craft.TOA(toa.Kind200V4, client4), mss).IP())
	if reason := d.Decode(decode.LinkEthernet, frame, ts, &r); reason != decode.OK {
		t.Fatalf("zero Decoder: Decode = %v, want ok", reason)
	}
	want := decode.Record{Time: ts, Peer: proxy4, Local: server4, Flags: decode.SYN, Seq: 1000}
	if diff := cmp.Diff(want, r, cmpRecord); diff != "" {
		t.Errorf("zero Decoder record mismatch (-want +got):\n%s", diff)
	}
	if reason := d.Decode(decode.LinkEthernet, eth(syn4([]byte{200, 1}).IP()), ts, &r); reason != decode.BadOptions {
		t.Errorf("zero Decoder: Decode of bad options = %v, want bad_options", reason)
	}
	if d.Dialects() != nil {
		t.Errorf("zero Decoder: Dialects() = %v, want nil", d.Dialects())
	}
	if got := decode.New(nil).Dialects().String(); got != toa.DefaultSet().String() {
		t.Errorf("New(nil).Dialects() = %v, want the default set", got)
	}
}
