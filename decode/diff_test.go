package decode_test

import (
	"bytes"
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

var diffSeed = flag.Uint64("diff.seed", 1, "seed of TestDifferentialRandom's packets")

// diffSpec is the dialect set of the differential test: every built-in
// dialect and a declared kind.
const diffSpec = "all,240=port+ipv4"

// gopacketView is what gopacket decoded of a frame, in a Record's terms.
type gopacketView struct {
	peer, local netip.AddrPort
	flags       decode.Flags
	seq, ack    uint32
	payload     int  // captured TCP payload bytes
	truncated   bool // gopacket saw the capture end before the packet did
	badVersion  bool // the IP version nibble disagrees with the link layer
	opts        []layers.TCPOption
	// rest is the option bytes gopacket did not walk because it stopped at
	// an option it could not read; nil when it walked to the end or an EOL.
	rest []byte
}

// viewGopacket decodes frame with gopacket's layers. It reports false unless
// gopacket decoded the frame down to the TCP header.
func viewGopacket(g *gopacketDecoder, link decode.LinkType, frame []byte) (gopacketView, bool) {
	var v gopacketView
	ok, truncated := g.decode(link, frame)
	if !ok {
		return v, false
	}
	// gopacket reads EtherType 0xFFFF, which IEEE reserves, as IPv4 of its
	// own accord; toad rightly calls it not IP.
	for i, typ := range g.decoded[1:] {
		if typ == layers.LayerTypeIPv4 && g.linkType(g.decoded[i]) == layers.EthernetTypeRaw {
			return v, false
		}
	}
	var r decode.Record
	g.record(toa.DefaultSet(), &r)
	v.peer, v.local, v.flags, v.seq, v.ack = r.Peer, r.Local, r.Flags, r.Seq, r.Ack
	for _, typ := range g.decoded {
		switch typ {
		case layers.LayerTypeIPv4:
			v.badVersion = g.ip4.Version != 4
		case layers.LayerTypeIPv6:
			v.badVersion = g.ip6.Version != 6
		}
	}
	tcp := &g.tcp
	v.payload, v.truncated = len(tcp.Payload), truncated
	v.opts = slices.Clone(tcp.Options)
	if n := len(v.opts); len(tcp.Padding) > 0 && (n == 0 || v.opts[n-1].OptionType != layers.TCPOptionKindEndList) {
		v.rest = tcp.Padding
	}
	return v, true
}

// lookAlike reports whether an option of kind 253 or 254 is one of the
// experiments that share those kinds in a segment with these flags and
// data, by the rules of RFC 7413 (Fast Open, ExID 0xF989, 4-16 byte
// cookie, in a SYN-ACK or in a SYN with the data it lets through), AccECN
// (0xACCE/0xACCF, 0-3 three-byte fields) and SMC-R (0xE2D4C3D9, SYN only).
func lookAlike(kind uint8, data []byte, syn, ack, hasData bool) bool {
	if kind != 253 && kind != 254 || len(data) < 2 {
		return false
	}
	switch {
	case data[0] == 0xF9 && data[1] == 0x89:
		return syn && (ack || hasData) && len(data)-2 >= 4 && len(data)-2 <= 16
	case data[0] == 0xAC && (data[1] == 0xCE || data[1] == 0xCF):
		return (len(data)-2)%3 == 0 && len(data)-2 <= 9
	}
	return syn && bytes.Equal(data, []byte{0xE2, 0xD4, 0xC3, 0xD9})
}

// fastOpen reports whether an option is Fast Open's, in either form: kind
// 34, or kind 253 or 254 with ExID 0xF989 and no cookie or one of 4-16
// bytes.
func fastOpen(kind uint8, data []byte) bool {
	n := len(data) - 2
	return kind == 34 || (kind == 253 || kind == 254) && n >= 0 && data[0] == 0xF9 && data[1] == 0x89 && (n == 0 || n >= 4 && n <= 16)
}

// clientOf reads a TOA's client from its data by the layouts of the
// reference table.
func clientOf(d toa.Dialect, l toa.Layout, data []byte) toa.Client {
	c := toa.Client{Dialect: d, HasPort: l.HasPort()}
	switch l {
	case toa.LayoutPortIPv4, toa.LayoutPortIPv4Dest:
		c.Port, c.Addr = binary.BigEndian.Uint16(data), netip.AddrFrom4([4]byte(data[2:6]))
	case toa.LayoutPortIPv6:
		c.Port, c.Addr = binary.BigEndian.Uint16(data), netip.AddrFrom16([16]byte(data[2:18]))
	case toa.LayoutVersionIPv4:
		c.Addr = netip.AddrFrom4([4]byte(data[1:5]))
	case toa.LayoutVersionIPv6:
		c.Addr = netip.AddrFrom16([16]byte(data[1:17]))
	}
	return c
}

// walkOptions walks TCP options by the plain TLV rules: EOL ends the list,
// NOP is one byte, any other option has a length of at least 2 that stays
// within the list.
func walkOptions(b []byte) (opts []layers.TCPOption, malformed bool) {
	for i := 0; i < len(b) && b[i] != 0; {
		if b[i] == 1 {
			i++
			continue
		}
		if len(b)-i < 2 || b[i+1] < 2 || int(b[i+1]) > len(b)-i {
			return opts, true
		}
		n := int(b[i+1])
		opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKind(b[i]), OptionLength: b[i+1], OptionData: b[i+2 : i+n]})
		i += n
	}
	return opts, false
}

// diffStats counts what the differential test compared.
type diffStats struct {
	frames, compared, toas, rejected, unwalked int
}

// differ decodes frame with both decoders and reports every disagreement.
// It returns the record toad decoded, when gopacket decoded the frame too.
func differ(t *testing.T, g *gopacketDecoder, d *decode.Decoder, link decode.LinkType, frame []byte, st *diffStats) (decode.Record, bool) {
	t.Helper()
	st.frames++
	var r decode.Record
	reason := d.Decode(link, frame, ts, &r)
	v, ok := viewGopacket(g, link, frame)
	if !ok {
		return r, false
	}
	st.compared++
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%v frame % x:\n"+format, append([]any{link, frame}, args...)...)
	}
	// gopacket stops at an option it cannot read, malformed or an MPTCP
	// option of a length its subtype does not have; toad walks on past the
	// latter. Walk what gopacket left by the plain TLV rules.
	opts, malformed := v.opts, false
	if v.rest != nil {
		st.unwalked++
		var more []layers.TCPOption
		more, malformed = walkOptions(v.rest)
		opts = append(opts, more...)
	}
	// Where gopacket decodes and toad rejects on purpose.
	want := decode.OK
	switch {
	case v.badVersion:
		want = decode.BadIPHeader // gopacket does not check the version nibble
	case malformed:
		want = decode.BadOptions // an option runs past the header or is shorter than 2
	}
	if reason != want {
		fail("toad says %v, want %v (gopacket decoded %+v)", reason, want, v)
		return r, false
	}
	if want != decode.OK {
		st.rejected++
		return r, false
	}
	if r.Peer != v.peer || r.Local != v.local || r.Flags != v.flags || r.Seq != v.seq || r.Ack != v.ack {
		fail("toad: %v -> %v flags %v seq %d ack %d\ngopacket: %v -> %v flags %v seq %d ack %d",
			r.Peer, r.Local, r.Flags, r.Seq, r.Ack, v.peer, v.local, v.flags, v.seq, v.ack)
	}
	if int(r.PayloadLen) < v.payload || !v.truncated && int(r.PayloadLen) != v.payload {
		fail("toad: payload %d bytes, gopacket: %d captured (truncated %v)", r.PayloadLen, v.payload, v.truncated)
	}
	var first toa.Client
	count := 0
	set := d.Dialects()
	// Data as the IP header announces it: gopacket keeps only what was
	// captured, toad's length was checked against it above.
	syn, ack, hasData := v.flags&decode.SYN != 0, v.flags&decode.ACK != 0, v.payload > 0 || r.PayloadLen > 0
	// A client sends one Fast Open option: in a SYN with data that holds
	// two, the first look-alike of a TOA dialect is a TOA.
	fastOpens := 0
	for _, o := range opts {
		if fastOpen(uint8(o.OptionType), o.OptionData) {
			fastOpens++
		}
	}
	aside := !syn || ack || !hasData || fastOpens < 2
	for _, o := range opts {
		kind := uint8(o.OptionType)
		if kind == 0 || kind == 1 {
			continue
		}
		dl := toa.Dialect{Kind: kind, Len: o.OptionLength}
		l := set.Layout(dl)
		if l == toa.LayoutNone {
			continue
		}
		if lookAlike(kind, o.OptionData, syn, ack, hasData) {
			if aside || !fastOpen(kind, o.OptionData) {
				continue
			}
			aside = true
		}
		if count == 0 {
			first = clientOf(dl, l, o.OptionData)
		}
		count++
	}
	if r.TOA != first || int(r.TOACount) != min(count, 255) {
		fail("toad: TOA %+v count %d\ngopacket options %v: first TOA %+v count %d", r.TOA, r.TOACount, opts, first, count)
	}
	if count > 0 {
		st.toas++
	}
	return r, true
}

// framings are the link layers the generated frames come in.
var framings = []craft.Framing{
	{Link: decode.LinkEthernet},
	{Link: decode.LinkEthernet, Tags: []uint16{0x8100}},
	{Link: decode.LinkEthernet, Tags: []uint16{0x88A8, 0x8100}, Pad: true},
	{Link: decode.LinkLinuxSLL},
	{Link: decode.LinkLinuxSLL, Tags: []uint16{0x8100}},
	{Link: decode.LinkLinuxSLL2, PacketType: 4},
	{Link: decode.LinkRaw},
}

// TestDifferentialGenerated checks toad against gopacket on every dialect at
// every option position, over every framing, in IPv4 and IPv6, and on the
// frames of TestDecode.
func TestDifferentialGenerated(t *testing.T) {
	set, err := toa.ParseSet(diffSpec)
	if err != nil {
		t.Fatal(err)
	}
	d := decode.New(set)
	g := newGopacketDecoder()
	var st diffStats
	for _, dl := range set.Dialects() {
		l := set.Layout(dl)
		client := client4
		if l.IPv6() {
			client = client6
		}
		opt, err := toa.Append(nil, dl.Kind, l, client)
		if err != nil {
			t.Fatal(err)
		}
		want := toa.Client{Dialect: dl, Addr: client.Addr(), HasPort: l.HasPort()}
		if l.HasPort() {
			want.Port = client.Port()
		}
		positions := [][][]byte{{opt, mss}, {mss, opt, craft.SACKPerm}, {craft.NOP, craft.NOP, craft.Timestamps(1, 2), opt}}
		for _, f := range framings {
			for _, s := range []*craft.Segment{syn4(), ack4(20), syn6(), ack6(20)} {
				for _, opts := range positions {
					s.Options = craft.Opts(opts...)
					if len(s.Options) > 40 {
						continue
					}
					r, ok := differ(t, g, d, f.Link, f.Frame(s.IP()), &st)
					if !ok {
						t.Errorf("%v %v in %v: gopacket did not decode it", dl, f.Link, s.Src)
						continue
					}
					if r.TOA != want || r.TOACount != 1 {
						t.Errorf("%v %v in %v: TOA %+v count %d, want %+v", dl, f.Link, s.Src, r.TOA, r.TOACount, want)
					}
				}
			}
		}
	}
	for _, tc := range decodeCases() {
		differ(t, g, decoderFor(t, tc.set), tc.link, tc.frame, &st)
	}
	t.Logf("%+v", st)
}

// TestDifferentialRandom checks toad against gopacket on random packets:
// random dialects, positions, neighbouring options, VLAN tags, IPv4 options,
// IPv6 extension headers, fragments and payload sizes, a third of them with
// bytes corrupted or cut off. Run with -diff.seed=N to draw other packets.
func TestDifferentialRandom(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	set, err := toa.ParseSet(diffSpec)
	if err != nil {
		t.Fatal(err)
	}
	d := decode.New(set)
	g := newGopacketDecoder()
	rng := rand.New(rand.NewPCG(*diffSeed, 0x70ad))
	var st diffStats
	for i := range n {
		link, frame := randomFrame(rng)
		differ(t, g, d, link, frame, &st)
		if t.Failed() {
			t.Fatalf("seed %d, frame %d", *diffSeed, i)
		}
	}
	t.Logf("seed %d: %+v", *diffSeed, st)
	if st.compared < n/2 || st.toas < n/5 {
		t.Errorf("gopacket decoded %d and toad found TOAs in %d of %d frames: the generator no longer exercises the decoders", st.compared, st.toas, n)
	}
}

// randomFrame draws one frame.
func randomFrame(rng *rand.Rand) (decode.LinkType, []byte) {
	v6 := rng.IntN(2) == 0
	s := &craft.Segment{
		Src: randomAddrPort(rng, v6), Dst: randomAddrPort(rng, v6),
		Seq: rng.Uint32(), Ack: rng.Uint32(), Window: uint16(rng.Uint32()),
		Options: randomOptions(rng),
		ID:      uint16(rng.Uint32()),
	}
	switch rng.IntN(4) {
	case 0:
		s.Flags = decode.SYN
	case 1:
		s.Flags = decode.SYN | decode.ACK
	case 2:
		s.Flags = decode.ACK | decode.Flags(rng.IntN(2))*decode.PSH
	default:
		s.Flags = decode.Flags(rng.Uint32())
	}
	switch rng.IntN(8) {
	case 0:
		s.Payload = make([]byte, 1200+rng.IntN(300))
	case 1, 2, 3:
		s.Payload = make([]byte, rng.IntN(100))
	}
	for i := range s.Payload {
		s.Payload[i] = byte(rng.Uint32())
	}
	cut := 0 // a first fragment's length
	if !v6 {
		if rng.IntN(5) == 0 {
			s.IPOptions = ipv4Options[rng.IntN(len(ipv4Options))]
		}
		switch rng.IntN(20) {
		case 0:
			s.FragOffset = uint16(1 + rng.IntN(200))
		case 1:
			s.MoreFragments = true
			cut = 8 * (1 + rng.IntN(10))
		}
	} else {
		if rng.IntN(3) == 0 {
			s.Ext = randomExt(rng)
		}
		if rng.IntN(20) == 0 {
			s.Ext = append(s.Ext, craft.Ext{Type: 44, MoreFragments: true})
			cut = 8 * (1 + rng.IntN(10))
		}
	}
	ip := s.IP()
	if cut > 0 {
		hl := len(ip) - (20 + (len(s.Options)+3)&^3 + len(s.Payload)) // IP and extension headers
		if hl+cut < len(ip) {
			ip = craft.Cut(ip, hl+cut)
		}
	}
	f := framings[rng.IntN(len(framings))]
	switch rng.IntN(12) {
	case 0:
		f.Link = decode.LinkIPv4
		if v6 {
			f.Link = decode.LinkIPv6
		}
	case 1:
		f = craft.Framing{Link: decode.LinkEthernet, Tags: []uint16{0x9100, 0x8100}}
	}
	f.Pad = rng.IntN(2) == 0
	frame := f.Frame(ip)

	// Corrupt a third of the frames, mostly in the headers.
	switch rng.IntN(9) {
	case 0, 1:
		corrupt(rng, frame)
	case 2:
		frame = frame[:rng.IntN(len(frame)+1)]
	}
	return f.Link, frame
}

func corrupt(rng *rand.Rand, frame []byte) {
	for range 1 + rng.IntN(3) {
		n := len(frame)
		if rng.IntN(4) != 0 {
			n = min(n, 14+8+60+40+40)
		}
		frame[rng.IntN(n)] ^= byte(1 + rng.IntN(255))
	}
}

var ipv4Options = [][]byte{
	{1, 1, 1, 1},
	{7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0},     // record route
	{68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0}, // timestamp
	{130, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0},   // security
	make([]byte, 40),
}

func randomExt(rng *rand.Rand) []craft.Ext {
	var ext []craft.Ext
	if rng.IntN(2) == 0 {
		ext = append(ext, craft.Ext{Type: 0, Len: 8 * (1 + rng.IntN(3))})
	}
	for range rng.IntN(3) {
		switch rng.IntN(4) {
		case 0:
			ext = append(ext, craft.Ext{Type: 60, Len: 8 * (1 + rng.IntN(4))})
		case 1:
			ext = append(ext, craft.Ext{Type: 43, Len: 8 + 16*rng.IntN(3)})
		case 2:
			ext = append(ext, craft.Ext{Type: 44}) // atomic
		case 3:
			ext = append(ext, craft.Ext{Type: 51, Len: 12 + 4*rng.IntN(4)})
		}
	}
	return ext
}

func randomAddrPort(rng *rand.Rand, v6 bool) netip.AddrPort {
	port := uint16(rng.Uint32())
	if v6 {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8}
		for i := 4; i < 16; i++ {
			a[i] = byte(rng.Uint32())
		}
		return netip.AddrPortFrom(netip.AddrFrom16(a), port)
	}
	nets := [][3]byte{{192, 0, 2}, {198, 51, 100}, {203, 0, 113}}
	n := nets[rng.IntN(len(nets))]
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{n[0], n[1], n[2], byte(rng.Uint32())}), port)
}

// randomOptions draws a TCP option list of at most 40 bytes: zero to two
// TOAs of any dialect among other options, look-alikes included.
func randomOptions(rng *rand.Rand) []byte {
	var items [][]byte
	dialects := append(toa.DefaultSet().Dialects(), toa.Kind253V4)
	for range []int{0, 1, 1, 1, 2, 0, 1, 2}[rng.IntN(8)] {
		d := dialects[rng.IntN(len(dialects))]
		l := toa.BuiltinLayout(d)
		if rng.IntN(10) == 0 {
			d, l = toa.Dialect{Kind: 240, Len: 8}, toa.LayoutPortIPv4
		}
		c := randomAddrPort(rng, l.IPv6())
		if l.IPv6() && rng.IntN(8) == 0 {
			c = netip.AddrPortFrom(netip.AddrFrom16(randomAddrPort(rng, false).Addr().As16()), c.Port()) // IPv4-mapped
		}
		opt, err := toa.Append(nil, d.Kind, l, c)
		if err != nil {
			panic(err)
		}
		items = append(items, opt)
	}
	for range rng.IntN(6) {
		var o []byte
		switch rng.IntN(17) {
		case 0:
			o = craft.MSS(uint16(rng.Uint32()))
		case 1:
			o = craft.WScale(byte(rng.IntN(15)))
		case 2:
			o = craft.SACKPerm
		case 3:
			o = craft.Timestamps(rng.Uint32(), rng.Uint32())
		case 4:
			o = craft.NOP
		case 5:
			o = append([]byte{5, byte(2 + 8*(1+rng.IntN(3)))}, make([]byte, 8*(1+rng.IntN(3)))...)
			o[1] = byte(len(o))
		case 6:
			o = craft.FastOpen(make([]byte, 4+2*rng.IntN(7)))
		case 7:
			o = append([]byte{254, 0, 0xAC, 0xCE + byte(rng.IntN(2))}, make([]byte, 3*rng.IntN(4))...)
			o[1] = byte(len(o))
		case 8:
			o = []byte{254, 6, 0xE2, 0xD4, 0xC3, 0xD9}
		case 9:
			o = []byte{28, 4, 0x80, byte(rng.Uint32())}
		case 10:
			o = []byte{30, 12, 0x01, 0x81, 1, 2, 3, 4, 5, 6, 7, 8} // MP_CAPABLE
		case 11:
			o = []byte{250, 8, 0x1f, 0x90, 192, 0, 2, 20}
		case 12:
			o = []byte{202, 8, 0x01, 0xbb, 198, 51, 100, 1}
		case 13:
			o = make([]byte, 2+rng.IntN(9))
			o[0], o[1] = byte(9+rng.IntN(18)), byte(len(o))
		case 14: // a Fast Open look-alike of a TOA length
			o = append([]byte{254, 8, 0xF9, 0x89}, 198, 51, 100, byte(rng.Uint32()))
		case 15:
			o = []byte{0}
		case 16: // Fast Open's standard form, a cookie or a request
			o = append([]byte{34, 0}, make([]byte, []int{0, 4, 8}[rng.IntN(3)])...)
			o[1] = byte(len(o))
		}
		items = append(items, o)
	}
	rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	var opts []byte
	for _, o := range items {
		if len(opts)+len(o) <= 40 {
			opts = append(opts, o...)
		}
	}
	return opts
}
