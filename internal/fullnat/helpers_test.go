package fullnat

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/inetsum"
	"github.com/toad-project/toad/internal/testaddr"
	"github.com/toad-project/toad/toa"
)

// Documentation addresses of the test topology.
var (
	vip4, vip6       = testaddr.VIP4, testaddr.VIP6
	lip4, lip6       = testaddr.ProxyAddr4, testaddr.ProxyAddr6
	origin4, origin6 = testaddr.Origin4, testaddr.Origin6
	client4          = netip.MustParseAddrPort("203.0.113.7:40000")
	client6          = netip.MustParseAddrPort("[2001:db8:c::7]:40000")
)

// testConfig returns a normalized configuration with both VIPs.
func testConfig(t testing.TB, origin netip.AddrPort, mod func(*Config)) Config {
	t.Helper()
	cfg := Config{
		VIPs:       []netip.AddrPort{vip4, vip6},
		Origin:     origin,
		ProxyAddr4: lip4,
		ProxyAddr6: lip6,
		Placement:  LVS,
	}
	if mod != nil {
		mod(&cfg)
	}
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatalf("normalize: %v", err)
	}
	return cfg
}

// decodeIP decodes a bare IP packet with every built-in dialect enabled.
func decodeIP(t testing.TB, pkt []byte) decode.Record {
	t.Helper()
	set, err := toa.ParseSet("all")
	if err != nil {
		t.Fatal(err)
	}
	var r decode.Record
	if reason := decode.New(set).Decode(decode.LinkRaw, pkt, time.Time{}, &r); reason != decode.OK {
		t.Fatalf("decode % x: %v", pkt, reason)
	}
	return r
}

// checkSums fails t unless pkt's IPv4 header checksum and TCP checksum are
// right, computed from scratch.
func checkSums(t testing.TB, pkt []byte) {
	t.Helper()
	if !sumsOK(pkt) {
		t.Fatalf("bad checksum in % x", pkt)
	}
}

// sumsOK reports whether pkt parses and its IPv4 header checksum (for IPv4)
// and TCP checksum are right, computed from scratch.
func sumsOK(pkt []byte) bool {
	// The TCP segment is where the parser finds it: after IPv6 extension
	// headers, and no further than the IP length says, whatever follows in
	// the buffer.
	s, ok := parse(pkt)
	if !ok {
		return false
	}
	if pkt[0]>>4 == 4 {
		hl := int(pkt[0]&0xf) * 4
		if inetsum.Fold(inetsum.Sum(pkt[:hl], 0)) != 0xffff {
			return false
		}
	}
	src, dst := s.src.Addr().AsSlice(), s.dst.Addr().AsSlice()
	ph := inetsum.Sum(dst, inetsum.Sum(src, protoTCP+uint32(len(s.tcp))))
	return inetsum.Fold(inetsum.Sum(s.tcp, ph)) == 0xffff
}

// linuxSYNOptions are the options Linux puts in a SYN: 20 bytes.
func linuxSYNOptions(mss uint16) []byte {
	return craft.Opts(craft.MSS(mss), craft.SACKPerm, craft.Timestamps(1, 0), craft.NOP, craft.WScale(7))
}

// linuxOptions are the options of Linux's established segments: 12 bytes.
func linuxOptions() []byte {
	return craft.Opts(craft.NOP, craft.NOP, craft.Timestamps(2, 1))
}

// mssOf returns the MSS option of an IP packet's TCP header, or 0.
func mssOf(pkt []byte) int {
	s, ok := parse(pkt)
	if !ok {
		return 0
	}
	opts := s.tcp[20:s.doff]
	for i := 0; i+1 < len(opts); {
		switch opts[i] {
		case optEOL:
			return 0
		case optNOP:
			i++
			continue
		}
		if opts[i] == optMSS && opts[i+1] == 4 && i+4 <= len(opts) {
			return int(binary.BigEndian.Uint16(opts[i+2:]))
		}
		if opts[i+1] < 2 {
			return 0
		}
		i += int(opts[i+1])
	}
	return 0
}
