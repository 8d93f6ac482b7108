package craft

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/toad-project/toad/decode"
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
			if fold(sum(hdr, 0)) != 0xffff {
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
