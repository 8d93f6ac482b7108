package craft

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/inetsum"
	"github.com/toad-project/toad/toa"
)

// TestChecksumsVerifyWithGopacket checks the built frames against an
// independent implementation: gopacket recomputes both checksums.
func TestChecksumsVerifyWithGopacket(t *testing.T) {
	for _, s := range []Segment{
		{Src: netip.MustParseAddrPort("198.51.100.10:40001"), Dst: netip.MustParseAddrPort("192.0.2.20:8080"), Flags: decode.SYN, Seq: 7,
			Options: Opts(TOA(toa.Kind200V4, netip.MustParseAddrPort("203.0.113.7:51234")), MSS(1460)), IPOptions: []byte{1, 1, 1, 1}},
		{Src: netip.MustParseAddrPort("[2001:db8::10]:40001"), Dst: netip.MustParseAddrPort("[2001:db8::20]:443"), Flags: decode.ACK, Seq: 8, Ack: 9,
			Options: TOA(toa.Kind254V6, netip.MustParseAddrPort("[2001:db8:1::7]:5000")), Payload: []byte("hello"), Ext: []Ext{{Type: 0, Len: 8}, {Type: 60, Len: 16}}},
	} {
		ip := s.IP()
		first := layers.LayerTypeIPv4
		if s.Src.Addr().Is6() {
			first = layers.LayerTypeIPv6
		}
		p := gopacket.NewPacket(ip, first, gopacket.Default)
		tl, ok := p.TransportLayer().(*layers.TCP)
		if !ok {
			t.Fatalf("gopacket found no TCP layer: %v", p.ErrorLayer())
		}
		want := tl.Checksum
		nl := p.NetworkLayer()
		if err := tl.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, tl, gopacket.Payload(tl.Payload)); err != nil {
			t.Fatal(err)
		}
		got := uint16(buf.Bytes()[16])<<8 | uint16(buf.Bytes()[17])
		if got != want {
			t.Errorf("%v: TCP checksum = %#04x, gopacket computes %#04x", s.Src, want, got)
		}
		if v4, ok := nl.(*layers.IPv4); ok {
			hdr := ip[:v4.IHL*4]
			if inetsum.Fold(inetsum.Sum(hdr, 0)) != 0xffff {
				t.Errorf("IPv4 header checksum does not verify")
			}
		}
		var r decode.Record
		if reason := decode.New(nil).Decode(decode.LinkRaw, ip, time.Time{}, &r); reason != decode.OK {
			t.Fatalf("decode: %v", reason)
		}
		if r.Peer != s.Src || r.Local != s.Dst || r.TOA.IsZero() {
			t.Errorf("decode got peer %v local %v toa %v, want %v %v and a TOA", r.Peer, r.Local, r.TOA, s.Src, s.Dst)
		}
	}
}

func TestFramings(t *testing.T) {
	s := Segment{Src: netip.MustParseAddrPort("198.51.100.10:40001"), Dst: netip.MustParseAddrPort("192.0.2.20:8080"), Flags: decode.ACK, Seq: 1, Ack: 2}
	ip := s.IP()
	for _, tc := range []struct {
		f      Framing
		first  gopacket.Decoder
		layers []gopacket.LayerType
		len    int
	}{
		{Framing{Link: decode.LinkEthernet}, layers.LinkTypeEthernet,
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeTCP}, 14 + 40},
		{Framing{Link: decode.LinkEthernet, Pad: true}, layers.LinkTypeEthernet,
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeTCP}, 60},
		{Framing{Link: decode.LinkEthernet, Tags: []uint16{0x88A8, 0x8100}}, layers.LinkTypeEthernet,
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeDot1Q, layers.LayerTypeDot1Q, layers.LayerTypeIPv4, layers.LayerTypeTCP}, 22 + 40},
		{Framing{Link: decode.LinkLinuxSLL, Tags: []uint16{0x8100}}, layers.LinkTypeLinuxSLL,
			[]gopacket.LayerType{layers.LayerTypeLinuxSLL, layers.LayerTypeDot1Q, layers.LayerTypeIPv4, layers.LayerTypeTCP}, 20 + 40},
		{Framing{Link: decode.LinkLinuxSLL2, PacketType: 4}, layers.LinkTypeLinuxSLL2,
			[]gopacket.LayerType{layers.LayerTypeLinuxSLL2, layers.LayerTypeIPv4, layers.LayerTypeTCP}, 20 + 40},
		{Framing{Link: decode.LinkRaw}, layers.LinkTypeRaw,
			[]gopacket.LayerType{layers.LayerTypeIPv4, layers.LayerTypeTCP}, 40},
		{Framing{}, layers.LinkTypeRaw,
			[]gopacket.LayerType{layers.LayerTypeIPv4, layers.LayerTypeTCP}, 40},
	} {
		frame := tc.f.Frame(ip)
		if len(frame) != tc.len {
			t.Errorf("%+v: frame is %d bytes, want %d", tc.f, len(frame), tc.len)
		}
		p := gopacket.NewPacket(frame, tc.first, gopacket.Default)
		var got []gopacket.LayerType
		for _, l := range p.Layers() {
			got = append(got, l.LayerType())
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.layers) {
			t.Errorf("%+v: gopacket decodes %v, want %v", tc.f, got, tc.layers)
		}
	}
}

func TestExtensionHeaders(t *testing.T) {
	s := Segment{Src: netip.MustParseAddrPort("[2001:db8::10]:40001"), Dst: netip.MustParseAddrPort("[2001:db8::20]:443"), Flags: decode.ACK, Payload: []byte("x"),
		Ext: []Ext{{Type: 0, Len: 8}, {Type: 43, Len: 24}, {Type: 60, Len: 3}, {Type: 51, Len: 16}, {Type: 44}}}
	p := gopacket.NewPacket(s.IP(), layers.LayerTypeIPv6, gopacket.Default)
	var got []gopacket.LayerType
	for _, l := range p.Layers() {
		got = append(got, l.LayerType())
	}
	// gopacket's packet decoder leaves whatever follows a fragment header,
	// atomic or not, as a fragment.
	want := []gopacket.LayerType{layers.LayerTypeIPv6, layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination,
		layers.LayerTypeIPSecAH, layers.LayerTypeIPv6Fragment, gopacket.LayerTypeFragment}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("gopacket decodes %v, want %v (%v)", got, want, p.ErrorLayer())
	}
	lens := map[gopacket.LayerType]int{layers.LayerTypeIPv6HopByHop: 8, layers.LayerTypeIPv6Routing: 24, layers.LayerTypeIPv6Destination: 8, layers.LayerTypeIPSecAH: 16, layers.LayerTypeIPv6Fragment: 8}
	for typ, n := range lens {
		if got := len(p.Layer(typ).LayerContents()); got != n {
			t.Errorf("%v is %d bytes, want %d", typ, got, n)
		}
	}
	s.Ext, s.ID = []Ext{{Type: 44, FragOffset: 185, MoreFragments: true}}, 7
	p = gopacket.NewPacket(s.IP(), layers.LayerTypeIPv6, gopacket.Default)
	frag, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
	if !ok || frag.FragmentOffset != 185 || !frag.MoreFragments || frag.Identification != 7 || frag.NextHeader != layers.IPProtocolTCP {
		t.Errorf("fragment header decodes as %+v", frag)
	}
}

func TestCut(t *testing.T) {
	for _, src := range []string{"198.51.100.10:40001", "[2001:db8::10]:40001"} {
		s := Segment{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(src), Payload: make([]byte, 100), MoreFragments: true}
		if s.Src.Addr().Is6() {
			s.Ext = []Ext{{Type: 44, MoreFragments: true}}
		}
		ip := s.IP()
		cut := Cut(ip, 64)
		if len(cut) != 64 || string(cut) == string(ip[:64]) {
			t.Fatalf("%s: Cut(%d bytes, 64) gave %d bytes, length fields unchanged: %v", src, len(ip), len(cut), string(cut) == string(ip[:64]))
		}
		first := layers.LayerTypeIPv4
		if s.Src.Addr().Is6() {
			first = layers.LayerTypeIPv6
		}
		p := gopacket.NewPacket(cut, first, gopacket.Default)
		if p.ErrorLayer() != nil || p.Metadata().Truncated {
			t.Errorf("%s: gopacket on the cut packet: %v, truncated %v", src, p.ErrorLayer(), p.Metadata().Truncated)
		}
		if v4, ok := p.NetworkLayer().(*layers.IPv4); ok {
			if v4.Length != 64 || inetsum.Fold(inetsum.Sum(cut[:20], 0)) != 0xffff {
				t.Errorf("cut IPv4 packet: length %d, header checksum verifies %v", v4.Length, inetsum.Fold(inetsum.Sum(cut[:20], 0)) == 0xffff)
			}
		}
		if v6, ok := p.NetworkLayer().(*layers.IPv6); ok && v6.Length != 24 {
			t.Errorf("cut IPv6 packet: payload length %d, want 24", v6.Length)
		}
		if &cut[0] == &ip[0] {
			t.Errorf("Cut returned the same backing array")
		}
	}
}

func TestCorpusFile(t *testing.T) {
	got := string(CorpusFile([]byte("a\x00\xff"), "s\n", true, uint16(276), int(-1), uint64(7)))
	want := "go test fuzz v1\n[]byte(\"a\\x00\\xff\")\nstring(\"s\\n\")\nbool(true)\nuint16(276)\nint(-1)\nuint64(7)\n"
	if got != want {
		t.Errorf("CorpusFile = %q, want %q", got, want)
	}
}

func TestSyncCorpus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "FuzzX")
	files := map[string][]byte{"a": CorpusFile([]byte("a")), "b": CorpusFile([]byte("b"))}
	if err := SyncCorpus(dir, files, false); err == nil {
		t.Errorf("SyncCorpus on a missing corpus reports nothing")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"seed-old": "x", "1234abcd": "found by the fuzzer"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := SyncCorpus(dir, files, true); err != nil {
		t.Fatalf("SyncCorpus update: %v", err)
	}
	if err := SyncCorpus(dir, files, false); err != nil {
		t.Errorf("SyncCorpus after update: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[1234abcd seed-a seed-b]" {
		t.Errorf("corpus holds %v, want [1234abcd seed-a seed-b]", names)
	}
	files["a"] = CorpusFile([]byte("changed"))
	delete(files, "b")
	err = SyncCorpus(dir, files, false)
	if err == nil || !strings.Contains(err.Error(), "seed-a is out of date") || !strings.Contains(err.Error(), "seed-b is no longer generated") {
		t.Errorf("SyncCorpus of a stale corpus = %v", err)
	}
}
