package fullnat

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

func TestBuildInsertsOption(t *testing.T) {
	lip4p := netip.AddrPortFrom(lip4, 1024)
	lip6p := netip.AddrPortFrom(lip6, 1024)
	for _, tc := range []struct {
		name     string
		src, dst netip.AddrPort // the segment as the client sent it
		to       netip.AddrPort // the origin
		from     netip.AddrPort // the proxy's source
		dialect  toa.Dialect
		client   netip.AddrPort
		pos      Position
		opts     []byte
		payload  []byte
		// wantOpts is the option list after insertion.
		wantOpts []byte
	}{
		{
			name: "200/8 after header v4", src: client4, dst: vip4, to: origin4, from: lip4p,
			dialect: toa.Kind200V4, client: client4, pos: AfterHeader, opts: linuxOptions(), payload: []byte("hello"),
			wantOpts: craft.Opts(craft.TOA(toa.Kind200V4, client4), linuxOptions()),
		},
		{
			name: "254/8 after options v4", src: client4, dst: vip4, to: origin4, from: lip4p,
			dialect: toa.Kind254V4, client: client4, pos: AfterOptions, opts: linuxOptions(),
			wantOpts: craft.Opts(linuxOptions(), craft.TOA(toa.Kind254V4, client4)),
		},
		{
			name: "28/7 after header is NOP-padded", src: client4, dst: vip4, to: origin4, from: lip4p,
			dialect: toa.Kind28V4, client: client4, pos: AfterHeader, opts: linuxOptions(), payload: []byte("x"),
			wantOpts: craft.Opts(craft.TOA(toa.Kind28V4, client4), craft.NOP, linuxOptions()),
		},
		{
			name: "28/7 after options is EOL-padded", src: client4, dst: vip4, to: origin4, from: lip4p,
			dialect: toa.Kind28V4, client: client4, pos: AfterOptions, opts: linuxOptions(),
			wantOpts: craft.Opts(linuxOptions(), craft.TOA(toa.Kind28V4, client4), []byte{0}),
		},
		{
			name: "after options drops end-of-list padding", src: client4, dst: vip4, to: origin4, from: lip4p,
			dialect: toa.Kind254V4, client: client4, pos: AfterOptions, opts: craft.Opts(craft.MSS(1460), []byte{0, 0, 0, 0}),
			wantOpts: craft.Opts(craft.MSS(1460), craft.TOA(toa.Kind254V4, client4)),
		},
		{
			name: "254/20 FNAT64: IPv6 client to IPv4 origin", src: client6, dst: vip6, to: origin4, from: lip4p,
			dialect: toa.Kind254V6, client: client6, pos: AfterHeader, opts: linuxOptions(), payload: []byte("odd"),
			wantOpts: craft.Opts(craft.TOA(toa.Kind254V6, client6), linuxOptions()),
		},
		{
			name: "253/20 IPv6 to IPv6", src: client6, dst: vip6, to: origin6, from: lip6p,
			dialect: toa.Kind253V6, client: client6, pos: AfterHeader, opts: linuxOptions(), payload: bytes.Repeat([]byte("y"), 1000),
			wantOpts: craft.Opts(craft.TOA(toa.Kind253V6, client6), linuxOptions()),
		},
		{
			name: "200/8 FNAT46: IPv4 client to IPv6 origin", src: client4, dst: vip4, to: origin6, from: lip6p,
			dialect: toa.Kind200V4, client: client4, pos: AfterOptions, payload: []byte("z"),
			wantOpts: craft.TOA(toa.Kind200V4, client4),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := (&craft.Segment{Src: tc.src, Dst: tc.dst, Flags: decode.ACK | decode.PSH, Seq: 100, Ack: 200,
				Options: tc.opts, Payload: tc.payload, ID: 77}).IP()
			s, ok := parse(in)
			if !ok {
				t.Fatal("parse failed")
			}
			opt := craft.TOA(tc.dialect, tc.client)
			out := make([]byte, len(in)+100)
			pkt, res := build(out, &s, &rewrite{src: tc.from, dst: tc.to, opt: opt, pos: tc.pos, mtu: 1500})
			if res != inserted {
				t.Fatalf("got outcome %d, want inserted", res)
			}
			checkSums(t, pkt)
			r := decodeIP(t, pkt)
			if r.Peer != tc.from || r.Local != tc.to {
				t.Errorf("got %v -> %v, want %v -> %v", r.Peer, r.Local, tc.from, tc.to)
			}
			if r.TOACount != 1 || r.TOA.Dialect != tc.dialect || r.TOA.Addr != tc.client.Addr() {
				t.Errorf("got TOA %v (count %d), want %v %v", r.TOA, r.TOACount, tc.dialect, tc.client)
			}
			if r.TOA.HasPort && r.TOA.Port != tc.client.Port() {
				t.Errorf("got TOA port %d, want %d", r.TOA.Port, tc.client.Port())
			}
			if r.Seq != 100 || r.Ack != 200 || r.Flags != decode.ACK|decode.PSH {
				t.Errorf("got seq %d ack %d flags %v, want 100 200 P.", r.Seq, r.Ack, r.Flags)
			}
			got, _ := parse(pkt)
			if diff := cmp.Diff(tc.wantOpts, got.tcp[20:got.doff]); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if !bytes.Equal(got.tcp[got.doff:], tc.payload) {
				t.Errorf("payload changed: got %q, want %q", got.tcp[got.doff:], tc.payload)
			}
			if got.ttl != 64 {
				t.Errorf("got TTL %d, want 64", got.ttl)
			}
		})
	}
}

func TestBuildNoRoom(t *testing.T) {
	full := craft.Opts(craft.MSS(1460), craft.SACKPerm, craft.Timestamps(1, 0), craft.NOP, craft.WScale(7),
		craft.FastOpen(bytes.Repeat([]byte{1}, 16))) // 40 bytes
	for _, tc := range []struct {
		name    string
		opts    []byte
		payload int
		opt     []byte
		pos     Position
		mtu     int
	}{
		{"option space full", full, 0, craft.TOA(toa.Kind200V4, client4), AfterHeader, 1500},
		{"option space full, after options", full, 0, craft.TOA(toa.Kind200V4, client4), AfterOptions, 1500},
		{"20-byte TOA after a Linux SYN's 20 bytes plus 4", craft.Opts(linuxSYNOptions(1460), craft.NOP, craft.NOP, craft.NOP, craft.NOP), 0,
			craft.TOA(toa.Kind254V6, client6), AfterHeader, 1500},
		{"MTU", linuxOptions(), 1500 - 20 - 32, craft.TOA(toa.Kind200V4, client4), AfterHeader, 1500},
		{"unwalkable options, after options", []byte{3, 9, 0, 0}, 0, craft.TOA(toa.Kind200V4, client4), AfterOptions, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := (&craft.Segment{Src: client4, Dst: vip4, Flags: decode.ACK, Options: tc.opts, Payload: make([]byte, tc.payload)}).IP()
			s, ok := parse(in)
			if !ok {
				t.Fatal("parse failed")
			}
			pkt, res := build(make([]byte, len(in)+100), &s, &rewrite{src: netip.AddrPortFrom(lip4, 2000), dst: origin4, opt: tc.opt, pos: tc.pos, mtu: tc.mtu})
			if res != noRoom {
				t.Fatalf("got outcome %d, want noRoom", res)
			}
			checkSums(t, pkt)
			if got, _ := parse(pkt); !bytes.Equal(got.tcp[20:got.doff], tc.opts) {
				t.Errorf("got options % x, want them unchanged % x", got.tcp[20:got.doff], tc.opts)
			}
		})
	}
}

func TestBuildKeepsBadChecksumBad(t *testing.T) {
	in := (&craft.Segment{Src: client4, Dst: vip4, Flags: decode.ACK, Options: linuxOptions(), Payload: []byte("data")}).IP()
	in[len(in)-1] ^= 0x40 // corrupt the payload after the checksum was computed
	s, _ := parse(in)
	pkt, _ := build(make([]byte, len(in)+100), &s, &rewrite{src: netip.AddrPortFrom(lip4, 2000), dst: origin4,
		opt: craft.TOA(toa.Kind200V4, client4), mtu: 1500})
	if sumsOK(pkt) {
		t.Error("a corrupted segment came out with a valid checksum; want it still invalid")
	}
}

func TestClampMSS(t *testing.T) {
	for _, tc := range []struct {
		mss, cut, want int
	}{
		{1460, 8, 1452},
		{1440, 40, 1400},
		{540, 20, 536},
		{500, 20, 500},
	} {
		opts := linuxSYNOptions(uint16(tc.mss))
		clampMSS(opts, tc.cut)
		in := (&craft.Segment{Src: client4, Dst: vip4, Flags: decode.SYN, Options: opts}).IP()
		if got := mssOf(in); got != tc.want {
			t.Errorf("MSS %d cut by %d: got %d, want %d", tc.mss, tc.cut, got, tc.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	seg := craft.Segment{Src: client4, Dst: vip4, Flags: decode.ACK}
	frag := seg
	frag.MoreFragments = true
	seg6 := craft.Segment{Src: client6, Dst: vip6, Flags: decode.ACK, Ext: []craft.Ext{{Type: 44}}}
	ok6 := craft.Segment{Src: client6, Dst: vip6, Flags: decode.ACK, Ext: []craft.Ext{{Type: 0, Len: 8}, {Type: 60, Len: 16}}}
	udp := seg.IP()
	udp[9] = 17
	badOff := seg.IP()
	badOff[20+12] = 0xf0
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"plain", seg.IP(), true},
		{"IPv6 through extension headers", ok6.IP(), true},
		{"IPv4 fragment", frag.IP(), false},
		{"IPv6 fragment header", seg6.IP(), false},
		{"UDP", udp, false},
		{"data offset past the end", badOff, false},
		{"truncated", seg.IP()[:30], false},
		{"empty", nil, false},
	} {
		if _, got := parse(tc.pkt); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
